"""The pytest fixtures every test tree shares (tests/ and bench/eval/tests/; loaded as a plugin by
the root conftest.py): a real Redis, a fresh logical database per test (flushed before and after),
and the scripted model server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from testkit.redis_server import redis_base_url
from testkit.scripted_model import ScriptedModel

TEST_DATABASE = int(os.environ.get("REDIS_TEST_DB", 1 + os.getpid() % 15))
"""One logical database per test process (flushed around every test), so two test runs on one
machine rarely share one; REDIS_TEST_DB pins it."""


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
    async with ScriptedModel() as server:
        yield server
