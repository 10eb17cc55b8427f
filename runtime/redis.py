"""Redis connections. Workers and the chat service use their own bytes client beside FastStream's.

Every client retries a command that met a dead or closed connection (a Redis restart, a
failover, an idle connection the server dropped) on a fresh one, with exponential backoff for
about `RETRY_SPAN_S`, and checks an idle pooled connection (PING) before reusing it. Redis
restarted: the first command after it is back succeeds instead of failing once per pooled
connection. A retried write is safe here: every write script is idempotent by its key, and a
duplicate reply or event entry is deduplicated by its reader (message id / event id).

`Redis.from_url` alone retries nothing (the pool it builds has no retry policy), hence these helpers.

Redis Cluster (`REDIS_CLUSTER=true`): the same helpers return redis-py's cluster clients, with
the same retry policy (a command that meets a moved slot, a restarting or failed-over master is
sent again once the client has re-read the cluster's layout, with backoff: RetryingCluster). The async one is typed as
`Redis`: it speaks the same commands for keys of one slot, and the few places where the two
differ (scripts in a pipeline, see runtime/scripts.py; groups of partitioned streams) ask
`is_cluster`.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
from collections.abc import Iterable
from typing import Any, cast

import hiredis
import redis as sync_redis
from faststream.redis import RedisBroker, RedisClusterBroker
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import BusyLoadingError, ConnectionError, ResponseError, TimeoutError
from redis.retry import Retry as SyncRetry

from shared import streams

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.05
RETRY_CAP_S = 1.0
RETRIES = 20
"""0.05, 0.1, 0.2, 0.4, 0.8, then 1 s each: about 17 s in all, longer than a restart with AOF."""
RETRY_SPAN_S = RETRY_BASE_S * (2**5 - 1) + RETRY_CAP_S * (RETRIES - 5)
HEALTH_CHECK_INTERVAL_S = 5
CLUSTER_MAX_CONNECTIONS = 1_000
"""Per node of a cluster: its client cannot wait for a free connection, so the cap sits far
above what a process uses (the chat: one per concurrent command)."""
POOL_WAIT_S = 20
"""All pooled connections busy: a command waits this long for one (instead of failing at once)."""
RETRY_ON: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, BusyLoadingError, ConnectionResetError)


StreamRows = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]
"""What XREAD and XREADGROUP return on a bytes-mode client: per stream, its name and its
entries as (entry id, fields)."""


def as_text(value: bytes | str) -> str:
    """Replies of a bytes-mode client as text."""
    return value.decode() if isinstance(value, bytes) else value


class SocketTimedParser(_AsyncHiredisParser):
    """hiredis, with the connection's `socket_timeout` on each read from the socket instead of
    on each reply: a pipeline's hundreds of replies mostly come out of one read's buffer, and
    redis-py's timer per reply (a loop timer set and cancelled) was a tenth of a booking
    worker's CPU. A server that stops answering, before a reply or in the middle of a
    pipeline's replies, still fails the read after `socket_timeout` (redis TimeoutError, and
    the connection is dropped, as before)."""

    read_timeout_s: float | None = None
    """Set by PackedConnection.read_response for each reply: its socket timeout, or None when
    the caller set a timeout of its own (then redis-py's timer applies, as without this class)."""

    async def read_from_socket(self) -> bool:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                return cast(bool, await super().read_from_socket())  # type: ignore[no-untyped-call]
        except builtins.TimeoutError:  # asyncio's; `TimeoutError` here is redis-py's
            raise TimeoutError("Timeout reading from the socket") from None


class PackedConnection(Connection):
    """Packs commands with hiredis (C) instead of redis-py's pure-Python packer, and writes a
    whole pipeline in one piece: at thousands of commands a second the packing was a tenth
    of a worker's CPU (docs/performance.md). Its parser times each socket read
    (SocketTimedParser), so a reply read from the buffer sets no timer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"parser_class": SocketTimedParser, **kwargs})

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        """A caller's own timeout is kept (redis-py's timer around the reply); without one the
        parser times its socket reads (math.inf: redis-py sets no timer of its own)."""
        parser = self._parser
        if isinstance(parser, SocketTimedParser):
            parser.read_timeout_s = self.socket_timeout if timeout is None else None
            if timeout is None:
                timeout = math.inf
        return await super().read_response(
            disable_decoding,
            timeout,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )

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


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S)


CLUSTER_RETRY_ON: tuple[type[Exception], ...] = (*RedisCluster.ERRORS_ALLOW_RETRY, *RETRY_ON)
_RETRY_OR_TORN_DOWN: tuple[type[Exception], ...] = (*CLUSTER_RETRY_ON, AttributeError)


class RetryingCluster(RedisCluster):
    """redis-py's async cluster client retries a command that met a dead node or a cluster that
    is down at once, without a pause, so a master's restart (seconds) exhausts its attempts in
    milliseconds. This one then retries it with the module's backoff, for about RETRY_SPAN_S,
    like `connect`'s single-node client. (Pipelines keep redis-py's own retries: 0.25 s apart,
    about 5 s; their callers retry on their own.)

    During a failover redis-py (8.1) refreshes the slots and disconnects the old master's
    connections, also one another command is opening at that moment, which then fails with
    AttributeError ("'NoneType' object has no attribute 'writelines'": its writer is gone). That
    is a lost connection too, and retried as one (tests/integration/test_cluster.py, failover)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        backoff = _backoff()
        failures = 0
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except _RETRY_OR_TORN_DOWN as exc:
                if isinstance(exc, AttributeError) and "'NoneType' object" not in str(exc):
                    raise  # a bug, not a connection torn down under the command
                failures += 1
                if failures > RETRIES:
                    raise
                log.debug("%s failed (%s); retrying", args[0], exc)
                await asyncio.sleep(backoff.compute(failures))


