"""Answers availability questions: validation, busy time from the store, the pure engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.calendar.store import CalendarStore
from shared import slots
from shared.domain import Calendar, CalendarDirectory, CalendarSummary, FreeSlots, NoSlotReason, OfferedSlot
from shared.messages import DomainError, Envelope, ErrorCode
from shared.tools import FetchFreeSlots

MAX_WINDOW_DAYS = 31
MAX_SLOTS = 24
"""At most this many starts per answer: every start of a working day (so any time of the day the
user names can be booked from one answer), the first days of a longer window."""
"""Slots returned per answer: enough to choose from, small enough for a model's context."""
LOOKAHEAD_DAYS = 14
"""How far past an empty window we look for the next available slot."""
OFFER_TTL_S = 30 * 60
MAX_HORIZON_DAYS = 730
"""The largest horizon a calendar may have: a window starting later is empty without a look."""


class AvailabilityService:
    """fetch_free_slots and describe_calendars over one store."""

    def __init__(self, store: CalendarStore, *, clock: type[datetime] = datetime) -> None:
        self.store = store
        self.clock = clock

    def now(self) -> int:
        """The current time as epoch seconds (from the injected clock)."""
        return slots.epoch(self.clock.now(UTC))

    async def calendars(self, tenant_id: str, ids: list[str]) -> list[Calendar]:
        """The named calendars of the tenant, in order, without repeats; unknown_calendar if any is missing."""
        unique = list(dict.fromkeys(ids))
        found = await self.store.many(tenant_id, unique)
        missing = [i for i, c in zip(unique, found, strict=True) if c is None]
        if missing:
            known = ", ".join(c.calendar_id for c in await self.store.all(tenant_id)) or "none"
            raise DomainError(ErrorCode.unknown_calendar, f"No calendar {missing[0]!r}. Known calendars: {known}.")
        return [c for c in found if c is not None]

    async def fetch_free_slots(self, envelope: Envelope, args: FetchFreeSlots) -> FreeSlots:
        """Free starts common to every named calendar in [date_from, date_to] (days in the display zone).

        At most MAX_SLOTS, earliest first, with `more_available`; when none, a `reason` and the
        `next_available` start within LOOKAHEAD_DAYS. Offered starts are recorded for booking.
        """
        calendars = await self.calendars(envelope.tenant_id, args.calendar_ids)
        zone = _zone(args.timezone) if args.timezone else calendars[0].zone
        duration = args.duration_minutes or calendars[0].slot_minutes
        _check_request(args, calendars, duration)
        now = self.now()
        far = _far_away(args, now)
        if far is not None:
            later = None
            if far is NoSlotReason.in_the_past:
                later = await self._next_available(envelope, calendars, now, duration)
            return await self._answer(envelope, calendars, zone, duration, [], far, later, now)
        window = (
            slots.local_midnight(args.date_from, zone),
            slots.local_midnight(args.date_to + timedelta(days=1), zone),
        )
        queries = await self._queries(envelope, calendars, window)
        starts = slots.intersect([slots.free_starts(q, window, duration * 60, now) for q in queries])
        if starts:
            return await self._answer(envelope, calendars, zone, duration, starts, None, None, now)
        reason = slots.why_empty(queries, window, duration * 60, now)
        later = None
        if reason is not NoSlotReason.beyond_horizon:
            later = await self._next_available(envelope, calendars, max(window[1], now), duration)
        return await self._answer(envelope, calendars, zone, duration, [], reason, later, now)

    async def _answer(
        self,
        envelope: Envelope,
        calendars: Sequence[Calendar],
        zone: ZoneInfo,
        duration: int,
        starts: list[int],
        reason: NoSlotReason | None,
        later: int | None,
        now: int,
    ) -> FreeSlots:
        offered = starts[:MAX_SLOTS] or ([] if later is None else [later])
        refs = await self.store.offers.record_offers(
            envelope.tenant_id,
            envelope.conversation_id,
            [c.calendar_id for c in calendars],
            offered,
            duration * 60,
            now + OFFER_TTL_S,
        )
        shown = [OfferedSlot(ref=ref, start=slots.to_local(s, zone)) for ref, s in zip(refs, offered, strict=True)]
        return FreeSlots(
            timezone=zone.key,
            duration_minutes=duration,
            slots=shown if starts else [],
            more_available=len(starts) > MAX_SLOTS,
            reason=reason,
            next_available=None if starts or not shown else shown[0],
        )

    async def _queries(
        self, envelope: Envelope, calendars: Sequence[Calendar], window: slots.Interval
    ) -> list[slots.SlotQuery]:
        """The engine's inputs: bookings (and other conversations' holds) and external blocks."""
        busy = await self.store.busy_many(envelope.tenant_id, [c.calendar_id for c in calendars], window)
        holding = [c.calendar_id for c in calendars if c.hold_seconds]
        held: dict[str, list[slots.Interval]] = {}
        if holding:
            found = await self.store.offers.held(
                envelope.tenant_id, holding, window, envelope.conversation_id, self.now()
            )
            held = dict(zip(holding, found, strict=True))
        return [
            slots.SlotQuery(cal, [*bookings, *held.get(cal.calendar_id, ())], external)
            for cal, (bookings, external) in zip(calendars, busy, strict=True)
        ]

    async def _next_available(
        self, envelope: Envelope, calendars: Sequence[Calendar], after: int, duration: int
    ) -> int | None:
        """The first common free start in the LOOKAHEAD_DAYS after `after`, if any."""
        window = (after, after + LOOKAHEAD_DAYS * slots.DAY)
        now = self.now()
        queries = await self._queries(envelope, calendars, window)
        common = slots.intersect([slots.free_starts(q, window, duration * 60, now) for q in queries])
        return common[0] if common else None

    async def describe(self, tenant_id: str) -> CalendarDirectory:
        """The tenant's calendars as the chat service's prompt needs them."""
        return CalendarDirectory(
            calendars=[
                CalendarSummary(
                    calendar_id=c.calendar_id,
                    name=c.name,
                    timezone=c.timezone,
                    weekly_hours=c.weekly_hours,
                    slot_minutes=c.slot_minutes,
                    require_confirmation=c.require_confirmation,
                    hold_seconds=c.hold_seconds,
                )
                for c in await self.store.all(tenant_id)
            ]
        )


