"""Fixtures for the local model server: a scripted engine behind the real HTTP app (fast), and
the real model served on a loopback port (marked `local_model`, skipped without wheel/weights)."""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall

from services.model import llamacpp, weights
from services.model.engine import Generation, Sampling
from services.model.runtime import Runtime
from services.model.server import create_app
from services.model.settings import ModelSettings
from testkit.serving import SHUTDOWN_GRACE_S

needs_llama_cpp = pytest.mark.skipif(
    not llamacpp.available(),
    reason="llama-cpp-python is not installed (scripts/install_local_model.sh installs it)",
)


async def complete(client: AsyncOpenAI, **request: Any) -> ChatCompletion:
    """chat.completions.create with plain dicts (the SDK's TypedDict overloads aside)."""
    create: Any = client.chat.completions.create
    return cast(ChatCompletion, await create(**request))


async def stream(client: AsyncOpenAI, **request: Any) -> AsyncStream[ChatCompletionChunk]:
    create: Any = client.chat.completions.create
    return cast(AsyncStream[ChatCompletionChunk], await create(stream=True, **request))


def only_call(reply: ChatCompletion) -> ChatCompletionMessageFunctionToolCall:
    """The one function call of a reply."""
    (call,) = reply.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    return call


@dataclass
class ScriptedEngine:
    """Answers from a list of raw model outputs and records what it was asked."""

    outputs: list[str]
    n_ctx: int = 4096
    prompt_tokens: int = 100
    finish: str = "stop"
    asked: list[tuple[str, str | None, Sampling]] = field(default_factory=list)
    produced: list[str] = field(default_factory=list)
    """What each generation actually wrote (less than its output when it was cancelled)."""

    def check(self, prompt: str, grammar: str | None) -> int:
        return self.prompt_tokens

    def generate(
        self,
        prompt: str,
        grammar: str | None,
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        self.asked.append((prompt, grammar, sampling))
        text = self.outputs.pop(0)
        words = text.split(" ")
        produced = ""
        for piece in [w + " " for w in words[:-1]] + words[-1:]:
            if cancel is not None and cancel.is_set():
                break
            produced += piece
            if on_text is not None:
                on_text(piece)
        cancelled = produced != text
        self.produced.append(produced)
        return Generation(
            text=produced,
            finish_reason="cancelled" if cancelled else "length" if self.finish == "length" else "stop",
            prompt_tokens=self.prompt_tokens,
            completion_tokens=max(len(produced) // 4, 1),
        )


class ServerThread:
    """uvicorn in a thread with its own loop, so one server can outlive many test loops."""

    def __init__(self, app: object) -> None:
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=0,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the model server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_scripted(engine: ScriptedEngine, **settings: object) -> ServerThread:
    runtime = Runtime.with_engine(ModelSettings(**settings), engine)  # type: ignore[arg-type]
    return ServerThread(create_app(runtime, load=False))


@pytest.fixture
def scripted() -> ScriptedEngine:
    return ScriptedEngine(outputs=[])


@pytest.fixture
def scripted_url(scripted: ScriptedEngine) -> Iterator[str]:
    with serve_scripted(scripted) as url:
        yield url


@pytest.fixture
async def scripted_client(scripted_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{scripted_url}/v1", api_key="local", max_retries=0) as client:
        yield client


def real_model_problem(path: Path | None = None) -> str | None:
    """Why the real model cannot run here (no wheel, no weights), or None."""
    path = path or ModelSettings().path
    if not llamacpp.available():
        return "llama-cpp-python is not installed; run scripts/install_local_model.sh"
    if not path.is_file():
        return f"no model file at {path}; run scripts/install_local_model.sh"
    if path.stat().st_size != weights.MODEL_SIZE:
        return f"{path} is not the pinned model (wrong size); run python -m services.model.weights"
    return None


_LOCAL: list[str] = []


def shared_local_model() -> str:
    """The real model on a loopback port, loaded once per test process and shared by every
    test directory (the model/ and e2e/ fixtures both use it); stopped when the process ends."""
    if _LOCAL:
        return _LOCAL[0]
    settings = ModelSettings()
    problem = real_model_problem(settings.path)
    if problem is not None:
        pytest.skip(problem)
    server = ServerThread(create_app(Runtime(settings)))
    url = server.__enter__()
    atexit.register(server.__exit__)
    deadline = time.monotonic() + 120
    while True:
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        if health["status"] == "ready":
            break
        if health["status"] == "unavailable":
            pytest.fail(f"the local model did not load: {health['detail']}")
        if time.monotonic() > deadline:
            pytest.fail("the local model did not load within 120 s")
        time.sleep(0.2)
    _LOCAL.append(url)
    return url


@pytest.fixture(scope="session")
def local_model_url() -> str:
    """The real model on a loopback port (see `shared_local_model`)."""
    return shared_local_model()


@pytest.fixture
async def local_client(local_model_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{local_model_url}/v1", api_key="local", max_retries=0, timeout=120) as client:
        yield client
