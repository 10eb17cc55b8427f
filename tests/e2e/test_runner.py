"""`python -m devtools.runner` (what `make run` starts) as a real process: it starts every part,
says where each listens, and Ctrl-C stops them all. A booking driven through its chat API moves
the chat's and the workers' Prometheus counters. With the local model it also plays the demo
conversation, which ends with the booking read back from Redis."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.calendar_days import next_weekday
from testkit.scripted_model import ScriptedModel
from testkit.serving import free_port
from tests.e2e.flows import book, fetch
from tests.model.conftest import real_model_problem

ROOT = Path(__file__).resolve().parents[2]


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
        "devtools.runner",
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
            process.kill()  # the hardest stop: its children must not outlive it (PDEATHSIG)
            await process.wait()


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            await http.get(url)
    except httpx.TransportError:
        return False
    return True


def metrics_endpoints(lines: list[str]) -> dict[str, str]:
    """The workers' metrics URLs from the start banner, by process name."""
    return dict(re.findall(r"metrics   : (\S+) (http://\S+/metrics)", "\n".join(lines)))


async def until_answers(url: str, within_s: float = 30) -> None:
    async with asyncio.timeout(within_s):
        while not await answers(url):
            await asyncio.sleep(0.2)


async def scrape(http: httpx.AsyncClient, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await http.get(url)
    response.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


async def test_the_runner_starts_workers_and_chat_says_where_and_stops_them_on_ctrl_c(redis_url: str) -> None:
    chat = free_port()
    args = ("--model", "none", "--no-demo", "--chat-port", str(chat), "--metrics-port", "0")
    async with runner(*args, REDIS_URL=redis_url) as run:
        await run.wait_for("ready: chat API", within_s=60)
        banner = "\n".join(run.lines)
        assert f"chat API  : http://127.0.0.1:{chat}" in banner
        assert f"workers   : calendar x1, booking x1 on {redis_url}" in banner
        endpoints = metrics_endpoints(run.lines)
        assert set(endpoints) == {"calendar.0", "booking.0"}
        assert len(set(endpoints.values())) == 2  # one port each
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{chat}/healthz")).status_code == 200
        for url in endpoints.values():
            await until_answers(url)
        assert await run.interrupt() == 0
    assert not await answers(f"http://127.0.0.1:{chat}/healthz")
    for url in endpoints.values():
        assert not await answers(url)


async def test_a_runner_killed_outright_takes_its_processes_with_it(redis_url: str) -> None:
    chat = free_port()
    args = ("--model", "none", "--no-demo", "--chat-port", str(chat), "--metrics-port", "0")
    async with runner(*args, REDIS_URL=redis_url) as run:
        await run.wait_for("ready: chat API", within_s=60)
        urls = [f"http://127.0.0.1:{chat}/healthz", *metrics_endpoints(run.lines).values()]
        for url in urls:
            await until_answers(url)
        run.process.kill()  # SIGKILL: the runner cannot stop anything itself
        await run.process.wait()
    async with asyncio.timeout(20):
        while any([await answers(url) for url in urls]):
            await asyncio.sleep(0.2)


def children_running(parent: int, module: str) -> list[int]:
    """Pids of the processes `parent` started with `-m module`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and module.encode() in argv:
            found.append(int(stat.parent.name))
    return found


async def test_a_dead_worker_is_restarted_with_backoff_and_the_system_keeps_serving(redis_url: str) -> None:
    chat = free_port()
    args = ("--model", "none", "--no-demo", "--booking", "2", "--chat-port", str(chat), "--metrics-port", "0")
    async with runner(*args, REDIS_URL=redis_url) as run:
        await run.wait_for("ready: chat API", within_s=60)
        before = children_running(run.process.pid, "services.booking")
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        died = await run.wait_for("restarting it in", within_s=10)
        assert re.search(r"booking\.\d exited with -9; restarting it in 0\.5 s \(restart 1 in a row\)", died), died
        await run.wait_for("restarted (pid", within_s=10)
        after = children_running(run.process.pid, "services.booking")
        assert len(after) == 2 and before[0] not in after and before[1] in after
        assert run.process.returncode is None
        assert await answers(f"http://127.0.0.1:{chat}/healthz")
        assert await run.interrupt() == 0


async def test_a_booking_through_the_runners_processes_moves_the_chat_and_worker_counters(
    redis_url: str, model: ScriptedModel
) -> None:
    chat = free_port()
    model.script(fetch(next_weekday()), book("10:00"))
    args = ("--model", "none", "--no-demo", "--chat-port", str(chat), "--metrics-port", "0")
    env = {"OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "test", "OPENAI_MODEL": "scripted"}
    async with runner(*args, REDIS_URL=redis_url, **env) as run:
        await run.wait_for("ready: chat API", within_s=60)
        workers = metrics_endpoints(run.lines)
        chat_metrics = f"http://127.0.0.1:{chat}/metrics"
        parts = [*workers.items(), ("chat", chat_metrics)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{chat}", timeout=60) as http:
            for url in workers.values():
                await until_answers(url)
            before = {name: await scrape(http, url) for name, url in parts}

            turn = "/v1/conversations/obs-1/messages"
            alice = {"X-User-Id": "alice"}
            first = await http.post(turn, json={"text": "Is Dr. Lee free?"}, headers=alice)
            assert first.status_code == 200, first.text
            second = await http.post(turn, json={"text": "10:00 please, I'm Alice Smith"}, headers=alice)
            assert second.json()["pending_action"] is not None, second.text
            third = await http.post(turn, json={"text": "Yes please"}, headers=alice)
            assert third.status_code == 200, third.text
            assert third.json()["bookings"][0]["status"] == "confirmed"

            # a worker counts its effect and its entries just after the reply is stored and acked:
            # scrape until the booking worker counted the booking
            effect = ("booking_effects_total", frozenset({"status": "confirmed"}.items()))
            async with asyncio.timeout(15):
                while True:
                    after = {name: await scrape(http, url) for name, url in parts}
                    if after["booking.0"].get(effect, 0.0) > before["booking.0"].get(effect, 0.0):
                        break
                    await asyncio.sleep(0.2)

        def moved(part: str, name: str, **labels: str) -> float:
            return value(after[part], name, **labels) - value(before[part], name, **labels)

        assert moved("chat", "booking_tool_calls_total", tool="book_meeting", outcome="awaiting_approval") == 1
        assert moved("chat", "booking_tool_calls_total", tool="book_meeting", outcome="ok") == 1
        assert moved("chat", "booking_tool_calls_total", tool="fetch_free_slots", outcome="ok") == 1
        assert moved("booking.0", "booking_effects_total", status="confirmed") == 1
        assert moved("booking.0", "booking_stream_messages_total", stream="booking.commands", outcome="ok") >= 1
        assert moved("calendar.0", "booking_stream_messages_total", stream="calendar.requests", outcome="ok") >= 1
        pending = ("booking_stream_pending", frozenset({"stream": "booking.commands", "group": "booking"}.items()))
        assert pending in after["booking.0"]  # the worker reports its own group too
        assert await run.interrupt() == 0


@pytest.mark.local_model
@pytest.mark.timeout(900)
async def test_without_a_key_the_runner_serves_the_local_model_and_the_demo_books_a_slot(redis_url: str) -> None:
    problem = real_model_problem()
    if problem is not None:
        pytest.skip(problem)
    chat, model = free_port(), free_port()
    args = ("--no-install", "--chat-port", str(chat), "--model-port", str(model))
    async with runner(*args, REDIS_URL=redis_url) as run:
        await run.wait_for(f"model ready at http://127.0.0.1:{model}/v1", within_s=180)
        await run.wait_for("ready: chat API", within_s=240)  # after the prompt's prefix is warm
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"http://127.0.0.1:{chat}/readyz")).json()
        assert ready["checks"]["model"] is True
        verified = await run.wait_for("verified  :", within_s=600)
        assert "Redis holds booking" in verified and "Dr. Lee" in verified
        await run.wait_for("the system keeps running", within_s=10)
        assert await run.interrupt() == 0
    assert not await answers(f"http://127.0.0.1:{chat}/healthz")
    assert not await answers(f"http://127.0.0.1:{model}/healthz")