def _check_request(args: FetchFreeSlots, calendars: Sequence[Calendar], duration: int) -> None:
    """Typed errors for a request no calendar could answer."""
    for cal in calendars:
        if duration % cal.granularity_minutes:
            raise DomainError(
                ErrorCode.invalid_arguments,
                f"duration_minutes must be a multiple of {cal.granularity_minutes} for {cal.name}.",
            )
    if args.date_to < args.date_from:
        raise DomainError(ErrorCode.invalid_arguments, "date_to is before date_from.")
    if (args.date_to - args.date_from).days >= MAX_WINDOW_DAYS:
        raise DomainError(ErrorCode.window_too_large, f"Ask for at most {MAX_WINDOW_DAYS} days at a time.")


def _far_away(args: FetchFreeSlots, now: int) -> NoSlotReason | None:
    """A reason for windows so far in the past or future that no calendar can hold a slot.

    Answering these without arithmetic on extreme dates (year 1, year 9999) keeps them from
    overflowing: in_the_past still gets a next_available, beyond_horizon does not.
    """
    today = datetime.fromtimestamp(now, UTC).date()
    if args.date_to < today - timedelta(days=2):
        return NoSlotReason.in_the_past
    if args.date_from > today + timedelta(days=MAX_HORIZON_DAYS + 2):
        return NoSlotReason.beyond_horizon
    return None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DomainError(ErrorCode.invalid_arguments, f"Unknown time zone {name!r}; use an IANA name.") from exc