def cluster_options() -> dict[str, Any]:
    """What `connect` gives a cluster client: the module's retry policy and socket options."""
    return {**_options(), "retry": Retry(_backoff(), RETRIES), "max_connections": CLUSTER_MAX_CONNECTIONS}


def is_cluster(redis: Redis) -> bool:
    """Whether a client from `connect` talks to a Redis Cluster."""
    return isinstance(redis, RedisCluster)


def connect(url: str, *, cluster: bool = False, max_connections: int = 200, wait_for_connection: bool = True) -> Redis:
    """A bytes-mode client (FastStream breaks with decode_responses=True, so we never share it),
    retrying on connection errors with backoff (see the module doc). Beyond `max_connections`
    concurrent commands, a command waits for a free connection rather than failing (unless
    `wait_for_connection` is False: a worker, whose commands share pipelines, keeps the cheaper
    plain pool).

    The socket timeout stays above every blocking read we issue (at most a few seconds).

    `cluster`: `url` names a node of a Redis Cluster; the client is a `RedisCluster` (see the
    module doc), with at most CLUSTER_MAX_CONNECTIONS per node.
    """
    if cluster:
        return cast(Redis, RetryingCluster.from_url(url, **cluster_options()))
    options = {
        **_options(),
        "max_connections": max_connections,
        "retry": Retry(_backoff(), RETRIES),
    }
    if url.startswith("redis://"):  # TCP without TLS (TLS and unix sockets keep their own classes)
        options["connection_class"] = PackedConnection
    if wait_for_connection:
        pool: ConnectionPool = BlockingConnectionPool.from_url(url, timeout=POOL_WAIT_S, **options)
    else:
        pool = ConnectionPool.from_url(url, **options)
    return Redis(connection_pool=pool)


async def transaction(redis: Redis) -> Pipeline:
    """A MULTI/EXEC pipeline (its keys in one slot). A cluster client is made ready first:
    redis-py 8.1 queues each command of a cluster transaction on a private event loop in a
    thread, and a client that reads the cluster's layout there (its first command, or the first
    after a topology change) keeps connections bound to that dead loop ("Event loop is closed")."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # nothing to do when it is ready
    return redis.pipeline(transaction=True)


def broker(url: str, *, cluster: bool = False, **options: Any) -> RedisBroker:
    """The FastStream broker that runs a worker's lifecycle (our readers are plain redis-py,
    runtime/worker.py): FastStream's cluster broker on a cluster, else the plain one."""
    if cluster:
        return RedisClusterBroker(url, **options)
    return RedisBroker(url, **options)


def sync_connect(url: str, *, cluster: bool = False) -> sync_redis.Redis | SyncRedisCluster:
    """The same, blocking (for threads such as a worker's heartbeat)."""
    if cluster:
        return SyncRedisCluster.from_url(url, retry=SyncRetry(_backoff(), RETRIES), **_options())
    return sync_redis.Redis.from_url(url, retry=SyncRetry(_backoff(), RETRIES), **_options())


async def ensure_groups(redis: Redis, partitions: int = 1) -> None:
    """Create every consumer group at id 0 before anything is published, on every partition
    of a partitioned stream (`partitions`: settings.stream_partitions).

    FastStream creates groups at `$` when a subscriber starts, which skips whatever was
    published before the first worker came up; creating them here at `0` loses nothing.
    """
    for stream, group in streams.groups(partitions):
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
