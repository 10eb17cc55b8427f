"""Fixtures: a real Redis (fresh logical DB per test, flushed after), the scripted model
server, and the whole system (both workers and the chat API) started in-process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from shared.settings import Settings
from testkit.redis_server import redis_base_url
from testkit.scripted_model import ScriptedModel
from testkit.system import launch, make_settings, running_workers

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
    async with running_workers(settings):
        yield


@pytest.fixture
async def system(settings: Settings, workers: None, model: ScriptedModel) -> AsyncIterator[System]:
    """The chat API beside the `workers` (a module may override which run)."""
    async with launch(settings, workers=()) as running, httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        yield System(settings, http, model, running.redis)
