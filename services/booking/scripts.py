"""The booking scripts' requests: each script's KEYS/ARGV contract (its header, lua/*.lua) as a
typed object built from the domain objects (runtime/scripts.py says how the two are kept equal)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from runtime.scripts import Key, Script, ScriptRequest
from shared.domain import Booking, Calendar
from shared.keys import TenantKeys

LUA = Path(__file__).with_name("lua")


def busy_member(booking: Booking) -> str:
    """The booking's member in its calendar's busy set: `end|booking_id|user_id`."""
    return f"{int(booking.end.timestamp())}|{booking.booking_id}|{booking.user_id}"


@dataclass(frozen=True, slots=True)
class Once:
    """What a write stores under its idempotency key, and until when it may run."""

    tenant_id: str
    key: str
    fingerprint: str
    result: str
    """The result json stored on success."""
    meta: str
    """The change meta json stored with it."""
    ttl_s: int
    deadline_ms: int = 0
    """The caller's deadline (epoch ms, 0 = none): the script refuses to run past it."""
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This attempt's token: a client retry of the attempt that wrote gets `created` again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOnce(ScriptRequest):
    """The part every booking write shares (lua/write_once.lua)."""

    idempotency: Key
    fingerprint: str
    attempt: str
    deadline_ms: int
    ttl_s: int
    result: str
    meta: str

    @staticmethod
    def parts(once: Once) -> dict[str, Any]:
        """This base's fields, from a write's `Once`."""
        return {
            "idempotency": TenantKeys(once.tenant_id).idempotency(once.key),
            "fingerprint": once.fingerprint,
            "attempt": once.attempt,
            "deadline_ms": once.deadline_ms,
            "ttl_s": once.ttl_s,
            "result": once.result,
            "meta": once.meta,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotWrite(WriteOnce):
    """The part book and reschedule share: the slot taken and what it is checked against."""

    busy: Key
    booking: Key
    user_bookings: Key
    user_docs: Key
    offers: Key
    holds: Key
    calendar_id: str
    start: int
    ends: int
    buffer_before_s: int
    buffer_after_s: int
    daily_cap: int
    day_start: int
    day_end: int
    conversation: str
    now: int
    booking_id: str
    user_id: str

    @staticmethod
    def slot(
        once: Once, booking: Booking, calendar: Calendar, day: tuple[int, int], conversation_id: str, now: int
    ) -> dict[str, Any]:
        """This base's fields: `booking` on the slot it is to take, in `calendar`, whose local day is `day`."""
        keys = TenantKeys(booking.tenant_id)
        return WriteOnce.parts(once) | {
            "busy": keys.calendar_bookings(booking.calendar_id),
            "booking": keys.booking(booking.booking_id),
            "user_bookings": keys.user_bookings(booking.user_id),
            "user_docs": keys.user_booking_docs(booking.user_id),
            "offers": keys.offers(conversation_id),
            "holds": keys.holds(booking.calendar_id),
            "calendar_id": booking.calendar_id,
            "start": int(booking.start.timestamp()),
            "ends": int(booking.end.timestamp()),
            "buffer_before_s": calendar.buffer_before_minutes * 60,
            "buffer_after_s": calendar.buffer_after_minutes * 60,
            "daily_cap": calendar.max_bookings_per_day or 0,
            "day_start": day[0],
            "day_end": day[1],
            "conversation": conversation_id,
            "now": now,
            "booking_id": booking.booking_id,
            "user_id": booking.user_id,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BookRequest(SlotWrite):
    """book.lua: a new booking on an offered slot."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "book.lua")
    booking_json: str

    def other_booking(self, booking_id: str) -> str:
        """The key of another booking of this tenant (this booking's key with the id swapped):
        where an `existing` answer's booking is read."""
        return self.booking.removesuffix(self.booking_id) + booking_id

    @classmethod
    def of(
        cls, once: Once, booking: Booking, calendar: Calendar, day: tuple[int, int], conversation_id: str, now: int
    ) -> BookRequest:
        return cls(
            **cls.slot(once, booking, calendar, day, conversation_id, now),
            booking_json=booking.model_dump_json(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RescheduleRequest(SlotWrite):
    """reschedule.lua: a booking moved to an offered slot, when it is still as the caller read it."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "reschedule.lua")
    revision: Key
    old_member: str
    expected: str
    moved: str

    @classmethod
    def of(
        cls,
        once: Once,
        current: Booking,
        current_json: str,
        moved: Booking,
        calendar: Calendar,
        day: tuple[int, int],
        conversation_id: str,
        now: int,
    ) -> RescheduleRequest:
        return cls(
            **cls.slot(once, moved, calendar, day, conversation_id, now),
            revision=TenantKeys(current.tenant_id).booking_revision(current.booking_id),
            old_member=busy_member(current),
            expected=current_json,
            moved=moved.model_dump_json(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequest(WriteOnce):
    """cancel.lua: a booking cancelled, when it is still as the caller read it."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "cancel.lua")
    busy: Key
    booking: Key
    user_bookings: Key
    user_docs: Key
    revision: Key
    booking_id: str
    old_member: str
    expected: str
    cancelled: str

    @classmethod
    def of(cls, once: Once, current: Booking, current_json: str, cancelled: Booking) -> CancelRequest:
        keys = TenantKeys(current.tenant_id)
        return cls(
            **cls.parts(once),
            busy=keys.calendar_bookings(current.calendar_id),
            booking=keys.booking(current.booking_id),
            user_bookings=keys.user_bookings(current.user_id),
            user_docs=keys.user_booking_docs(current.user_id),
            revision=keys.booking_revision(current.booking_id),
            booking_id=current.booking_id,
            old_member=busy_member(current),
            expected=current_json,
            cancelled=cancelled.model_dump_json(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Prefetch(ScriptRequest):
    """prefetch.lua: a command's stored result, its calendar, the offer its reference names and
    the external blocks that may touch its slot (the offered one, or the start it gives)."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "prefetch.lua")
    idempotency: Key
    calendar: Key
    external: Key
    offers: Key
    ref: str
    start: int | str
    before_s: int
    after_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRequest(ScriptRequest):
    """list.lua: a user's bookings starting in [lo, hi], with their JSON."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "list.lua")
    user_bookings: Key
    user_docs: Key
    lo: int | str
    hi: int | str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreInvitation(ScriptRequest):
    """invitation.lua: one booking version's invitation, stored once and put in the outbox."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "invitation.lua")
    invitation: Key
    outbox: Key
    event_id: str
    sequence: int
    content_type: str
    filename: str
    text: str
    maxlen: int
    booking_id: str
