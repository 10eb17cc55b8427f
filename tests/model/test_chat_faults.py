"""When the model cannot answer, the user gets a polite reply (never a 500) and the log says why:
the model server is not up, its weights are missing or corrupt, or its output is not valid."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.chat.facts import UNAVAILABLE
from services.model.runtime import Runtime
from services.model.server import create_app
from services.model.settings import ModelSettings
from shared.settings import Settings
from testkit.system import make_settings
from tests.conftest import System
from tests.model.conftest import ScriptedEngine, ServerThread, needs_llama_cpp, serve_scripted


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens


def serve_weights(path: Path) -> ServerThread:
    """The real model server, loading `path` in the background as it does in production."""
    return ServerThread(create_app(Runtime(ModelSettings(path=path, verify_hash=True))))


def wait_unavailable(url: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        if health["status"] == "unavailable":
            return str(health["detail"])
        time.sleep(0.05)
    raise AssertionError("the model server never gave up loading")


@pytest.fixture
def model_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An OpenAI-compatible base URL whose model cannot answer, in the way the test names."""
    match request.param:
        case "not running":
            yield f"http://127.0.0.1:{dead_port()}/v1"
        case "missing weights" | "corrupt weights":
            path = tmp_path / "model.gguf"
            if request.param == "corrupt weights":
                path.write_bytes(b"GGUF" + b"\0" * 4096)
            with serve_weights(path) as url:
                wait_unavailable(url)
                yield f"{url}/v1"
        case "invalid output":
            engine = ScriptedEngine(outputs=['{"name": "teleport", "arguments": {"to": "mars"}}'])
            with serve_scripted(engine) as url:
                yield f"{url}/v1"
        case "not an OpenAI answer":
            with ServerThread(not_openai()) as url:
                yield f"{url}/v1"


def not_openai() -> FastAPI:
    """A server that answers chat completions with 200 and a body that is no completion."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def nonsense() -> dict[str, str]:
        return {"object": "nonsense", "message": "hello"}

    return app


@pytest.fixture
async def settings(redis_url: str, model_url: str) -> Settings:
    return make_settings(redis_url, model_url, openai_api_key=None)


async def polite_reply_and_log(
    system: System, caplog: pytest.LogCaptureFixture, logged: str = "model call failed"
) -> str:
    with caplog.at_level(logging.INFO):
        response = await system.say("When is Dr. Lee free tomorrow?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == UNAVAILABLE
    assert body["bookings"] == [] and body["suggested_slots"] == []
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith(logged)]
    assert len(failures) == 1
    return failures[0]


@pytest.mark.parametrize("model_url", ["not running"], indirect=True)
async def test_a_model_server_that_is_not_up_gets_a_polite_reply_and_a_log_line(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    assert "Connection error" in await polite_reply_and_log(system, caplog)


@pytest.mark.parametrize("model_url", ["missing weights", "corrupt weights"], indirect=True)
async def test_missing_or_corrupt_weights_get_a_polite_reply_and_log_lines_that_say_why(
    system: System, caplog: pytest.LogCaptureFixture, model_url: str
) -> None:
    logged = await polite_reply_and_log(system, caplog)
    assert "503" in logged and "model unavailable" in logged
    # the weights' problem, or, where llama-cpp-python is not installed, that one: both say why
    assert any(word in logged for word in ("missing", "size", "sha256", "llama-cpp-python is not usable")), logged


@needs_llama_cpp
@pytest.mark.parametrize("model_url", ["invalid output"], indirect=True)
async def test_a_model_reply_that_is_not_a_valid_call_gets_a_polite_reply(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    logged = await polite_reply_and_log(system, caplog)
    assert "502" in logged and "teleport" in logged
    assert any("model output rejected" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("model_url", ["not an OpenAI answer"], indirect=True)
async def test_an_answer_that_is_no_completion_gets_a_polite_reply(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    await polite_reply_and_log(system, caplog, logged="model returned no choices")
