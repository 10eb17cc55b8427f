"""The booking worker over the real stream and consumer group: duplicates and races."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from services.chat.toolbus import ToolBus
from shared.domain import BookingOutcome
from shared.messages import Envelope, Reply
from shared.settings import Settings
from tests.support.calendar_days import at, next_weekday


@pytest.fixture
async def bus(settings: Settings, workers: None, redis: Redis) -> AsyncIterator[ToolBus]:
    broker = RedisBroker(settings.redis_url)
    await broker.connect()
    tool_bus = ToolBus(redis, broker, f"test-bus-{uuid.uuid4().hex[:6]}", block_ms=100)
    await tool_bus.start()
    yield tool_bus
    await tool_bus.stop()
    await broker.stop()


def book(bus: ToolBus, user: str, start: str, key: str | None = None) -> Envelope:
    return Envelope(
        idempotency_key=key or uuid.uuid4().hex,
        correlation_id=f"call_{uuid.uuid4().hex[:8]}",
        tenant_id="demo",
        conversation_id=f"conv-{user}",
        user_id=user,
        type="book_meeting",
        payload={
            "calendar_id": "dr-lee",
            "start": start,
            "duration_minutes": None,
            "attendee_name": user.title(),
            "participants": [],
        },
        reply_to=bus.reply_to,
    )


async def fetch(bus: ToolBus, user: str, day: date) -> Reply:
    """Ask for availability in the user's conversation: the slots returned become offers there."""
    envelope = Envelope(
        idempotency_key=uuid.uuid4().hex,
        correlation_id=f"call_{uuid.uuid4().hex[:8]}",
        tenant_id="demo",
        conversation_id=f"conv-{user}",
        user_id=user,
        type="fetch_free_slots",
        payload={
            "calendar_ids": ["dr-lee"],
            "date_from": day.isoformat(),
            "date_to": day.isoformat(),
            "duration_minutes": None,
            "timezone": None,
        },
        reply_to=bus.reply_to,
    )
    return await bus.request(envelope, 5)


async def booking_count(redis: Redis) -> int:
    return int(await redis.zcard("t:{demo}:cal:dr-lee:busy"))


async def test_same_message_delivered_twice_books_once_and_answers_the_same(bus: ToolBus, redis: Redis) -> None:
    await fetch(bus, "alice", next_weekday())
    envelope = book(bus, "alice", at(next_weekday(), 10).isoformat())
    first = await bus.request(envelope, 5)
    again = await bus.request(envelope.model_copy(update={"message_id": uuid.uuid4().hex}), 5)
    assert first.error is None and again.error is None
    assert BookingOutcome.model_validate(first.result) == BookingOutcome.model_validate(again.result)
    assert await booking_count(redis) == 1


async def test_same_key_with_another_payload_is_an_idempotency_conflict(bus: ToolBus, redis: Redis) -> None:
    day = next_weekday()
    await fetch(bus, "alice", day)
    first = await bus.request(book(bus, "alice", at(day, 10).isoformat(), key="k1"), 5)
    other = await bus.request(book(bus, "alice", at(day, 11).isoformat(), key="k1"), 5)
    assert first.error is None
    assert other.error is not None and other.error.code == "idempotency_conflict"
    assert await booking_count(redis) == 1


async def test_fifty_users_racing_for_one_slot_yield_exactly_one_booking(bus: ToolBus, redis: Redis) -> None:
    fetched = await asyncio.gather(*(fetch(bus, f"user{i}", next_weekday()) for i in range(50)))
    start = fetched[0].result["slots"][0]["start"] if fetched[0].result else ""
    replies: list[Reply] = await asyncio.gather(*(bus.request(book(bus, f"user{i}", start), 10) for i in range(50)))
    winners = [r for r in replies if r.error is None]
    assert len(winners) == 1
    assert {r.error.code for r in replies if r.error is not None} == {"slot_taken"}
    assert await booking_count(redis) == 1


async def test_same_person_rebooking_their_slot_gets_their_booking_back(bus: ToolBus, redis: Redis) -> None:
    start = at(next_weekday(), 9).isoformat()
    await fetch(bus, "alice", next_weekday())
    first = await bus.request(book(bus, "alice", start), 5)
    second = await bus.request(book(bus, "alice", start), 5)
    assert first.error is None and second.error is None
    assert first.result == second.result
    assert await booking_count(redis) == 1


async def test_time_outside_working_hours_is_refused_with_a_typed_error(bus: ToolBus, redis: Redis) -> None:
    reply = await bus.request(book(bus, "alice", at(next_weekday(), 12, 15).isoformat()), 5)
    assert reply.error is not None and reply.error.code == "outside_hours"
    assert await booking_count(redis) == 0


async def test_a_slot_never_offered_in_the_conversation_is_refused(bus: ToolBus, redis: Redis) -> None:
    day = next_weekday()
    await fetch(bus, "bob", day)  # offers go to bob's conversation, not alice's
    reply = await bus.request(book(bus, "alice", at(day, 10).isoformat()), 5)
    assert reply.error is not None and reply.error.code == "slot_not_offered"
    assert await booking_count(redis) == 0
