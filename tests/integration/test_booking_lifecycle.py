"""cancel_booking, reschedule_booking and list_my_bookings over the real stream and workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from services.booking.service import BookingService
from services.booking.store import BookingStore
from services.calendar.store import CalendarStore
from shared.domain import BookingList, BookingOutcome, Calendar
from shared.keys import TenantKeys
from shared.messages import Envelope, MessageType, Reply
from shared.tools import BookMeeting
from testkit.booking_data import (
    TENANT,
    Replies,
    book_payload,
    cancel_payload,
    command,
    first_slot,
    offer,
    publish,
    put_rooms,
    reschedule_payload,
    room,
)

ROOM = "room-00"
KEYS = TenantKeys(TENANT)


class Client:
    """Sends commands as one user in one conversation and waits for their replies."""

    def __init__(self, redis: Redis, replies: Replies, user: str) -> None:
        self.redis = redis
        self.replies = replies
        self.user = user
        self.conversation = f"conv-{user}-{uuid.uuid4().hex[:6]}"

    def envelope(self, kind: MessageType, payload: dict[str, Any], key: str | None = None) -> Envelope:
        return command(
            kind, payload, user=self.user, conversation=self.conversation, reply_to=self.replies.stream, key=key
        )

    async def send(self, envelope: Envelope) -> Reply:
        await publish(self.redis, [envelope])
        missing = await self.replies.wait_for([envelope.message_id], 10)
        assert not missing, "no reply"
        return self.replies.first(envelope.message_id)

    async def offered(self, *starts: datetime, calendar_id: str = ROOM) -> None:
        await offer(self.redis, self.conversation, [(calendar_id, s) for s in starts])

    async def book(self, start: datetime, *, minutes: int | None = None) -> Reply:
        await self.offered(start)
        payload = book_payload(ROOM, start, self.user.title())
        payload["duration_minutes"] = minutes
        return await self.send(self.envelope("book_meeting", payload))

    async def cancel(self, start: datetime, key: str | None = None) -> Reply:
        return await self.send(self.envelope("cancel_booking", cancel_payload(ROOM, start), key))

    async def move(self, start: datetime, new_start: datetime) -> Reply:
        return await self.send(self.envelope("reschedule_booking", reschedule_payload(ROOM, start, new_start)))

    async def mine(self, include_past: bool = False) -> list[tuple[datetime, datetime]]:
        reply = await self.send(self.envelope("list_my_bookings", {"include_past": include_past}))
        assert reply.error is None, reply.error
        return [(b.start, b.end) for b in BookingList.model_validate(reply.result).bookings]


def outcome(reply: Reply) -> BookingOutcome:
    assert reply.error is None, reply.error
    return BookingOutcome.model_validate(reply.result)


def code(reply: Reply) -> str:
    assert reply.error is not None, f"expected an error, got {reply.result}"
    return reply.error.code


async def busy_starts(redis: Redis) -> list[datetime]:
    rows = cast(list[tuple[bytes, float]], await redis.zrange(KEYS.calendar_bookings(ROOM), 0, -1, withscores=True))
    return [datetime.fromtimestamp(score, UTC) for _, score in rows]


@pytest.fixture
async def clients(redis: Redis, workers: None) -> AsyncIterator[dict[str, Client]]:
    await put_rooms(redis, 1)
    replies = Replies(redis, f"replies:lifecycle-{uuid.uuid4().hex[:6]}")
    yield {name: Client(redis, replies, name) for name in ("alice", "bob")}


DAY = first_slot(2)
TEN, ELEVEN, NOON = DAY + timedelta(hours=10), DAY + timedelta(hours=11), DAY + timedelta(hours=12)


async def test_cancelling_your_booking_frees_its_slot_and_drops_it_from_your_list(
    clients: dict[str, Client], redis: Redis
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    booked = outcome(await alice.book(TEN)).booking

    cancelled = outcome(await alice.cancel(TEN))

    assert cancelled.status == "cancelled"
    assert cancelled.booking.booking_id == booked.booking_id
    assert cancelled.booking.status == "cancelled"
    assert await busy_starts(redis) == []
    assert await alice.mine(include_past=True) == []
    assert outcome(await bob.book(TEN)).booking.user_id == "bob"


async def test_nobody_can_cancel_or_move_another_users_booking(clients: dict[str, Client], redis: Redis) -> None:
    alice, bob = clients["alice"], clients["bob"]
    await alice.book(TEN)
    await bob.offered(ELEVEN)

    assert code(await bob.cancel(TEN)) == "not_found"
    assert code(await bob.move(TEN, ELEVEN)) == "not_found"

    assert await busy_starts(redis) == [TEN]
    assert await alice.mine() == [(TEN, TEN + timedelta(minutes=5))]
    assert await bob.mine(include_past=True) == []


async def test_rescheduling_takes_the_new_slot_and_frees_the_old_one_in_one_step(
    clients: dict[str, Client], redis: Redis
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    booked = outcome(await alice.book(TEN)).booking
    await alice.offered(ELEVEN)

    moved = outcome(await alice.move(TEN, ELEVEN))

    assert moved.status == "rescheduled"
    assert moved.booking.booking_id == booked.booking_id
    assert (moved.booking.start, moved.booking.end) == (ELEVEN, ELEVEN + timedelta(minutes=5))
    assert await busy_starts(redis) == [ELEVEN]
    assert await alice.mine() == [(ELEVEN, ELEVEN + timedelta(minutes=5))]
    assert outcome(await bob.book(TEN)).booking.start == TEN  # the old slot is free again


async def test_booking_your_own_slot_again_answers_your_booking_and_writes_nothing(
    clients: dict[str, Client], redis: Redis
) -> None:
    alice = clients["alice"]
    booked = outcome(await alice.book(TEN)).booking

    again = outcome(await alice.book(TEN))  # a new command (new key) for the very same slot

    assert again.booking == booked
    assert await busy_starts(redis) == [TEN]
    assert len(await redis.keys(KEYS.booking("*"))) == 1


async def test_moving_onto_a_taken_slot_changes_nothing(clients: dict[str, Client], redis: Redis) -> None:
    alice, bob = clients["alice"], clients["bob"]
    await alice.book(TEN)
    await bob.book(ELEVEN)
    await alice.offered(ELEVEN)

    assert code(await alice.move(TEN, ELEVEN)) == "slot_taken"

    assert await busy_starts(redis) == [TEN, ELEVEN]
    assert await alice.mine() == [(TEN, TEN + timedelta(minutes=5))]


async def test_moving_to_a_slot_never_offered_in_the_conversation_changes_nothing(
    clients: dict[str, Client], redis: Redis
) -> None:
    alice = clients["alice"]
    await alice.book(TEN)

    assert code(await alice.move(TEN, NOON)) == "slot_not_offered"

    assert await busy_starts(redis) == [TEN]


async def test_a_booking_may_move_onto_time_it_already_holds(clients: dict[str, Client], redis: Redis) -> None:
    """A 30-minute booking moved by 5 minutes overlaps only itself: allowed."""
    alice = clients["alice"]
    await alice.book(TEN, minutes=30)
    later = TEN + timedelta(minutes=5)
    await alice.offered(later)

    moved = outcome(await alice.move(TEN, later))

    assert (moved.booking.start, moved.booking.end) == (later, later + timedelta(minutes=30))
    assert await busy_starts(redis) == [later]


async def test_a_retried_cancel_answers_its_first_result_even_after_the_booking_is_gone(
    clients: dict[str, Client],
) -> None:
    alice = clients["alice"]
    await alice.book(TEN)
    first = await alice.cancel(TEN, key="cancel-1")
    again = await alice.cancel(TEN, key="cancel-1")
    other_key = await alice.cancel(TEN, key="cancel-2")

    assert first.result == again.result
    assert code(other_key) == "not_found"


def shifted_clock(offset: timedelta) -> type[datetime]:
    """A clock running `offset` behind, to write bookings that are past or in progress now."""

    class Shifted(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Shifted:
            moment = datetime.now(tz) - offset
            return cls.fromtimestamp(moment.timestamp(), moment.tzinfo)

    return Shifted


def started_slot() -> datetime:
    """A 5-minute grid start 10-15 minutes ago."""
    ago = datetime.now(UTC) - timedelta(minutes=10)
    return ago.replace(minute=ago.minute - ago.minute % 5, second=0, microsecond=0)


async def room_at_midday(redis: Redis) -> None:
    """Store ROOM in the zone where it is about noon now: a room's day is 00:00-23:55 local, so a
    booking in progress now (started_slot, 30 minutes) lies inside it whatever the hour in UTC."""
    offset = 12 - datetime.now(UTC).hour  # -11 .. 12 hours
    zone = f"Etc/GMT{-offset:+d}"  # the Etc names count the other way: Etc/GMT-12 is UTC+12
    await CalendarStore(redis).put(Calendar.model_validate({**room(ROOM).model_dump(), "timezone": zone}))


async def book_in_the_past(redis: Redis, client: Client, start: datetime, minutes: int, offset: timedelta) -> None:
    """Book `start` as the service would have done `offset` ago (through the real Lua write)."""
    await client.offered(start)
    service = BookingService(BookingStore(redis, 3600), clock=shifted_clock(offset))
    envelope = client.envelope("book_meeting", {**book_payload(ROOM, start), "duration_minutes": minutes})
    change = await service.book(envelope, BookMeeting.model_validate(envelope.payload))
    assert change.applied


async def test_your_list_holds_only_your_bookings_upcoming_soonest_first_then_past_on_request(
    clients: dict[str, Client], redis: Redis
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    yesterday = first_slot(-1) + timedelta(hours=9)
    await room_at_midday(redis)
    started = started_slot()  # in progress: 30 minutes from at most 15 minutes ago
    await book_in_the_past(redis, alice, yesterday, 5, timedelta(days=2))
    await book_in_the_past(redis, alice, started, 30, timedelta(hours=1))
    await alice.book(NOON)
    await alice.book(TEN)
    await bob.book(ELEVEN)

    upcoming = [start for start, _ in await alice.mine()]
    everything = [start for start, _ in await alice.mine(include_past=True)]

    assert upcoming == [started, TEN, NOON]
    assert everything == [started, TEN, NOON, yesterday]
    assert [start for start, _ in await bob.mine()] == [ELEVEN]


async def test_a_booking_that_has_started_can_no_longer_be_cancelled_or_moved(
    clients: dict[str, Client], redis: Redis
) -> None:
    alice = clients["alice"]
    await room_at_midday(redis)
    started = started_slot()
    await book_in_the_past(redis, alice, started, 30, timedelta(hours=1))
    await alice.offered(TEN)

    assert code(await alice.cancel(started)) == "invalid_time"
    assert code(await alice.move(started, TEN)) == "invalid_time"
    assert await busy_starts(redis) == [started]


async def test_an_imported_busy_block_refuses_booking_and_moving_into_it(
    clients: dict[str, Client], redis: Redis
) -> None:
    """The offer was made before the calendar's external feed marked 11:00-12:00 busy."""
    alice = clients["alice"]
    await alice.book(TEN)
    await alice.offered(ELEVEN)
    block = (int(ELEVEN.timestamp()), int((ELEVEN + timedelta(hours=1)).timestamp()))
    await CalendarStore(redis).replace_external("import-1", "fp", TENANT, ROOM, "feed", [block], "{}", 0)

    assert code(await alice.move(TEN, ELEVEN)) == "outside_hours"
    assert code(await clients["bob"].book(ELEVEN + timedelta(minutes=30))) == "outside_hours"
    assert await busy_starts(redis) == [TEN]


