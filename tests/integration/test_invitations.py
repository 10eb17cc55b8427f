"""Every applied booking gets its .ics invitation exactly once in effect, off the reply's path,
with workers killed between the booking and the invitation: real `python -m services.booking`
processes (commands) and `python -m services.booking.invitations` processes (the invitations
group on booking.events), SIGKILLed while they hold entries, and a write whose worker died
before publishing its event."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest
from redis.asyncio import Redis

from runtime.redis import ensure_groups
from services.booking.events import event_id
from services.booking.service import BookingService
from services.booking.store import BookingStore
from shared import streams
from shared.domain import BookingOutcome
from shared.keys import TenantKeys
from shared.messages import Envelope
from shared.tools import BookMeeting
from testkit.booking_data import (
    TENANT,
    Replies,
    add_and_take,
    book_payload,
    command,
    offer,
    publish,
    put_rooms,
    slot_at,
)
from testkit.worker_processes import WorkerProcess

pytestmark = pytest.mark.faults

KEYS = TenantKeys(TENANT)
ENV: dict[str, str | int] = {
    "BLOCK_MS": 100,
    "BATCH_SIZE": 20,
    "CONSUMER_DEAD_MS": 1_000,
    "MAX_DELIVERY_ATTEMPTS": 20,
    "BOOKING_INVITATIONS": "false",
}
Spawn = Callable[[str, int], Awaitable[list[WorkerProcess]]]


@pytest.fixture
async def spawn(redis_url: str, redis: Redis) -> AsyncIterator[Spawn]:
    await ensure_groups(redis)
    started: list[WorkerProcess] = []

    async def start(module: str, count: int) -> list[WorkerProcess]:
        procs = [WorkerProcess(module, redis_url, f"inv-{uuid.uuid4().hex[:8]}", **ENV).start() for _ in range(count)]
        started.extend(procs)
        for proc in procs:
            await proc.ready()
        return procs

    yield start
    WorkerProcess.stop_all(started)


async def holding(redis: Redis, stream: str, group: str, instance: str) -> int:
    summary = await redis.xpending(stream, group)
    return sum(int(c["pending"]) for c in summary["consumers"] if c["name"].decode() == instance)


async def kill_mid_batch(redis: Redis, victim: WorkerProcess, stream: str, group: str) -> int:
    for _ in range(2_000):
        held = await holding(redis, stream, group, victim.instance_id)
        if held:
            victim.kill()
            return held
        await asyncio.sleep(0.002)
    victim.kill()
    return 0


async def test_every_applied_booking_gets_its_invitation_once_with_workers_killed_between_booking_and_invitation(
    redis: Redis, spawn: Spawn
) -> None:
    rooms = await put_rooms(redis, 5)
    reply_to = f"replies:inv-{uuid.uuid4().hex[:6]}"
    commands = []
    for i in range(600):
        calendar_id, start = slot_at(i, rooms)
        await offer(redis, f"conv-{i}", [(calendar_id, start)])
        payload = book_payload(calendar_id, start, f"User {i}", [f"user{i}@example.com"])
        commands.append(command("book_meeting", payload, user=f"u{i}", conversation=f"conv-{i}", reply_to=reply_to))
    # a worker that wrote a booking and died before publishing its event: the write is stored,
    # its command entry pending with a consumer that will never come back
    orphan = commands.pop()
    change = await BookingService(BookingStore(redis, 3600)).book(orphan, BookMeeting.model_validate(orphan.payload))
    assert await add_and_take(redis, orphan, "died-after-writing")

    bookers = await spawn("services.booking", 2)
    renderers = await spawn("services.booking.invitations", 2)
    publisher = asyncio.create_task(publish_slowly(redis, commands))
    await asyncio.sleep(0.3)
    killed_booker = await kill_mid_batch(redis, bookers[0], streams.BOOKING_COMMANDS, streams.BOOKING_GROUP)
    killed_renderer = await kill_mid_batch(redis, renderers[0], streams.BOOKING_EVENTS, streams.INVITATIONS_GROUP)
    await spawn("services.booking.invitations", 1)
    await publisher

    replies = Replies(redis, reply_to)
    assert not await replies.wait_for([e.message_id for e in [*commands, orphan]], 30)
    for _ in range(200):  # the invitations group catches up
        info = {g["name"].decode(): g for g in await redis.xinfo_groups(streams.BOOKING_EVENTS)}
        if not info[streams.INVITATIONS_GROUP]["pending"] and not info[streams.INVITATIONS_GROUP]["lag"]:
            break
        await asyncio.sleep(0.1)

    assert killed_booker and killed_renderer, (killed_booker, killed_renderer)
    booked = {
        e.idempotency_key: BookingOutcome.model_validate(replies.first(e.message_id).result).booking.booking_id
        for e in [*commands, orphan]
        if replies.first(e.message_id).error is None
    }
    assert len(booked) == 600  # distinct slots: everyone booked
    assert booked[orphan.idempotency_key] == change.outcome.booking.booking_id
    outbox = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(KEYS.invitations()))
    sent = Counter(fields[b"event_id"].decode() for _, fields in outbox)
    expected = {event_id(TENANT, key, "created") for key in booked}
    assert set(sent) == expected
    assert max(sent.values()) == 1, [e for e, n in sent.items() if n > 1][:5]
    for key, booking_id in random.Random(1).sample(sorted(booked.items()), 50):
        stored = await redis.hgetall(KEYS.invitation(booking_id))
        assert stored[b"event_id"].decode() == event_id(TENANT, key, "created")
        assert b"METHOD:REQUEST" in stored[b"text"] and booking_id.encode() in stored[b"text"]


async def publish_slowly(redis: Redis, commands: list[Envelope]) -> None:
    for i in range(0, len(commands), 30):
        await publish(redis, commands[i : i + 30])
        await asyncio.sleep(0.05)
