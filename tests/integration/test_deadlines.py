"""What the user is told is what happened: every command carries its caller's deadline; a
worker that gets it later changes nothing (checked in the write script against the Redis
server's clock); a dead worker's entries are claimed within seconds, well inside the deadline.

Real Redis, real `python -m services.booking` processes killed with SIGKILL, the chat's real
ToolBus.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis

from runtime.redis import connect, ensure_groups
from services.booking.service import BookingService
from services.booking.store import BookingStore
from services.chat.toolbus import ToolBus
from shared import streams
from shared.keys import TenantKeys
from shared.messages import DomainError, Envelope, Reply, utcnow
from shared.tools import BookMeeting
from testkit.booking_data import TENANT, book_payload, command, offer, put_rooms, settle, slot_at, stream_partitions
from testkit.redis_cluster import is_cluster_url
from testkit.worker_processes import WorkerProcess

pytestmark = pytest.mark.faults

KEYS = TenantKeys(TENANT)
WORKER_ENV: dict[str, str | int] = {"BLOCK_MS": 100, "BATCH_SIZE": 20, "CONSUMER_DEAD_MS": 1_500}

Spawn = Callable[..., Awaitable[list[WorkerProcess]]]


@pytest.fixture
async def spawn(redis_url: str, redis: Redis) -> AsyncIterator[Spawn]:
    await ensure_groups(redis, stream_partitions())
    started: list[WorkerProcess] = []

    async def start(count: int = 1, **env: str | int) -> list[WorkerProcess]:
        procs = [
            WorkerProcess("services.booking", redis_url, f"dl-{uuid.uuid4().hex[:8]}", **{**WORKER_ENV, **env})
            for _ in range(count)
        ]
        for proc in procs:
            proc.start()
            started.append(proc)
        for proc in procs:
            await proc.ready()
        return procs

    yield start
    WorkerProcess.stop_all(started)


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[ToolBus]:
    client = connect(redis_url, cluster=is_cluster_url(redis_url))
    toolbus = ToolBus(client, f"chat-{uuid.uuid4().hex[:6]}", block_ms=100, partitions=stream_partitions())
    await toolbus.start()
    yield toolbus
    await toolbus.stop()
    await client.aclose()


async def bookings_for(redis: Redis, room: str, commands: list[Envelope], slots: dict[str, datetime]) -> set[str]:
    """The message ids whose slot holds a booking."""
    booked = set()
    for envelope in commands:
        start = int(slots[envelope.message_id].timestamp())
        if await redis.zcount(KEYS.calendar_bookings(room), start, start):
            booked.add(envelope.message_id)
    return booked


async def kill_while_holding(redis: Redis, victim: WorkerProcess, timeout_s: float = 10.0) -> int:
    """SIGKILL the worker as soon as it holds unacked entries (mid-batch); what it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held: dict[str, int] = {}
        for name in streams.partitions(streams.BOOKING_COMMANDS, stream_partitions()):
            summary = await redis.xpending(name, streams.BOOKING_GROUP)
            for c in summary["consumers"]:
                held[c["name"].decode()] = held.get(c["name"].decode(), 0) + int(c["pending"])
        if held.get(victim.instance_id, 0):
            victim.kill()
            return held[victim.instance_id]
        await asyncio.sleep(0.002)
    raise AssertionError("the worker never held an entry")


async def make_commands(redis: Redis, count: int, reply_to: str) -> tuple[str, list[Envelope], dict[str, datetime]]:
    (room,) = await put_rooms(redis, 1)
    commands, slots = [], {}
    for i in range(count):
        _, start = slot_at(i, [room])
        conversation = f"conv-{i}"
        await offer(redis, conversation, [(room, start)])
        envelope = command(
            "book_meeting", book_payload(room, start), user=f"u{i}", conversation=conversation, reply_to=reply_to
        )
        commands.append(envelope)
        slots[envelope.message_id] = start
    return room, commands, slots


async def test_a_user_told_failed_finds_nothing_booked_even_when_the_worker_died_mid_command(
    redis: Redis, bus: ToolBus, spawn: Spawn
) -> None:
    room, commands, slots = await make_commands(redis, 300, bus.reply_to)
    (victim,) = await spawn(1)
    requests = [asyncio.create_task(bus.request(e, 1.5)) for e in commands]
    held = await kill_while_holding(redis, victim)
    # nobody answers now; a worker comes back only after every caller gave up
    await asyncio.sleep(2.0)
    await spawn(1)
    replies: list[Reply] = await asyncio.gather(*requests)
    assert await settle(redis, timeout_s=20) == 0
    await asyncio.sleep(0.5)

    told = Counter("ok" if r.error is None else r.error.code.value for r in replies)
    assert told["timeout"] > 0, (held, told)  # the kill left callers without an answer
    booked = await bookings_for(redis, room, commands, slots)
    for envelope, reply in zip(commands, replies, strict=True):
        if reply.error is None:
            assert envelope.message_id in booked
        else:
            assert reply.error.code.value in ("timeout", "expired"), reply.error
            assert envelope.message_id not in booked, f"told {reply.error.code}, but booked"


async def test_a_write_that_ran_before_its_deadline_but_whose_reply_was_lost_is_reported_done(
    redis: Redis, bus: ToolBus
) -> None:
    """No worker answers; the write itself ran in time (a worker that died after writing):
    once the deadline passed the bus reads the final outcome and tells the truth."""
    _, (envelope,), _ = await make_commands(redis, 1, bus.reply_to)
    dated = envelope.model_copy(update={"deadline": utcnow() + timedelta(seconds=1)})
    change = await BookingService(BookingStore(redis, 3600)).book(dated, BookMeeting.model_validate(dated.payload))
    assert change.applied

    reply = await bus.request(dated, 1.0)

    assert reply.error is None, reply.error
    assert reply.result is not None
    assert reply.result["booking"]["booking_id"] == change.outcome.booking.booking_id


async def test_a_command_handled_after_its_deadline_is_expired_and_changes_nothing(redis: Redis) -> None:
    """The write script itself refuses it, by the server's clock, even when the worker's own
    check was passed (a slow reclaim, a skewed clock)."""
    room, (envelope,), slots = await make_commands(redis, 1, "replies:late")
    late = envelope.model_copy(update={"deadline": utcnow() - timedelta(milliseconds=1)})

    with pytest.raises(DomainError, match="deadline") as caught:
        await BookingService(BookingStore(redis, 3600)).book(late, BookMeeting.model_validate(late.payload))

    assert caught.value.error.code.value == "expired"
    assert not await bookings_for(redis, room, [envelope], slots)
    assert not await redis.exists(KEYS.idempotency(envelope.idempotency_key))


async def test_a_dead_workers_commands_are_retried_by_a_live_one_within_the_callers_deadline(
    redis: Redis, bus: ToolBus, spawn: Spawn
) -> None:
    """A crash costs a retry, not a failed turn: the entries the dead worker held are claimed
    long before the visibility timeout (30 s), inside the caller's 10 s."""
    room, commands, slots = await make_commands(redis, 300, bus.reply_to)
    victim, survivor = await spawn(2, VISIBILITY_TIMEOUT_MS=30_000)
    began = time.monotonic()
    requests = [asyncio.create_task(bus.request(e, 10.0)) for e in commands]
    held = await kill_while_holding(redis, victim)
    replies: list[Reply] = await asyncio.gather(*requests)

    assert held > 0
    assert [r.error for r in replies if r.error is not None] == []
    assert time.monotonic() - began < 10
    assert await bookings_for(redis, room, commands, slots) == {e.message_id for e in commands}
    assert survivor.alive
