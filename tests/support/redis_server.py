"""Where the tests' real Redis comes from: REDIS_URL, else the local server, else a
testcontainers Redis when a Docker engine answers, else a clear skip."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import redis


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def redis_base_url() -> Iterator[str | None]:
    """Yield a Redis URL without a database number, or None with nothing available."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        return
    local = "redis://127.0.0.1:6379"
    if _answers(local):
        yield local
        return
    try:
        from testcontainers.community.redis import RedisContainer  # type: ignore[import-not-found]
    except ImportError:
        from testcontainers.redis import RedisContainer
    try:
        container = RedisContainer("redis:7-alpine")
        container.start()
    except Exception:  # no Docker engine
        yield None
        return
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}"
    finally:
        container.stop()
