"""Offers, slot references and holds as a unit (runtime/offers.py and its Lua), against the real
Redis and nothing else: no workers, no chat. End-to-end tests cover the same rules through the
services; these pin the owner's own contract."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from runtime.offers import SlotHolds, start_of_ref
from services.booking.store import BookingStore
from shared.domain import CalendarSummary
from shared.messages import DomainError, ErrorCode

HOUR = 3600


def _calendar(calendar_id: str, hold_seconds: int) -> CalendarSummary:
    return CalendarSummary(
        calendar_id=calendar_id,
        name=calendar_id,
        timezone="UTC",
        weekly_hours={},
        slot_minutes=30,
        require_confirmation=True,
        hold_seconds=hold_seconds,
    )


def _future() -> int:
    return (int(time.time()) // HOUR + 48) * HOUR


async def test_offers_get_references_in_order_and_the_same_slot_keeps_its_reference(redis: Redis) -> None:
    holds, start, expires = SlotHolds(redis), _future(), int(time.time()) + 600
    refs = await holds.record_offers("t1", "c1", ["lee"], [start, start + 1800], 1800, expires)
    again = await holds.record_offers("t1", "c1", ["lee"], [start + 1800, start + 3600], 1800, expires)
    assert refs == ["s1", "s2"] and again == ["s2", "s3"]
    live = await holds.offers("t1", "c1")
    assert sorted((o.ref, o.start, o.calendar_ids) for o in live) == [
        ("s1", start, ("lee",)),
        ("s2", start + 1800, ("lee",)),
        ("s3", start + 3600, ("lee",)),
    ]
    assert await holds.offers("t1", "other") == [], "offers belong to their conversation"


async def test_expired_offers_are_not_live(redis: Redis) -> None:
    holds = SlotHolds(redis)
    await holds.record_offers("t1", "c1", ["lee"], [_future()], 1800, int(time.time()) - 1)
    assert await holds.offers("t1", "c1") == []


async def offered_start(
    redis: Redis, conversation_id: str, calendar_id: str, ref: str, start: datetime | None
) -> datetime:
    """The start `ref` names, resolved as the booking worker does: the offer prefetch.lua
    reads (lua/offers.lua's offered_ref), through `start_of_ref`."""
    pre = await BookingStore(redis, 3600).prefetch("t1", "key", calendar_id, conversation_id, ref=ref, start=None)
    return start_of_ref(pre.offer, calendar_id, ref, start)


async def test_a_reference_resolves_only_for_its_calendar_and_its_own_start(redis: Redis) -> None:
    holds, start = SlotHolds(redis), _future()
    [ref] = await holds.record_offers("t1", "c1", ["lee"], [start], 1800, int(time.time()) + 600)
    at = datetime.fromtimestamp(start, UTC)
    assert await offered_start(redis, "c1", "lee", ref, None) == at
    assert await offered_start(redis, "c1", "lee", ref, at) == at
    for calendar, conversation, given, code in (
        ("patel", "c1", None, ErrorCode.slot_not_offered),
        ("lee", "c2", None, ErrorCode.slot_not_offered),
        ("lee", "c1", datetime.fromtimestamp(start + 1800, UTC), ErrorCode.invalid_arguments),
    ):
        with pytest.raises(DomainError) as refused:
            await offered_start(redis, conversation, calendar, ref, given)
        assert refused.value.error.code is code


async def test_a_hold_keeps_a_slot_from_other_conversations_but_not_from_its_own(redis: Redis) -> None:
    holds, start, lee = SlotHolds(redis), _future(), _calendar("lee", 300)
    assert await holds.hold("t1", "alice", [lee], start, 1800)
    assert not await holds.hold("t1", "bob", [lee], start + 900, 1800), "an overlapping hold is refused"
    assert await holds.hold("t1", "bob", [lee], start + 1800, 1800), "the next slot is free to hold"
    now = int(time.time())
    [seen_by_bob] = await holds.held("t1", ["lee"], (start, start + HOUR), "bob", now)
    [seen_by_alice] = await holds.held("t1", ["lee"], (start, start + HOUR), "alice", now)
    assert seen_by_bob == [(start, start + 1800)] and seen_by_alice == [(start + 1800, start + 3600)]


async def test_a_calendar_without_holds_holds_nothing_and_an_expired_hold_is_gone(redis: Redis) -> None:
    holds, start = SlotHolds(redis), _future()
    assert not await holds.hold("t1", "alice", [_calendar("lee", 0)], start, 1800)
    assert await holds.hold("t1", "alice", [_calendar("patel", 60)], start, 1800)
    later = int(time.time()) + 61
    assert await holds.held("t1", ["patel"], (start, start + HOUR), "bob", later) == [[]]
