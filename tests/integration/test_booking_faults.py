"""At-least-once, nothing lost, under failure: real `python -m services.booking` processes,
killed with SIGKILL and restarted, stopped with SIGTERM, fed duplicates, races and poison.

These run in the normal suite (marker `faults` only selects them: `pytest -m faults`).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from runtime.redis import ensure_groups
from services.booking.events import event_id
from services.booking.service import BookingService
from services.booking.store import BookingStore
from shared import streams
from shared.domain import BookingOutcome
from shared.keys import TenantKeys
from shared.messages import Envelope, Reply
from shared.tools import BookMeeting
from testkit.booking_data import (
    TENANT,
    Replies,
    book_payload,
    command,
    offer,
    publish,
    put_rooms,
    reschedule_payload,
    settle,
    slot_at,
    stream_entries,
)
from testkit.worker_processes import WorkerProcess

pytestmark = pytest.mark.faults

KEYS = TenantKeys(TENANT)
WORKER_ENV: dict[str, str | int] = {
    "BLOCK_MS": 100,
    "VISIBILITY_TIMEOUT_MS": 1_500,
    "MAX_DELIVERY_ATTEMPTS": 20,  # kills add deliveries; valid commands must never be dead-lettered here
    "BATCH_SIZE": 50,
}

Spawn = Callable[..., Awaitable[list[WorkerProcess]]]


@pytest.fixture
async def spawn(redis_url: str, redis: Redis) -> AsyncIterator[Spawn]:
    """Start booking worker processes on the test database; all are stopped afterwards."""
    await ensure_groups(redis)
    started: list[WorkerProcess] = []

    async def start(count: int = 1, wait: bool = True, **env: str | int) -> list[WorkerProcess]:
        procs = [
            WorkerProcess("services.booking", redis_url, f"fault-{uuid.uuid4().hex[:8]}", **{**WORKER_ENV, **env})
            for _ in range(count)
        ]
        for proc in procs:
            proc.start()
            started.append(proc)
        if wait:
            for proc in procs:
                await proc.ready()
        return procs

    yield start
    WorkerProcess.stop_all(started)


def book(user: str, calendar_id: str, start: datetime, reply_to: str) -> Envelope:
    return command(
        "book_meeting",
        book_payload(calendar_id, start, user),
        user=user,
        conversation=f"conv-{user}",
        reply_to=reply_to,
    )


async def pending_by_consumer(redis: Redis) -> dict[str, int]:
    summary = await redis.xpending(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP)
    return {c["name"].decode(): int(c["pending"]) for c in summary["consumers"]}


def result_of(reply: Reply) -> str:
    """A reply reduced to what must agree across its duplicates: the booking id, or the error code."""
    if reply.error is not None:
        return f"error:{reply.error.code}"
    return BookingOutcome.model_validate(reply.result).booking.booking_id


async def all_busy(redis: Redis, calendars: list[str]) -> dict[str, list[tuple[int, int, str]]]:
    """Each calendar's bookings as (start, end, booking id), by start."""
    out = {}
    for calendar_id in calendars:
        rows = cast(
            list[tuple[bytes, float]], await redis.zrange(KEYS.calendar_bookings(calendar_id), 0, -1, withscores=True)
        )
        out[calendar_id] = [
            (int(score), int(member.split(b"|")[0]), member.split(b"|")[1].decode()) for member, score in rows
        ]
    return out


def assert_no_overlaps(busy: dict[str, list[tuple[int, int, str]]]) -> None:
    for calendar_id, rows in busy.items():
        for (_, end, a), (start, _, b) in itertools.pairwise(rows):
            assert end <= start, f"{calendar_id}: {a} overlaps {b}"


