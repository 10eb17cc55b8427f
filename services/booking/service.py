"""Booking rules: validate against the calendar, then one atomic script does check + write.

Every write first answers a retried command from its stored result (time has moved on, and the
booking it names may have changed since, because of this very command), then checks, then
writes in one Lua script that re-checks idempotency, the offer, conflicts and ownership.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from runtime.offers import start_of_ref
from services.booking.events import Change, ChangeMeta
from services.booking.scripts import BookRequest, CancelRequest, Once, RescheduleRequest
from services.booking.store import LOOKBACK_S, BookingStore, Owned, Prefetched, ScriptResult, Stored
from shared import slots
from shared.domain import Booking, BookingList, BookingOutcome, BookingStatus, Calendar
from shared.messages import DomainError, Envelope, ErrorCode
from shared.tools import BookMeeting, CancelBooking, ListMyBookings, RescheduleBooking


class Begun(NamedTuple):
    """What a book or reschedule knows once it has begun (BookingService._begin)."""

    now_at: datetime
    now: int
    fingerprint: str
    wanted: datetime
    pre: Prefetched
    calendar: Calendar


class BookingService:
    """book, cancel, reschedule and list over one store; `clock` is injectable for tests."""

    def __init__(self, store: BookingStore, *, clock: type[datetime] = datetime) -> None:
        self.store = store
        self.clock = clock

    def _check_bookable(
        self, calendar: Calendar, start: datetime, minutes: int, external: list[tuple[int, int]], now: int
    ) -> tuple[int, int]:
        """Raise unless [start, start+minutes) is a slot the calendar offers (ignoring other
        bookings, which the atomic script checks). Returns the local day as an epoch range."""
        s = slots.epoch(start)
        if s <= now:
            raise DomainError(ErrorCode.invalid_time, "That time is in the past; pick a future slot.")
        if s < now + calendar.min_notice_minutes * 60:
            raise DomainError(
                ErrorCode.invalid_time,
                f"{calendar.name} needs at least {calendar.min_notice_minutes} minutes' notice.",
            )
        query = slots.SlotQuery(calendar, bookings=(), external=external)
        # a one-second window holds this start only: the grid is anchored at the working range
        if s not in slots.free_starts(query, (s, s + 1), minutes * 60, now):
            raise DomainError(
                ErrorCode.outside_hours,
                f"{start.astimezone(calendar.zone):%a %d %b %H:%M} is not a bookable slot for {calendar.name}; "
                "check availability and pick one of the free slots.",
            )
        local_day = start.astimezone(calendar.zone).date()
        return (
            slots.local_midnight(local_day, calendar.zone),
            slots.local_midnight(local_day + timedelta(days=1), calendar.zone),
        )

    def _once(self, envelope: Envelope, fingerprint: str, outcome: BookingOutcome, meta: ChangeMeta) -> Once:
        """What a write stores under the command's idempotency key (a fresh attempt token)."""
        return Once(
            tenant_id=envelope.tenant_id,
            key=envelope.idempotency_key,
            fingerprint=fingerprint,
            result=outcome.model_dump_json(),
            meta=meta.model_dump_json(),
            ttl_s=self.store.ttl,
            deadline_ms=envelope.deadline_ms(),
        )

    async def _begin(
        self, envelope: Envelope, calendar_id: str, ref: str | None, start: datetime | None
    ) -> Change | Begun:
        """A write's first step, one read: the clock, the start it names (its slot reference
        resolved, or its start as given), what the store holds for it and its calendar; or, for a
        command that ran before, its stored result (also when its slot no longer resolves: a
        retry after success gets its answer, not an error)."""
        now_at = self.clock.now(UTC)
        fingerprint = envelope.payload_fingerprint()
        pre = await self.store.prefetch(
            envelope.tenant_id,
            envelope.idempotency_key,
            calendar_id,
            envelope.conversation_id,
            ref=ref,
            start=None if ref is not None or start is None else slots.epoch(start),
        )
        if pre.stored is not None:
            return _stored_change(pre.stored, fingerprint)
        if ref is not None:
            wanted = start_of_ref(pre.offer, calendar_id, ref, start)
        elif start is not None:
            wanted = start
        else:  # the argument models refuse this; a direct caller may not
            raise DomainError(ErrorCode.invalid_arguments, "Name the slot: its ref or its start.")
        calendar = _known(pre.calendar, calendar_id)
        return Begun(now_at, slots.epoch(now_at), fingerprint, wanted, pre, calendar)

    async def book(self, envelope: Envelope, args: BookMeeting) -> Change:
        """Book an offered slot for the caller."""
        begun = await self._begin(envelope, args.calendar_id, args.slot_ref, args.start)
        if isinstance(begun, Change):
            return begun
        now_at, now, fingerprint, wanted, pre, calendar = begun
        minutes = args.duration_minutes or calendar.slot_minutes
        day = self._check_bookable(calendar, wanted, minutes, pre.external, now)
        start = wanted.astimezone(UTC)
        # the arguments were validated once (BookMeeting); constructing skips validating them again
        booking = Booking.model_construct(
            booking_id=uuid.uuid4().hex,
            tenant_id=envelope.tenant_id,
            calendar_id=calendar.calendar_id,
            user_id=envelope.user_id,
            attendee_name=args.attendee_name,
            participants=list(args.participants),
            start=start,
            end=start + timedelta(minutes=minutes),
            status=BookingStatus.confirmed,
            created_at=now_at,
            notes=None,
        )
        outcome = BookingOutcome.model_construct(status="confirmed", booking=booking)
        meta = ChangeMeta(message_id=envelope.message_id, occurred_at=now_at, calendar_name=calendar.name)
        once = self._once(envelope, fingerprint, outcome, meta)
        result = await self.store.write(BookRequest.of(once, booking, calendar, day, envelope.conversation_id, now))
        if result.status == "existing":
            return Change(
                BookingOutcome(status="confirmed", booking=Booking.model_validate_json(result.payload)), False
            )
        return _change(result, (outcome, meta), once.result)

    async def _own_booking(self, envelope: Envelope, calendar_id: str, start: datetime, now: int) -> Owned:
        """The caller's confirmed booking at that calendar and start: not_found for anyone else's."""
        s = slots.epoch(start)
        for owned in await self.store.user_bookings(envelope.tenant_id, envelope.user_id, lo=s, hi=s):
            booking = owned.booking
            if (
                booking.calendar_id == calendar_id
                and slots.epoch(booking.start) == s
                and booking.status is BookingStatus.confirmed
            ):
                if s <= now:
                    raise DomainError(
                        ErrorCode.invalid_time, "That booking has already started; it can no longer be changed."
                    )
                return owned
        raise DomainError(ErrorCode.not_found, "You have no booking at that time; list your bookings to find it.")

    async def cancel(self, envelope: Envelope, args: CancelBooking) -> Change:
        """Cancel one of the caller's upcoming bookings."""
        now_at = self.clock.now(UTC)
        fingerprint = envelope.payload_fingerprint()
        pre = await self.store.prefetch(
            envelope.tenant_id,
            envelope.idempotency_key,
            args.calendar_id,
            envelope.conversation_id,
            ref=None,
            start=None,
        )
        if pre.stored is not None:
            return _stored_change(pre.stored, fingerprint)
        current = await self._own_booking(envelope, args.calendar_id, args.start, slots.epoch(now_at))
        cancelled = current.booking.model_copy(update={"status": BookingStatus.cancelled})
        outcome = BookingOutcome.model_construct(status="cancelled", booking=cancelled)
        name = pre.calendar.name if pre.calendar is not None else args.calendar_id
        meta = ChangeMeta(message_id=envelope.message_id, occurred_at=now_at, calendar_name=name)
        once = self._once(envelope, fingerprint, outcome, meta)
        result = await self.store.write(CancelRequest.of(once, current.booking, current.raw, cancelled))
        return _change(result, (outcome, meta), once.result)

    async def reschedule(self, envelope: Envelope, args: RescheduleBooking) -> Change:
        """Move one of the caller's upcoming bookings to an offered slot, atomically."""
        begun = await self._begin(envelope, args.calendar_id, args.new_slot_ref, args.new_start)
        if isinstance(begun, Change):
            return begun
        now_at, now, fingerprint, wanted, pre, calendar = begun
        current = await self._own_booking(envelope, args.calendar_id, args.start, now)
        old = current.booking
        minutes = int((old.end - old.start).total_seconds() // 60)
        day = self._check_bookable(calendar, wanted, minutes, pre.external, now)
        new_start = wanted.astimezone(UTC)
        moved = old.model_copy(update={"start": new_start, "end": new_start + timedelta(minutes=minutes)})
        outcome = BookingOutcome.model_construct(status="rescheduled", booking=moved)
        meta = ChangeMeta(
            message_id=envelope.message_id,
            occurred_at=now_at,
            calendar_name=calendar.name,
            previous_start=old.start,
            previous_end=old.end,
        )
        once = self._once(envelope, fingerprint, outcome, meta)
        result = await self.store.write(
            RescheduleRequest.of(once, old, current.raw, moved, calendar, day, envelope.conversation_id, now)
        )
        return _change(result, (outcome, meta), once.result)

    async def list_mine(self, envelope: Envelope, args: ListMyBookings) -> BookingList:
        """The caller's confirmed bookings: upcoming (including one in progress) soonest first,
        then, with include_past, the ended ones, most recent first."""
        now = slots.epoch(self.clock.now(UTC))
        lo = None if args.include_past else now - LOOKBACK_S
        mine = [
            o.booking
            for o in await self.store.user_bookings(envelope.tenant_id, envelope.user_id, lo=lo, hi=None)
            if o.booking.status is BookingStatus.confirmed
        ]
        upcoming = sorted((b for b in mine if slots.epoch(b.end) > now), key=lambda b: b.start)
        past = sorted((b for b in mine if slots.epoch(b.end) <= now), key=lambda b: b.start, reverse=True)
        return BookingList(bookings=upcoming + (past if args.include_past else []))


def _known(calendar: Calendar | None, calendar_id: str) -> Calendar:
    if calendar is None:
        raise DomainError(ErrorCode.unknown_calendar, f"No calendar {calendar_id!r}.")
    return calendar


def _stored_change(stored: Stored, fingerprint: str) -> Change:
    """A retried command: its first result, or a conflict when the key came with another request."""
    if stored.fingerprint != fingerprint:
        return _change(ScriptResult("conflict", ""))
    return _change(stored.result)


def _change(
    result: ScriptResult, fresh: tuple[BookingOutcome, ChangeMeta] | None = None, fresh_json: str | None = None
) -> Change:
    """The Change a script result stands for, or the DomainError it means. `fresh` is what this
    call asked to write and `fresh_json` its outcome's JSON: a `created` result stored exactly
    that, so it is not parsed back."""
    match result.status:
        case "created" if fresh is not None:
            return Change(fresh[0], applied=True, sequence=result.sequence, meta=fresh[1], stored_json=fresh_json)
        case "created" | "replayed":
            outcome = BookingOutcome.model_validate_json(result.payload)
            meta = ChangeMeta.model_validate_json(result.meta) if result.meta else None
            return Change(
                outcome,
                applied=result.status == "created",
                sequence=result.sequence,
                meta=meta,
                stored_json=result.payload,
            )
        case "conflict":
            raise DomainError(
                ErrorCode.idempotency_conflict,
                "This idempotency key was already used for a different request.",
            )
        case "expired":
            raise DomainError(
                ErrorCode.expired, "This request arrived after its deadline and changed nothing; try again."
            )
        case "slot_taken":
            raise DomainError(
                ErrorCode.slot_taken, "That slot was just taken by someone else; check availability again."
            )
        case "held":
            raise DomainError(
                ErrorCode.slot_taken, "Someone else is deciding on that slot right now; offer another one."
            )
        case "daily_limit":
            raise DomainError(ErrorCode.daily_limit, "That day is fully booked; offer another day.")
        case "not_offered":
            raise DomainError(
                ErrorCode.slot_not_offered,
                "That time was not offered in this conversation; call fetch_free_slots and offer one of its slots.",
            )
        case "offer_expired":
            raise DomainError(ErrorCode.offer_expired, "That offer has expired; check availability again.")
        case "changed":
            raise DomainError(ErrorCode.not_found, "That booking changed meanwhile; list your bookings again.")
    raise RuntimeError(f"unexpected script status {result.status!r}")