async def test_a_users_booking_docs_hold_each_listed_booking_as_its_own_key_does(
    clients: dict[str, Client], redis: Redis
) -> None:
    """The docs hash that makes a list one read stays equal to the bookings' own keys."""
    alice = clients["alice"]
    docs = KEYS.user_booking_docs("alice")
    booking_id = outcome(await alice.book(TEN)).booking.booking_id
    assert await redis.hget(docs, booking_id) == await redis.get(KEYS.booking(booking_id))
    await alice.offered(ELEVEN)
    assert outcome(await alice.move(TEN, ELEVEN)).booking.start == ELEVEN
    assert await redis.hget(docs, booking_id) == await redis.get(KEYS.booking(booking_id))
    assert outcome(await alice.cancel(ELEVEN)).status == "cancelled"
    assert not await redis.hexists(docs, booking_id)
    assert await alice.mine() == []


async def test_bookings_written_before_the_docs_hash_are_still_listed_moved_and_cancelled(
    clients: dict[str, Client], redis: Redis
) -> None:
    alice = clients["alice"]
    await alice.book(TEN)
    await alice.book(NOON)
    await redis.delete(KEYS.user_booking_docs("alice"))  # as the version before this one left them
    assert [start for start, _ in await alice.mine()] == [TEN, NOON]
    await alice.offered(ELEVEN)
    assert outcome(await alice.move(TEN, ELEVEN)).booking.start == ELEVEN
    assert [start for start, _ in await alice.mine()] == [ELEVEN, NOON]  # one from the docs, one from its key
    assert outcome(await alice.cancel(NOON)).status == "cancelled"
    assert [start for start, _ in await alice.mine()] == [ELEVEN]
