"""The booking worker over the real stream and consumer group: duplicates and races."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime

import pytest
from redis.asyncio import Redis

from services.chat.toolbus import ToolBus
from shared.domain import BookingOutcome
from shared.keys import TenantKeys
from shared.messages import Envelope, Reply
from shared.settings import Settings
from testkit.calendar_days import at, next_weekday


@pytest.fixture
async def bus(settings: Settings, workers: None, redis: Redis) -> AsyncIterator[ToolBus]:
    tool_bus = ToolBus(redis, f"test-bus-{uuid.uuid4().hex[:6]}", block_ms=100, partitions=settings.stream_partitions)
    await tool_bus.start()
    yield tool_bus
    await tool_bus.stop()


def book(bus: ToolBus, user: str, start: str | None, key: str | None = None, ref: str | None = None) -> Envelope:
    return Envelope(
        idempotency_key=key or uuid.uuid4().hex,
        correlation_id=f"call_{uuid.uuid4().hex[:8]}",
        tenant_id="demo",
        conversation_id=f"conv-{user}",
        user_id=user,
        type="book_meeting",
        payload={
            "calendar_id": "dr-lee",
            "slot_ref": ref,
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


# --- booking by the slot's short reference (issue 11) ---


def first_offer(reply: Reply) -> tuple[str, str]:
    """(ref, start) of the first slot of a fetch_free_slots reply."""
    assert reply.result is not None
    slot = reply.result["slots"][0]
    return slot["ref"], slot["start"]


async def test_a_slot_is_booked_by_its_ref_alone(bus: ToolBus, redis: Redis) -> None:
    ref, start = first_offer(await fetch(bus, "alice", next_weekday()))
    reply = await bus.request(book(bus, "alice", None, ref=ref), 5)
    assert reply.error is None, reply.error
    booked = BookingOutcome.model_validate(reply.result).booking
    assert booked.start == datetime.fromisoformat(start)
    assert await booking_count(redis) == 1


async def test_a_ref_offered_in_another_conversation_is_not_offered_here(bus: ToolBus, redis: Redis) -> None:
    ref, _ = first_offer(await fetch(bus, "bob", next_weekday()))
    reply = await bus.request(book(bus, "alice", None, ref=ref), 5)
    assert reply.error is not None and reply.error.code == "slot_not_offered"
    unknown = await bus.request(book(bus, "bob", None, ref="s999"), 5)
    assert unknown.error is not None and unknown.error.code == "slot_not_offered"
    assert await booking_count(redis) == 0


async def test_a_ref_and_a_start_that_disagree_book_nothing(bus: ToolBus, redis: Redis) -> None:
    ref, _ = first_offer(await fetch(bus, "alice", next_weekday()))
    reply = await bus.request(book(bus, "alice", at(next_weekday(), 11).isoformat(), ref=ref), 5)
    assert reply.error is not None and reply.error.code == "invalid_arguments"
    assert await booking_count(redis) == 0


async def test_an_expired_ref_is_refused_as_an_expired_offer(bus: ToolBus, redis: Redis) -> None:
    ref, start = first_offer(await fetch(bus, "alice", next_weekday()))
    expiry_field = f"dr-lee|{int(datetime.fromisoformat(start).timestamp())}"
    await redis.hset(TenantKeys("demo").offers("conv-alice"), expiry_field, int(time.time()) - 1)
    reply = await bus.request(book(bus, "alice", None, ref=ref), 5)
    assert reply.error is not None and reply.error.code == "offer_expired"
    assert await booking_count(redis) == 0


async def test_a_retry_of_a_booking_by_ref_answers_from_its_stored_result(bus: ToolBus, redis: Redis) -> None:
    ref, _ = first_offer(await fetch(bus, "alice", next_weekday()))
    envelope = book(bus, "alice", None, ref=ref)
    first = await bus.request(envelope, 5)
    await redis.delete(TenantKeys("demo").offers("conv-alice"))  # the offers are gone by the time it retries
    again = await bus.request(envelope.model_copy(update={"message_id": uuid.uuid4().hex}), 5)
    assert first.error is None and again.error is None and first.result == again.result
    assert await booking_count(redis) == 1
