"""Answers availability questions: validation, busy time from the store, the pure engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.calendar import slots
from services.calendar.store import CalendarStore
from shared.domain import Calendar, CalendarDirectory, CalendarSummary, FreeSlots, OfferedSlot
from shared.messages import DomainError, Envelope, ErrorCode
from shared.tools import FetchFreeSlots

MAX_WINDOW_DAYS = 31
MAX_SLOTS = 8
"""Slots returned per answer: enough to choose from, small enough for a model's context."""
LOOKAHEAD_DAYS = 14
"""How far past an empty window we look for the next available slot."""
OFFER_TTL_S = 30 * 60


class AvailabilityService:
    def __init__(self, store: CalendarStore, *, clock: type[datetime] = datetime) -> None:
        self.store = store
        self.clock = clock

    async def calendars(self, tenant_id: str, ids: list[str]) -> list[Calendar]:
        found: list[Calendar] = []
        for calendar_id in dict.fromkeys(ids):
            calendar = await self.store.get(tenant_id, calendar_id)
            if calendar is None:
                known = ", ".join(c.calendar_id for c in await self.store.all(tenant_id)) or "none"
                raise DomainError(ErrorCode.unknown_calendar, f"No calendar {calendar_id!r}. Known calendars: {known}.")
            found.append(calendar)
        return found

    async def fetch_free_slots(self, envelope: Envelope, args: FetchFreeSlots) -> FreeSlots:
        calendars = await self.calendars(envelope.tenant_id, args.calendar_ids)
        zone = _zone(args.timezone) if args.timezone else calendars[0].zone
        duration = args.duration_minutes or calendars[0].slot_minutes
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
        now = slots.epoch(self.clock.now(UTC))
        window = (
            slots.local_midnight(args.date_from, zone),
            slots.local_midnight(args.date_to + timedelta(days=1), zone),
        )
        queries = [
            slots.SlotQuery(cal, *await self.store.busy(envelope.tenant_id, cal.calendar_id, window))
            for cal in calendars
        ]
        starts = slots.intersect([slots.free_starts(q, window, duration * 60, now) for q in queries])
        reason, later = None, None
        offered = starts[:MAX_SLOTS]
        if not starts:
            reason = slots.why_empty(queries, window, duration * 60, now)
            later = await self._next_available(envelope.tenant_id, calendars, max(window[1], now), duration)
            offered = [] if later is None else [later]
        answer = FreeSlots(
            timezone=zone.key,
            duration_minutes=duration,
            slots=[
                OfferedSlot(ref=str(i + 1), start=slots.to_local(s, zone)) for i, s in enumerate(starts[:MAX_SLOTS])
            ],
            more_available=len(starts) > MAX_SLOTS,
            reason=reason,
            next_available=None if later is None else slots.to_local(later, zone),
        )
        await self.store.record_offers(
            envelope.tenant_id,
            envelope.conversation_id,
            [(cal.calendar_id, s) for cal in calendars for s in offered],
            now + OFFER_TTL_S,
        )
        return answer

    async def _next_available(self, tenant_id: str, calendars: list[Calendar], after: int, duration: int) -> int | None:
        window = (after, after + LOOKAHEAD_DAYS * slots.DAY)
        now = slots.epoch(self.clock.now(UTC))
        per_calendar = []
        for cal in calendars:
            bookings, external = await self.store.busy(tenant_id, cal.calendar_id, window)
            per_calendar.append(slots.free_starts(slots.SlotQuery(cal, bookings, external), window, duration * 60, now))
        common = slots.intersect(per_calendar)
        return common[0] if common else None

    async def describe(self, tenant_id: str) -> CalendarDirectory:
        return CalendarDirectory(
            calendars=[
                CalendarSummary(
                    calendar_id=c.calendar_id,
                    name=c.name,
                    timezone=c.timezone,
                    weekly_hours=c.weekly_hours,
                    slot_minutes=c.slot_minutes,
                    require_confirmation=c.require_confirmation,
                )
                for c in await self.store.all(tenant_id)
            ]
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DomainError(ErrorCode.invalid_arguments, f"Unknown time zone {name!r}; use an IANA name.") from exc
