"""Fixtures: a real Redis (fresh logical DB per test, flushed after), the scripted model
server, and the whole system (both workers and the chat API) started in-process."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from services.booking.app import build as build_booking
from services.calendar.app import build as build_calendar
from services.chat.api import create_app
from shared.settings import Settings
from testkit.redis_server import redis_base_url
from testkit.scripted_model import ScriptedModel

# One logical database per test process (flushed around every test), so two test runs on one
# machine rarely share one; REDIS_TEST_DB pins it.
TEST_DATABASE = int(os.environ.get("REDIS_TEST_DB", 1 + os.getpid() % 15))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    with redis_base_url() as url:
        if url is None:
            pytest.skip("no Redis: set REDIS_URL, run one on 127.0.0.1:6379, or start a Docker engine")
        yield url


@pytest.fixture
async def redis_url(redis_server: str) -> AsyncIterator[str]:
    url = f"{redis_server}/{TEST_DATABASE}"
    client = Redis.from_url(url)
    await client.flushdb()
    yield url
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    server = ScriptedModel()
    await server.start()
    yield server
    await server.stop()


def make_settings(redis_url: str, model_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "openai_base_url": model_url,
        "openai_api_key": "test",
        "openai_model": "scripted",
        "openai_max_retries": 0,
        "instance_id": f"test-{uuid.uuid4().hex[:8]}",
        "block_ms": 100,
        "tool_timeout_s": 5.0,
        "visibility_timeout_ms": 2_000,
        "ics_organizer": "appointments@clinic.test",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class System:
    settings: Settings
    http: httpx.AsyncClient
    model: ScriptedModel
    redis: Redis

    async def say(self, text: str, conversation: str = "c1", user: str = "alice", **headers: str) -> httpx.Response:
        return await self.http.post(
            f"/v1/conversations/{conversation}/messages",
            json={"text": text},
            headers={"X-User-Id": user, **headers},
        )


@pytest.fixture
async def settings(redis_url: str, model: ScriptedModel) -> Settings:
    return make_settings(redis_url, model.base_url)


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[None]:
    """One calendar and one booking worker, as in production but in this process."""
    _, calendar_app = build_calendar(settings)
    _, booking_app = build_booking(settings)
    async with calendar_app, booking_app:
        yield


@pytest.fixture
async def system(settings: Settings, workers: None, model: ScriptedModel, redis: Redis) -> AsyncIterator[System]:
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield System(settings, http, model, redis)
    server.should_exit = True
    await task
