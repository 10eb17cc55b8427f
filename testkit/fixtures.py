"""The pytest fixtures every test tree shares (tests/ and bench/eval/tests/; loaded as a plugin by
the root conftest.py): a real Redis, a fresh logical database per test (flushed before and after),
or with REDIS_TEST_CLUSTER=1 a private Redis Cluster flushed around every test, and the scripted
model server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Final

import pytest
from redis.asyncio import Redis

from testkit.redis_cluster import flush_all, is_cluster_url, private_cluster, redis_client, register_cluster_url
from testkit.redis_server import redis_base_url
from testkit.scripted_model import ScriptedModel

TEST_DATABASE = int(os.environ.get("REDIS_TEST_DB", 1 + os.getpid() % 15))
"""One logical database per test process (flushed around every test), so two test runs on one
machine rarely share one; REDIS_TEST_DB pins it."""


CLUSTER: Final = os.environ.get("REDIS_TEST_CLUSTER", "") not in ("", "0", "false")
"""REDIS_TEST_CLUSTER=1: the session runs on a private 3-master Redis Cluster (started here,
stopped at the end) in cluster mode; a cluster has no logical databases, so every master is
flushed around every test instead (tests run one at a time in a session)."""
on_one_node = pytest.mark.skipif(CLUSTER, reason="REDIS_TEST_CLUSTER: this test needs a single Redis node")
"""For a test that cannot run on a cluster (it SELECTs a database, or restarts the one server)."""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    if CLUSTER:
        with private_cluster() as cluster:
            register_cluster_url(cluster.url)
            before = os.environ.get("REDIS_CLUSTER")
            os.environ["REDIS_CLUSTER"] = "true"  # for the processes tests start (workers, chat)
            try:
                yield cluster.url
            finally:
                if before is None:
                    os.environ.pop("REDIS_CLUSTER", None)
                else:
                    os.environ["REDIS_CLUSTER"] = before
        return
    with redis_base_url() as url:
        if url is None:
            pytest.skip("no Redis: set REDIS_URL, run one on 127.0.0.1:6379, or start a Docker engine")
        yield url


def database_url(server: str) -> str:
    """The tests' database on `server`: its TEST_DATABASE, or on a cluster the cluster itself."""
    return server if is_cluster_url(server) else f"{server}/{TEST_DATABASE}"


@pytest.fixture
async def redis_url(redis_server: str) -> AsyncIterator[str]:
    url = database_url(redis_server)
    await flush_all(url)
    yield url
    await flush_all(url)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = await redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel() as server:
        yield server
