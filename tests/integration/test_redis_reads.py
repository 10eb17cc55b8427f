"""Reads through runtime.redis.PackedConnection from the real server, through a loopback proxy
that can stop passing the server's bytes: the socket timeout covers each read from the socket
(a server that stops answering, also in the middle of a pipeline's replies, fails the read and
drops the connection), and a caller's own timeout still applies as in redis-py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from runtime.redis import PackedConnection
from testkit.fixtures import on_one_node

pytestmark = on_one_node

SOCKET_TIMEOUT_S = 0.5


class StallingProxy:
    """Passes bytes both ways between its clients and Redis; `stall_after(n)` lets n more
    bytes of the server's through to the client, then holds the rest (a server gone silent)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.budget: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def stall_after(self, allowed: int) -> None:
        self.budget = allowed

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        for pump in (self._pump(client_reader, server_writer, limited=False), self._pump(server_reader, client_writer)):
            task = asyncio.create_task(pump)
            self._tasks.add(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, limited: bool = True) -> None:
        try:
            while chunk := await reader.read(65_536):
                if limited and self.budget is not None:
                    passed, self.budget = chunk[: self.budget], max(0, self.budget - len(chunk))
                    writer.write(passed)
                    await writer.drain()
                    if len(passed) < len(chunk):
                        await asyncio.Event().wait()  # silent from here on
                    continue
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def proxied(redis_url: str) -> AsyncIterator[tuple[StallingProxy, PackedConnection]]:
    parts = urlsplit(redis_url)
    proxy = StallingProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    port = await proxy.start()
    connection = PackedConnection(
        host="127.0.0.1", port=port, db=int(parts.path.strip("/") or 0), socket_timeout=SOCKET_TIMEOUT_S
    )
    await connection.connect()  # type: ignore[no-untyped-call]
    try:
        yield proxy, connection
    finally:
        await connection.disconnect()
        await proxy.close()


async def test_a_server_that_stops_answering_fails_the_read_after_the_socket_timeout(
    proxied: tuple[StallingProxy, PackedConnection],
) -> None:
    proxy, connection = proxied
    await connection.send_command("PING")
    assert await connection.read_response() in (b"PONG", "PONG")
    proxy.stall_after(0)
    await connection.send_command("PING")
    began = time.monotonic()

    with pytest.raises(RedisTimeoutError):
        await connection.read_response()

    assert SOCKET_TIMEOUT_S * 0.9 <= time.monotonic() - began < SOCKET_TIMEOUT_S + 1.0
    assert not connection.is_connected  # dropped: its half-read replies can never be matched again


async def test_a_pipeline_whose_replies_stop_midway_fails_after_the_socket_timeout(
    redis: Redis, proxied: tuple[StallingProxy, PackedConnection]
) -> None:
    proxy, connection = proxied
    value = b"v" * 4_000
    await redis.set("big", value)
    await connection.send_packed_command(connection.pack_commands([("GET", "big")] * 200))
    assert [await connection.read_response() for _ in range(200)] == [value] * 200  # all of them, unstalled

    proxy.stall_after(100_000)  # about 25 of the next 200 replies get through
    await connection.send_packed_command(connection.pack_commands([("GET", "big")] * 200))
    read = 0
    began = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        for _ in range(200):
            assert await connection.read_response() == value
            read += 1

    assert 10 < read < 30
    assert time.monotonic() - began < SOCKET_TIMEOUT_S + 1.0
    assert not connection.is_connected


async def test_a_callers_own_timeout_applies_as_in_redis_py(proxied: tuple[StallingProxy, PackedConnection]) -> None:
    """redis-py's contract: a read given its own timeout returns None when it passes."""
    proxy, connection = proxied
    proxy.stall_after(0)
    await connection.send_command("PING")
    began = time.monotonic()

    assert await connection.read_response(timeout=0.1) is None

    assert time.monotonic() - began < SOCKET_TIMEOUT_S
