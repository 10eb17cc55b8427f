"""Redis connections. Workers and the chat service use their own bytes client beside FastStream's.

Every client retries a command that met a dead or closed connection (a Redis restart, a
failover, an idle connection the server dropped) on a fresh one, with exponential backoff for
about `RETRY_SPAN_S`, and checks an idle pooled connection (PING) before reusing it. Redis
restarted: the first command after it is back succeeds instead of failing once per pooled
connection. A retried write is safe here: every write script is idempotent by its key, and a
duplicate reply or event entry is deduplicated by its reader (message id / event id).

`Redis.from_url` alone retries nothing (the pool it builds has no retry policy), hence these helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hiredis
import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, ResponseError, TimeoutError
from redis.retry import Retry as SyncRetry

from shared import streams

RETRY_BASE_S = 0.05
RETRY_CAP_S = 1.0
RETRIES = 20
"""0.05, 0.1, 0.2, 0.4, 0.8, then 1 s each: about 17 s in all, longer than a restart with AOF."""
RETRY_SPAN_S = RETRY_BASE_S * (2**5 - 1) + RETRY_CAP_S * (RETRIES - 5)
HEALTH_CHECK_INTERVAL_S = 5
POOL_WAIT_S = 20
"""All pooled connections busy: a command waits this long for one (instead of failing at once)."""
RETRY_ON: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, BusyLoadingError, ConnectionResetError)


def as_text(value: bytes | str) -> str:
    """Replies of a bytes-mode client as text."""
    return value.decode() if isinstance(value, bytes) else value


class PackedConnection(Connection):
    """Packs commands with hiredis (C) instead of redis-py's pure-Python packer, and writes a
    whole pipeline in one piece: at thousands of commands a second the packing was a tenth
    of a worker's CPU (docs/performance.md)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str | bytes) and len(name.split()) > 1:  # "XGROUP CREATE": two arguments
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(self.pack_command(*command)[0] for command in commands)]


def _options() -> dict[str, Any]:
    return {
        "socket_timeout": 15,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry_on_error": list(RETRY_ON),
    }


def connect(url: str, *, max_connections: int = 200, wait_for_connection: bool = True) -> Redis:
    """A bytes-mode client (FastStream breaks with decode_responses=True, so we never share it),
    retrying on connection errors with backoff (see the module doc). Beyond `max_connections`
    concurrent commands, a command waits for a free connection rather than failing (unless
    `wait_for_connection` is False: a worker, whose commands share pipelines, keeps the cheaper
    plain pool).

    The socket timeout stays above every blocking read we issue (at most a few seconds).
    """
    options = {
        **_options(),
        "max_connections": max_connections,
        "retry": Retry(ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S), RETRIES),
    }
    if url.startswith("redis://"):  # TCP without TLS (TLS and unix sockets keep their own classes)
        options["connection_class"] = PackedConnection
    if wait_for_connection:
        pool: ConnectionPool = BlockingConnectionPool.from_url(url, timeout=POOL_WAIT_S, **options)
    else:
        pool = ConnectionPool.from_url(url, **options)
    return Redis(connection_pool=pool)


def sync_connect(url: str) -> sync_redis.Redis:
    """The same, blocking (for threads such as a worker's heartbeat)."""
    return sync_redis.Redis.from_url(
        url, retry=SyncRetry(ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S), RETRIES), **_options()
    )


async def ensure_groups(redis: Redis) -> None:
    """Create every consumer group at id 0 before anything is published.

    FastStream creates groups at `$` when a subscriber starts, which skips whatever was
    published before the first worker came up; creating them here at `0` loses nothing.
    """
    for stream, group in streams.GROUPS:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
