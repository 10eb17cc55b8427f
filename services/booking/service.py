"""Booking rules: validate against the calendar, then one atomic script does check + write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.booking.store import BookingStore, ScriptResult
from services.calendar import slots
from shared.domain import Booking, BookingList, BookingOutcome, BookingStatus, Calendar
from shared.messages import DomainError, Envelope, ErrorCode
from shared.tools import BookMeeting, CancelBooking, ListMyBookings, RescheduleBooking


class BookingService:
    def __init__(self, store: BookingStore, *, clock: type[datetime] = datetime) -> None:
        self.store = store
        self.clock = clock

    async def _calendar(self, tenant_id: str, calendar_id: str) -> Calendar:
        calendar = await self.store.calendar(tenant_id, calendar_id)
        if calendar is None:
            raise DomainError(ErrorCode.unknown_calendar, f"No calendar {calendar_id!r}.")
        return calendar

    async def _check_bookable(
        self, calendar: Calendar, start: datetime, minutes: int, tenant_id: str
    ) -> tuple[int, int]:
        """Raise unless [start, start+minutes) is a slot the calendar offers (ignoring other
        bookings, which the atomic script checks). Returns the local day as an epoch range."""
        now = slots.epoch(self.clock.now(UTC))
        s = slots.epoch(start)
        if s <= now:
            raise DomainError(ErrorCode.invalid_time, "That time is in the past; pick a future slot.")
        if s < now + calendar.min_notice_minutes * 60:
            raise DomainError(
                ErrorCode.invalid_time,
                f"{calendar.name} needs at least {calendar.min_notice_minutes} minutes' notice.",
            )
        local_day = start.astimezone(calendar.zone).date()
        day = (
            slots.local_midnight(local_day, calendar.zone),
            slots.local_midnight(local_day + timedelta(days=1), calendar.zone),
        )
        external = await self.store.external_busy(tenant_id, calendar.calendar_id, *day)
        query = slots.SlotQuery(calendar, bookings=(), external=external)
        if s not in slots.free_starts(query, day, minutes * 60, now):
            raise DomainError(
                ErrorCode.outside_hours,
                f"{start.astimezone(calendar.zone):%a %d %b %H:%M} is not a bookable slot for {calendar.name}; "
                "check availability and pick one of the free slots.",
            )
        return day

    async def book(self, envelope: Envelope, args: BookMeeting) -> tuple[BookingOutcome, bool]:
        """Returns the outcome and whether this call created it (False: replay or existing)."""
        replay = await self._replay(envelope)
        if replay is not None:
            return replay, False
        calendar = await self._calendar(envelope.tenant_id, args.calendar_id)
        minutes = args.duration_minutes or calendar.slot_minutes
        day = await self._check_bookable(calendar, args.start, minutes, envelope.tenant_id)
        start = args.start.astimezone(UTC)
        booking = Booking(
            booking_id=uuid.uuid4().hex,
            tenant_id=envelope.tenant_id,
            calendar_id=calendar.calendar_id,
            user_id=envelope.user_id,
            attendee_name=args.attendee_name,
            participants=args.participants,
            start=start,
            end=start + timedelta(minutes=minutes),
            created_at=self.clock.now(UTC),
        )
        outcome = BookingOutcome(status="confirmed", booking=booking)
        result = await self.store.book(
            envelope.idempotency_key,
            envelope.payload_fingerprint(),
            booking,
            outcome.model_dump_json(),
            calendar,
            day,
            envelope.conversation_id,
            slots.epoch(self.clock.now(UTC)),
        )
        if result.status == "existing":
            return BookingOutcome(status="confirmed", booking=Booking.model_validate_json(result.payload)), False
        return _outcome(result), result.status == "created"

    async def _own_booking(self, envelope: Envelope, calendar_id: str, start: datetime) -> Booking:
        s = slots.epoch(start)
        for booking in await self.store.user_bookings(envelope.tenant_id, envelope.user_id, since=s):
            if (
                booking.calendar_id == calendar_id
                and slots.epoch(booking.start) == s
                and booking.status is BookingStatus.confirmed
            ):
                return booking
        raise DomainError(ErrorCode.not_found, "You have no booking at that time; list your bookings to find it.")

    async def cancel(self, envelope: Envelope, args: CancelBooking) -> tuple[BookingOutcome, bool]:
        replay = await self._replay(envelope)
        if replay is not None:
            return replay, False
        current = await self._own_booking(envelope, args.calendar_id, args.start)
        cancelled = current.model_copy(update={"status": BookingStatus.cancelled})
        outcome = BookingOutcome(status="cancelled", booking=cancelled)
        result = await self.store.cancel(
            envelope.idempotency_key, envelope.payload_fingerprint(), current, cancelled, outcome.model_dump_json()
        )
        return _outcome(result), result.status == "created"

    async def reschedule(self, envelope: Envelope, args: RescheduleBooking) -> tuple[BookingOutcome, bool]:
        replay = await self._replay(envelope)
        if replay is not None:
            return replay, False
        current = await self._own_booking(envelope, args.calendar_id, args.start)
        calendar = await self._calendar(envelope.tenant_id, args.calendar_id)
        minutes = int((current.end - current.start).total_seconds() // 60)
        day = await self._check_bookable(calendar, args.new_start, minutes, envelope.tenant_id)
        new_start = args.new_start.astimezone(UTC)
        moved = current.model_copy(update={"start": new_start, "end": new_start + timedelta(minutes=minutes)})
        outcome = BookingOutcome(status="rescheduled", booking=moved)
        result = await self.store.reschedule(
            envelope.idempotency_key,
            envelope.payload_fingerprint(),
            current,
            moved,
            outcome.model_dump_json(),
            calendar,
            day,
            envelope.conversation_id,
            slots.epoch(self.clock.now(UTC)),
        )
        return _outcome(result), result.status == "created"

    async def _replay(self, envelope: Envelope) -> BookingOutcome | None:
        """A retried command answers from its stored result before any check: time has moved on
        and the booking it names may have changed since, because of this very command."""
        stored = await self.store.stored_result(envelope.tenant_id, envelope.idempotency_key)
        if stored is None:
            return None
        fingerprint, payload = stored
        status = "replayed" if fingerprint == envelope.payload_fingerprint() else "conflict"
        return _outcome(ScriptResult(status, payload))

    async def list_mine(self, envelope: Envelope, args: ListMyBookings) -> BookingList:
        since = None if args.include_past else slots.epoch(self.clock.now(UTC))
        mine = await self.store.user_bookings(envelope.tenant_id, envelope.user_id, since=since)
        return BookingList(bookings=[b for b in mine if b.status is BookingStatus.confirmed])


def _outcome(result: ScriptResult) -> BookingOutcome:
    match result.status:
        case "created" | "replayed":
            return BookingOutcome.model_validate_json(result.payload)
        case "conflict":
            raise DomainError(
                ErrorCode.idempotency_conflict,
                "This idempotency key was already used for a different request.",
            )
        case "slot_taken":
            raise DomainError(
                ErrorCode.slot_taken, "That slot was just taken by someone else; check availability again."
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
