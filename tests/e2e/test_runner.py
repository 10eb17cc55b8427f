"""`python -m services.runner` (what `make run` starts) as a real process: it starts every part,
says where each listens, and Ctrl-C stops them all. With the local model it also plays the
demo conversation, which ends with the booking read back from Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.model.conftest import real_model_problem

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Runner:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def wait_for(self, text: str, within_s: float) -> str:
        """Read output until a line holds `text`; fail with the output so far otherwise."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(within_s):
                while True:
                    raw = await self.process.stdout.readline()
                    if not raw:
                        break
                    line = raw.decode(errors="replace").rstrip()
                    self.lines.append(line)
                    if text in line:
                        return line
        except TimeoutError:
            pass
        tail = "\n".join(self.lines[-40:])
        raise AssertionError(f"no line with {text!r}; the runner said:\n{tail}")

    async def interrupt(self) -> int:
        """Ctrl-C, then the exit code; the output is read to the end meanwhile."""
        self.process.send_signal(signal.SIGINT)
        await self.wait_for("runner     | stopped", within_s=30)
        return await asyncio.wait_for(self.process.wait(), timeout=30)


@asynccontextmanager
async def runner(*args: str, **env: str) -> AsyncIterator[Runner]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MODEL_", "CHAT_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.runner",
        *args,
        cwd=ROOT,
        env={**environ, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield Runner(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            await http.get(url)
    except httpx.TransportError:
        return False
    return True


async def test_the_runner_starts_workers_and_chat_says_where_and_stops_them_on_ctrl_c(redis_url: str) -> None:
    chat = free_port()
    async with runner("--model", "none", "--no-demo", "--chat-port", str(chat), REDIS_URL=redis_url) as run:
        await run.wait_for("ready: chat API", within_s=60)
        banner = "\n".join(run.lines)
        assert f"chat API  : http://127.0.0.1:{chat}" in banner
        assert f"workers   : calendar x1, booking x1 on {redis_url}" in banner
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{chat}/healthz")).status_code == 200
        assert await run.interrupt() == 0
    assert not await answers(f"http://127.0.0.1:{chat}/healthz")


@pytest.mark.local_model
async def test_without_a_key_the_runner_serves_the_local_model_and_the_demo_books_a_slot(redis_url: str) -> None:
    problem = real_model_problem()
    if problem is not None:
        pytest.skip(problem)
    chat, model = free_port(), free_port()
    args = ("--no-install", "--chat-port", str(chat), "--model-port", str(model))
    async with runner(*args, REDIS_URL=redis_url) as run:
        await run.wait_for(f"model ready at http://127.0.0.1:{model}/v1", within_s=180)
        await run.wait_for("ready: chat API", within_s=60)
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"http://127.0.0.1:{chat}/readyz")).json()
        assert ready["checks"]["model"] is True
        verified = await run.wait_for("verified  :", within_s=600)
        assert "Redis holds booking" in verified and "Dr. Lee" in verified
        await run.wait_for("the system keeps running", within_s=10)
        assert await run.interrupt() == 0
    assert not await answers(f"http://127.0.0.1:{chat}/healthz")
    assert not await answers(f"http://127.0.0.1:{model}/healthz")