async def test_two_thousand_commands_delivered_up_to_three_times_through_killed_workers_take_effect_once(
    redis: Redis, spawn: Spawn
) -> None:
    rng = random.Random(20261126)
    rooms = await put_rooms(redis, 10)
    reply_to = "replies:chaos"
    commands: list[Envelope] = []
    contested: dict[tuple[str, datetime], list[Envelope]] = {}
    for i in range(1_800):
        calendar_id, start = slot_at(i, rooms)
        commands.append(book(f"u{i}", calendar_id, start, reply_to))
        contested[(calendar_id, start)] = [commands[-1]]
    for j in range(200):  # rivals: another user, another key, a slot someone else also wants
        calendar_id, start = slot_at(rng.randrange(1_800), rooms)
        commands.append(book(f"r{j}", calendar_id, start, reply_to))
        contested[(calendar_id, start)].append(commands[-1])
    for envelope in commands:
        payload = envelope.payload
        await offer(
            redis, envelope.conversation_id, [(payload["calendar_id"], datetime.fromisoformat(payload["start"]))]
        )
    deliveries = [e for e in commands for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)

    live = await spawn(3)
    held_at_kill: list[int] = []

    async def pick_victim() -> WorkerProcess | None:
        """A started worker that holds unacked entries right now (mid-batch), if one shows up soon."""
        for _ in range(100):
            ready = [p for p in live if p.started]
            if len(ready) < 2:
                return None  # keep one worker up
            held = await pending_by_consumer(redis)
            busy = [p for p in ready if held.get(p.instance_id, 0) > 0]
            if busy:
                victim = rng.choice(busy)
                held_at_kill.append(held[victim.instance_id])
                return victim
            await asyncio.sleep(0.01)
        held_at_kill.append(0)
        return rng.choice([p for p in live if p.started])

    async def chaos(until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.5, 1.0))
            victim = await pick_victim()
            if victim is not None:
                victim.kill()
                live.remove(victim)
            live.extend(await spawn(1, wait=False))

    publishing_s = 8.0
    chaos_task = asyncio.create_task(chaos(time.monotonic() + publishing_s + 3))
    chunk = 50
    pause = publishing_s / (len(deliveries) / chunk)
    for i in range(0, len(deliveries), chunk):
        await publish(redis, deliveries[i : i + chunk])
        await asyncio.sleep(pause)
    await chaos_task
    for proc in live:
        await proc.ready()

    replies = Replies(redis, reply_to)
    missing = await replies.wait_for([e.message_id for e in commands], 40)
    assert not missing, f"{len(missing)} commands never answered"
    assert await settle(redis, timeout_s=20) == 0
    assert sum(n > 0 for n in held_at_kill) >= 2, f"kills did not catch workers mid-batch: {held_at_kill}"
    assert await stream_entries(redis, streams.DEAD_LETTERS) == []

    # every reply of one command says the same
    outcome = {}
    for envelope in commands:
        said = {result_of(r) for r in replies.by_message[envelope.message_id]}
        assert len(said) == 1, f"{envelope.idempotency_key} answered {said}"
        outcome[envelope.message_id] = said.pop()
    # one winner per slot, everyone else told it is taken
    for rivals in contested.values():
        results = sorted(outcome[e.message_id] for e in rivals)
        assert sum(not r.startswith("error:") for r in results) == 1, results
        assert all(r == "error:slot_taken" for r in results if r.startswith("error:")), results
    # the store holds exactly the winners' bookings, each once, never overlapping
    won = {outcome[e.message_id]: e for e in commands if not outcome[e.message_id].startswith("error:")}
    busy = await all_busy(redis, rooms)
    stored = [booking_id for rows in busy.values() for _, _, booking_id in rows]
    assert sorted(stored) == sorted(won)
    assert_no_overlaps(busy)
    for booking_id, envelope in won.items():
        first_result = cast(bytes | None, await redis.hget(KEYS.idempotency(envelope.idempotency_key), "result"))
        assert first_result is not None and booking_id.encode() in first_result
    # at least one event per effect, every copy of one event identical, none for a refusal
    copies: dict[str, list[dict[str, Any]]] = {}
    for event in await stream_entries(redis, streams.BOOKING_EVENTS):
        copies.setdefault(event["event_id"], []).append(event)
    assert set(copies) == {event_id(TENANT, e.idempotency_key, "created") for e in won.values()}
    assert all(all(c == cs[0] for c in cs) for cs in copies.values())


async def test_two_hundred_requests_for_one_slot_across_three_workers_book_it_once(redis: Redis, spawn: Spawn) -> None:
    (room,) = await put_rooms(redis, 1)
    _, start = slot_at(100, [room])
    requests = [book(f"u{i}", room, start, "replies:race") for i in range(200)]
    for envelope in requests:
        await offer(redis, envelope.conversation_id, [(room, start)])
    await spawn(3)

    await publish(redis, requests)
    replies = Replies(redis, "replies:race")
    assert not await replies.wait_for([e.message_id for e in requests], 30)

    results = Counter(result_of(replies.first(e.message_id)).startswith("error:") for e in requests)
    assert results == {True: 199, False: 1}
    assert {result_of(replies.first(e.message_id)) for e in requests} - {
        result_of(replies.first(e.message_id)) for e in requests if replies.first(e.message_id).error is None
    } == {"error:slot_taken"}
    assert await redis.zcard(KEYS.calendar_bookings(room)) == 1


