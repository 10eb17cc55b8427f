"""A private, real `redis-server` (AOF on) restarted under load, and one at its memory limit.

* Restarted (SHUTDOWN, and kill -9): the workers' and the chat's pooled connections are dead;
  the first command after the server is back succeeds (redis-py retries with backoff on a
  fresh connection), no request is lost and nothing is booked twice.
* At maxmemory with noeviction: a poison entry whose dead letter cannot be stored stays
  pending (it is not acked into nowhere) and is dead-lettered once memory is available.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import pytest
from redis.asyncio import Redis

from runtime.redis import connect, ensure_groups
from services.chat.toolbus import ToolBus
from shared import streams
from shared.keys import TenantKeys
from shared.messages import Envelope
from testkit.booking_data import TENANT, book_payload, command, offer, put_rooms, slot_at, stream_entries
from testkit.redis_server import RedisServer
from testkit.worker_processes import WorkerProcess

pytestmark = pytest.mark.faults

KEYS = TenantKeys(TENANT)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory() as workdir:
        redis_server = RedisServer(workdir).start()
        yield redis_server
        redis_server.stop()


@pytest.fixture
async def admin(server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(server.url)
    yield client
    await client.aclose()


async def requests(redis: Redis, room: str, first: int, count: int, reply_to: str) -> list[Envelope]:
    out = []
    for i in range(first, first + count):
        _, start = slot_at(i, [room])
        await offer(redis, f"conv-{i}", [(room, start)])
        out.append(
            command(
                "book_meeting", book_payload(room, start), user=f"u{i}", conversation=f"conv-{i}", reply_to=reply_to
            )
        )
    return out


@pytest.mark.parametrize("how", ["shutdown", "kill"])
async def test_after_a_redis_restart_mid_load_the_first_command_succeeds(
    server: RedisServer, admin: Redis, how: Literal["shutdown", "kill"]
) -> None:
    await ensure_groups(admin)
    (room,) = await put_rooms(admin, 1)
    worker = WorkerProcess("services.booking", server.url, f"restart-{uuid.uuid4().hex[:6]}", BLOCK_MS=100).start()
    chat = connect(server.url)
    bus = ToolBus(chat, f"chat-{uuid.uuid4().hex[:6]}", block_ms=100)
    try:
        await worker.ready()
        await bus.start()
        before = await requests(admin, room, 0, 100, bus.reply_to)
        load = [asyncio.create_task(bus.request(e, 20)) for e in before]  # in flight across the restart
        await asyncio.sleep(0.05)
        if how == "shutdown":
            await asyncio.to_thread(server.shutdown)
        else:
            await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.5)  # every pooled connection of the worker and the chat is now dead
        await asyncio.to_thread(server.start)

        after = await requests(admin, room, 100, 1, bus.reply_to)
        began = time.monotonic()
        first = await bus.request(after[0], 20)
        took = time.monotonic() - began
        during = await asyncio.gather(*load)
    finally:
        await bus.stop()
        await chat.aclose()
        worker.stop()

    assert first.error is None, first.error
    assert took < 5, f"the first command after the restart took {took:.1f} s"
    assert [r.error for r in during if r.error is not None] == []
    assert worker.tail().count("Traceback") == 0, worker.tail()
    # each booked once: 101 slots, 101 bookings, whatever was retried
    assert await admin.zcard(KEYS.calendar_bookings(room)) == 101


async def test_a_dead_letter_that_cannot_be_stored_leaves_its_entry_pending_until_it_can(
    server: RedisServer, admin: Redis
) -> None:
    await ensure_groups(admin)
    worker = WorkerProcess(
        "services.booking",
        server.url,
        f"oom-{uuid.uuid4().hex[:6]}",
        BLOCK_MS=100,
        VISIBILITY_TIMEOUT_MS=500,
        BOOKING_INVITATIONS="false",
    ).start()
    try:
        await worker.ready()
        await admin.config_set("maxmemory-policy", "noeviction")
        # the poison entry, then a limit below what is used (every write that needs memory is
        # refused), in one transaction: the worker's blocked read gets the entry at that limit
        pipe = admin.pipeline(transaction=True)
        pipe.xadd(streams.BOOKING_COMMANDS, {streams.DATA_FIELD: "not json"})
        pipe.config_set("maxmemory", "1")
        await pipe.execute()
        await asyncio.sleep(2.0)  # read, dead-lettering refused (OOM), retried a few times

        pending = await admin.xpending(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP)
        assert int(pending["pending"]) == 1, "acked although its dead letter was not stored"
        assert await admin.xlen(streams.DEAD_LETTERS) == 0

        await admin.config_set("maxmemory", "0")
        for _ in range(100):
            if int((await admin.xpending(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP))["pending"]) == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        worker.stop()

    assert int((await admin.xpending(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP))["pending"]) == 0
    (dead,) = await stream_entries(admin, streams.DEAD_LETTERS)
    assert dead["reason"].startswith("not an envelope")
    assert dead["fields"] == {streams.DATA_FIELD: "not json"}
