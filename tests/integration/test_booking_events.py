"""booking.events: one event per change, with a stable id; the iCalendar invitation of each
version, rendered by the invitations group off the reply's path and stored once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import icalendar
import pytest
from redis.asyncio import Redis

from services.booking.events import BookingEvent, build_event
from services.booking.invitations import IcsAttachment, Invitations, render
from services.booking.service import BookingService
from services.booking.store import BookingStore
from shared import streams
from shared.domain import BookingOutcome
from shared.messages import Envelope, MessageType, Reply
from shared.settings import Settings
from shared.tools import BookMeeting
from testkit.booking_data import (
    Replies,
    add_and_take,
    book_payload,
    cancel_payload,
    command,
    first_slot,
    offer,
    publish,
    put_rooms,
    reschedule_payload,
    settle,
    stream_entries,
)
from testkit.ics_read import addresses, moment, number, parse, value

ROOM = "room-00"
DAY = first_slot(2)
TEN, ELEVEN, NOON = DAY + timedelta(hours=10), DAY + timedelta(hours=11), DAY + timedelta(hours=12)
GUESTS = ["ann@example.com", "ben@example.org"]


@pytest.fixture
async def replies(redis: Redis, workers: None) -> AsyncIterator[Replies]:
    await put_rooms(redis, 1)
    await offer(redis, "conv-alice", [(ROOM, TEN), (ROOM, ELEVEN), (ROOM, NOON)])
    yield Replies(redis, f"replies:events-{uuid.uuid4().hex[:6]}")


def envelope(replies: Replies, kind: MessageType, payload: dict[str, Any]) -> Envelope:
    return command(kind, payload, user="alice", conversation="conv-alice", reply_to=replies.stream)


async def send(redis: Redis, replies: Replies, message: Envelope, copies: int = 1) -> Reply:
    await publish(redis, [message] * copies)
    assert not await replies.wait_for([message.message_id], 10)
    reply = replies.first(message.message_id)
    assert reply.error is None, reply.error
    return reply


async def events(redis: Redis) -> list[BookingEvent]:
    assert await settle(redis) == 0
    return [BookingEvent.model_validate(e) for e in await stream_entries(redis, streams.BOOKING_EVENTS)]


def parse_invite(event: BookingEvent) -> tuple[icalendar.Calendar, icalendar.Component]:
    return parse(render(event, "appointments@clinic.test").text)


async def stored_invitation(redis: Redis, booking_id: str, sequence: int) -> IcsAttachment:
    """The booking's stored invitation once the invitations group stored version `sequence`."""
    for _ in range(100):
        found = await Invitations(redis).fetch("demo", booking_id)
        if found is not None and f"SEQUENCE:{sequence}" in found.text:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no invitation of version {sequence} stored for {booking_id}")


async def test_a_created_booking_emits_exactly_one_event_with_an_invite_that_parses(
    redis: Redis, replies: Replies
) -> None:
    book = envelope(replies, "book_meeting", book_payload(ROOM, TEN, "Alice", GUESTS))
    reply = await send(redis, replies, book, copies=2)  # delivered twice: still one effect, one event
    await asyncio.sleep(0.3)  # let the second copy finish too
    booking = BookingOutcome.model_validate(reply.result).booking

    (event,) = await events(redis)

    assert event.type == "created"
    assert event.booking == booking
    assert event.causation_id == book.message_id
    assert event.tenant_id == "demo"
    assert event.sequence == 0
    invite = await stored_invitation(redis, booking.booking_id, 0)
    assert invite.content_type == "text/calendar; charset=utf-8; method=REQUEST"
    assert invite == render(event, "appointments@clinic.test")
    calendar, vevent = parse(invite.text)
    assert value(calendar, "METHOD") == "REQUEST"
    assert value(vevent, "UID") == f"{booking.booking_id}@booking-assistant"
    assert number(vevent, "SEQUENCE") == 0
    assert moment(vevent, "DTSTART") == TEN
    assert moment(vevent, "DTEND") == TEN + timedelta(minutes=5)
    assert value(vevent, "STATUS") == "CONFIRMED"
    assert sorted(str(a) for a in addresses(vevent, "ATTENDEE")) == [f"mailto:{g}" for g in GUESTS]
    assert [str(a) for a in addresses(vevent, "ORGANIZER")] == ["mailto:appointments@clinic.test"]  # ICS_ORGANIZER