async def test_a_move_racing_a_new_booking_for_the_same_slot_never_both_succeed(redis: Redis, spawn: Spawn) -> None:
    (room,) = await put_rooms(redis, 1)
    service = BookingService(BookingStore(redis, 3600))
    rounds = []
    for i in range(40):  # alice holds slot 2i and wants slot 2i+1, which bob wants too
        _, held = slot_at(2 * i, [room])
        _, target = slot_at(2 * i + 1, [room])
        alice, bob = f"alice{i}", f"bob{i}"
        await offer(redis, f"conv-{alice}", [(room, held), (room, target)])
        await offer(redis, f"conv-{bob}", [(room, target)])
        setup = book(alice, room, held, "replies:setup")
        assert (await service.book(setup, BookMeeting.model_validate(setup.payload))).applied
        move = command(
            "reschedule_booking",
            reschedule_payload(room, held, target),
            user=alice,
            conversation=f"conv-{alice}",
            reply_to="replies:move-race",
        )
        rounds.append((held, target, move, book(bob, room, target, "replies:move-race")))
    await spawn(3)

    racing = [e for _, _, move, rival in rounds for e in random.sample([move, rival], 2)]
    await publish(redis, racing)
    replies = Replies(redis, "replies:move-race")
    assert not await replies.wait_for([e.message_id for e in racing], 30)

    busy = {start: booking for start, _, booking in (await all_busy(redis, [room]))[room]}
    for held, target, move, rival in rounds:
        moved, booked = (replies.first(e.message_id).error is None for e in (move, rival))
        assert moved != booked, f"move ok={moved}, rival booking ok={booked}"
        held_s, target_s = int(held.timestamp()), int(target.timestamp())
        if moved:
            assert held_s not in busy and target_s in busy
        else:
            assert held_s in busy and target_s in busy
            assert result_of(replies.first(move.message_id)) == "error:slot_taken"
    assert_no_overlaps(await all_busy(redis, [room]))


async def test_poison_goes_to_dead_letters_with_a_reason_and_never_blocks_the_group(redis: Redis, spawn: Spawn) -> None:
    (room,) = await put_rooms(redis, 1)
    await spawn(2, MAX_DELIVERY_ATTEMPTS=3, VISIBILITY_TIMEOUT_MS=800)
    # three entries that are no envelope, and one whose handler fails every time: its
    # idempotency key holds a string, so reading it fails with WRONGTYPE
    await redis.xadd(streams.BOOKING_COMMANDS, {streams.DATA_FIELD: "not json"})
    await redis.xadd(streams.BOOKING_COMMANDS, {"foo": "bar"})
    await redis.xadd(streams.BOOKING_COMMANDS, {b"\xff": b"\xfe"})
    _, start = slot_at(0, [room])
    failing = book("mallory", room, start, "replies:poison")
    await redis.set(KEYS.idempotency(failing.idempotency_key), "corrupt")
    # and one that is handled but whose reply cannot be stored: its reply stream is a string
    await redis.set("replies:broken", "not a stream")
    unanswerable = command(
        "list_my_bookings", {"include_past": False}, user="eve", conversation="conv-eve", reply_to="replies:broken"
    )
    await publish(redis, [failing, unanswerable])
    good = [book(f"u{i}", room, slot_at(i + 1, [room])[1], "replies:poison") for i in range(50)]
    for envelope in good:
        await offer(redis, envelope.conversation_id, [(room, datetime.fromisoformat(envelope.payload["start"]))])

    began = time.monotonic()
    await publish(redis, good)
    replies = Replies(redis, "replies:poison")
    assert not await replies.wait_for([e.message_id for e in good], 10)
    assert time.monotonic() - began < 5, "later messages waited behind the poison"
    assert all(replies.first(e.message_id).error is None for e in good)

    assert not await replies.wait_for([failing.message_id], 20)
    error = replies.first(failing.message_id).error
    assert error is not None and error.code == "internal"
    dead = await stream_entries(redis, streams.DEAD_LETTERS)
    for _ in range(50):  # the unanswerable one has no reply to wait for
        if len(dead) == 5:
            break
        await asyncio.sleep(0.2)
        dead = await stream_entries(redis, streams.DEAD_LETTERS)
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 5, reasons
    assert sum(r.startswith("not an envelope") for r in reasons) == 3
    by_message = {d.get("message_id"): d["reason"] for d in dead}
    assert by_message[failing.message_id].startswith("gave up after 3 failed deliveries")
    assert by_message[unanswerable.message_id].startswith("gave up after 3 failed deliveries")
    assert await settle(redis, timeout_s=5) == 0


async def test_sigterm_mid_load_finishes_the_batch_in_hand_and_loses_nothing(redis: Redis, spawn: Spawn) -> None:
    rooms = await put_rooms(redis, 4)
    commands = [book(f"u{i}", *slot_at(i, rooms), "replies:sigterm") for i in range(800)]
    for envelope in commands:
        payload = envelope.payload
        await offer(
            redis, envelope.conversation_id, [(payload["calendar_id"], datetime.fromisoformat(payload["start"]))]
        )
    stopping, staying = await spawn(2)

    async def load() -> None:
        for i in range(0, len(commands), 40):
            await publish(redis, commands[i : i + 40])
            await asyncio.sleep(0.1)

    publisher = asyncio.create_task(load())
    await asyncio.sleep(0.8)
    began = time.monotonic()
    code = await asyncio.to_thread(stopping.terminate, 15)
    assert code == 0, stopping.tail()
    assert time.monotonic() - began < 10
    await publisher

    replies = Replies(redis, "replies:sigterm")
    assert not await replies.wait_for([e.message_id for e in commands], 30)
    assert all(replies.first(e.message_id).error is None for e in commands)
    assert await settle(redis) == 0
    busy = await all_busy(redis, rooms)
    assert sum(len(rows) for rows in busy.values()) == len(commands)
    assert staying.alive
