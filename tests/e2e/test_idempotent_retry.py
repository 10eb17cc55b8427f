"""A client retries a chat turn with its Idempotency-Key (issue 19, defect 6): after the chat
that ran the first attempt died mid-turn, the retry takes the key over and is answered; while
the first attempt's chat is alive, the retry waits for that answer and nothing runs twice.

The crash test runs two real chat processes (`python -m services.chat`) on the test's Redis,
the workers and the scripted model in this process, and SIGKILLs the first chat while the model
is still answering it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from redis.asyncio import Redis

from services.chat.deps import scope_conversation
from shared.keys import TenantKeys
from shared.settings import Settings
from testkit.scripted_model import ScriptedModel
from testkit.serving import free_port
from testkit.system import make_settings
from testkit.worker_processes import WorkerProcess
from tests.conftest import System
from tests.e2e.flows import answer

LEASE_S = 2.0
REPLY = "Hello! How can I help?"
TURN = "/v1/conversations/c1/messages"


class ChatProcess(WorkerProcess):
    """`python -m services.chat` on a free loopback port."""

    def __init__(self, redis_url: str, model_url: str) -> None:
        self.port = free_port()
        super().__init__(
            "services.chat",
            redis_url,
            f"chat-{uuid.uuid4().hex[:8]}",
            CHAT_HOST="127.0.0.1",
            CHAT_PORT=self.port,
            OPENAI_BASE_URL=model_url,
            OPENAI_API_KEY="test",
            OPENAI_MODEL="scripted",
            OPENAI_MAX_RETRIES=0,
            BLOCK_MS=100,
            IDEMPOTENCY_LEASE_S=LEASE_S,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    async def answering(self, timeout_s: float = 30.0) -> ChatProcess:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise RuntimeError(f"the chat exited early:\n{self.tail()}")
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"the chat did not start:\n{self.tail()}")


@pytest.fixture
async def chats(redis_url: str, model: ScriptedModel, workers: None) -> AsyncIterator[list[ChatProcess]]:
    processes = [ChatProcess(redis_url, model.base_url).start() for _ in range(2)]
    try:
        yield [await p.answering() for p in processes]
    finally:
        WorkerProcess.stop_all(list(processes))


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stored_turns(redis: Redis, user: str = "alice") -> int:
    return int(await redis.get(TenantKeys("demo").conversation_turns(scope_conversation(user, "c1"))) or 0)


async def test_a_retry_after_the_chat_died_mid_turn_takes_the_key_over(
    chats: list[ChatProcess], model: ScriptedModel, redis: Redis
) -> None:
    first, second = chats
    headers = {"X-User-Id": "alice", "Idempotency-Key": "retry-me"}
    body = {"text": "Hi there"}
    model.delay_s = 3.0  # the first attempt is still waiting for the model when its chat dies
    # the dead chat's answer is still taken from the script: one for each attempt
    model.script(answer(REPLY, topic="greeting"), answer(REPLY, topic="greeting"))
    async with httpx.AsyncClient(timeout=LEASE_S + 10) as http:
        attempt = asyncio.create_task(http.post(first.url + TURN, json=body, headers=headers))
        await until(lambda: len(model.requests) == 1)
        first.kill()
        with pytest.raises(httpx.TransportError):
            await attempt
        model.delay_s = 0.0
        started = time.monotonic()
        retry = await http.post(second.url + TURN, json=body, headers=headers)
        waited = time.monotonic() - started
        again = await http.post(second.url + TURN, json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["reply"] == REPLY
    assert waited < LEASE_S + 5, f"the retry waited {waited:.1f} s for a dead owner"
    assert again.json() == retry.json()
    assert len(model.requests) == 2  # the dead attempt's call and the retry's; the replay made none
    assert await stored_turns(redis) == 1


@pytest.fixture
async def settings(redis_url: str, model: ScriptedModel) -> Settings:
    # renewed every third of the lease: 2 s leaves a renewal 1.3 s of slack on a loaded machine
    # (with 1 s, a stalled loop lost the lease and the retry ran the turn again)
    return make_settings(redis_url, model.base_url, idempotency_lease_s=2.0)


async def test_a_running_turn_keeps_its_key_past_the_lease_and_the_retry_gets_its_answer(system: System) -> None:
    system.model.delay_s = 5.0  # two and a half leases long: only renewal keeps the key
    system.model.script(answer(REPLY, topic="greeting"), answer("A second run must not happen.", topic="greeting"))
    first = asyncio.create_task(system.say("Hi there", **{"Idempotency-Key": "k"}))
    await until(lambda: len(system.model.requests) == 1)
    retry = await system.say("Hi there", **{"Idempotency-Key": "k"})
    assert (await first).json()["reply"] == REPLY
    assert retry.status_code == 200 and retry.json()["reply"] == REPLY
    assert len(system.model.requests) == 1
    assert await stored_turns(system.redis) == 1