async def test_moves_and_the_cancel_keep_the_uid_and_raise_the_sequence(redis: Redis, replies: Replies) -> None:
    await send(redis, replies, envelope(replies, "book_meeting", book_payload(ROOM, TEN, "Alice", GUESTS[:1])))
    move = envelope(replies, "reschedule_booking", reschedule_payload(ROOM, TEN, ELEVEN))
    await send(redis, replies, move)
    await send(redis, replies, envelope(replies, "reschedule_booking", reschedule_payload(ROOM, ELEVEN, NOON)))
    cancel = envelope(replies, "cancel_booking", cancel_payload(ROOM, NOON))
    await send(redis, replies, cancel)

    created, moved, moved_again, cancelled = await events(redis)

    assert [e.type for e in (created, moved, moved_again, cancelled)] == [
        "created",
        "rescheduled",
        "rescheduled",
        "cancelled",
    ]
    assert [e.sequence for e in (created, moved, moved_again, cancelled)] == [0, 1, 2, 3]
    assert moved.causation_id == move.message_id and cancelled.causation_id == cancel.message_id
    assert (moved.previous_start, moved.booking.start) == (TEN, ELEVEN)
    assert (moved_again.previous_start, moved_again.booking.start) == (ELEVEN, NOON)
    assert len({e.event_id for e in (created, moved, moved_again, cancelled)}) == 4
    invites = [parse_invite(e) for e in (created, moved, moved_again, cancelled)]
    assert len({value(vevent, "UID") for _, vevent in invites}) == 1
    assert [number(vevent, "SEQUENCE") for _, vevent in invites] == [0, 1, 2, 3]
    assert [moment(vevent, "DTSTART") for _, vevent in invites] == [TEN, ELEVEN, NOON, NOON]
    cal, vevent = invites[-1]
    assert value(cal, "METHOD") == "CANCEL"
    assert value(vevent, "STATUS") == "CANCELLED"
    stored = await stored_invitation(redis, cancelled.booking.booking_id, 3)  # the current version
    assert stored.content_type.endswith("method=CANCEL")
    assert stored == render(cancelled, "appointments@clinic.test")
    assert [str(a) for a in addresses(vevent, "ATTENDEE")] == [f"mailto:{GUESTS[0]}"]


async def test_a_command_reclaimed_after_its_write_publishes_the_identical_event_once_more(
    redis: Redis, replies: Replies, settings: Settings
) -> None:
    """A worker wrote the booking and died before publishing: the reclaimed command publishes
    the event (built from what the write stored), and a mere duplicate stays silent."""
    book = envelope(replies, "book_meeting", book_payload(ROOM, TEN, "Alice", GUESTS))
    # the dead worker's part: the write, and the entry it had read and never acked
    change = await BookingService(BookingStore(redis, 3600)).book(book, BookMeeting.model_validate(book.payload))
    # added and read in one transaction, so the live worker's blocked read cannot take it first
    assert await add_and_take(redis, book, "dead-worker")

    assert not await replies.wait_for([book.message_id], settings.visibility_timeout_ms / 1000 + 10)
    await publish(redis, [book])  # a plain duplicate afterwards: answered, no second event
    await asyncio.sleep(0.5)

    assert await settle(redis) == 0
    (raw,) = await stream_entries(redis, streams.BOOKING_EVENTS)
    expected = build_event("demo", book.idempotency_key, change)
    assert raw == json.loads(expected.model_dump_json())
    assert all(r.error is None for r in replies.by_message[book.message_id])
