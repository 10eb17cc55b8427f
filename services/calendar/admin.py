"""Calendar admin commands: upsert_calendar and import_ics, each idempotent per envelope key.

The tenant is always the envelope's. A redelivered command answers from its stored result
without touching the data again, so an old command replayed after a newer one cannot undo it;
the same key with another payload is an `idempotency_conflict`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.calendar import ics
from services.calendar.store import CalendarStore, WriteResult
from shared import slots
from shared.domain import BusyImported, Calendar, CalendarSaved
from shared.messages import DomainError, Envelope, ErrorCode
from shared.tools import ImportIcs, UpsertCalendar


class CalendarAdmin:
    """Writes to calendars and their imported busy time."""

    def __init__(self, store: CalendarStore, *, clock: type[datetime] = datetime) -> None:
        self.store = store
        self.clock = clock

    async def upsert(self, envelope: Envelope, args: UpsertCalendar) -> CalendarSaved:
        """Create or replace the calendar `args` describes, in the envelope's tenant."""
        replay = await self._replay(envelope)
        if replay is not None:
            return CalendarSaved.model_validate_json(replay)
        if args.tenant_id is not None and args.tenant_id != envelope.tenant_id:
            raise DomainError(ErrorCode.invalid_arguments, "tenant_id must be left out or equal your own tenant.")
        if args.slot_minutes % args.granularity_minutes:
            raise DomainError(
                ErrorCode.invalid_arguments,
                f"slot_minutes ({args.slot_minutes}) must be a multiple of granularity_minutes "
                f"({args.granularity_minutes}).",
            )
        fields = args.model_dump(exclude={"tenant_id"})
        calendar = Calendar.model_validate({**fields, "tenant_id": envelope.tenant_id})
        result = await self.store.upsert(
            envelope.idempotency_key,
            envelope.payload_fingerprint(),
            calendar,
            if_created=CalendarSaved(created=True, calendar=calendar).model_dump_json(),
            if_replaced=CalendarSaved(created=False, calendar=calendar).model_dump_json(),
        )
        return CalendarSaved.model_validate_json(_payload(result))

    async def import_ics(self, envelope: Envelope, args: ImportIcs) -> BusyImported:
        """Replace the calendar's busy blocks from `args.source` with the file's busy intervals
        from now to the calendar's horizon (cut into at most one-day blocks)."""
        replay = await self._replay(envelope)
        if replay is not None:
            return BusyImported.model_validate_json(replay)
        calendar = await self.store.get(envelope.tenant_id, args.calendar_id)
        if calendar is None:
            raise DomainError(ErrorCode.unknown_calendar, f"No calendar {args.calendar_id!r}.")
        now = slots.epoch(self.clock.now(UTC))
        window = (now, now + (calendar.horizon_days + 1) * slots.DAY)
        try:
            # parsing and expanding a large file is CPU work: keep the event loop answering
            busy = await asyncio.to_thread(ics.busy_intervals, args.ics, window, calendar.zone)
        except ics.IcsError as exc:
            raise DomainError(ErrorCode.invalid_arguments, f"ics: {exc}") from exc
        blocks = ics.split_days(busy)
        answer = BusyImported(
            calendar_id=calendar.calendar_id,
            source=args.source,
            busy_blocks=len(blocks),
            window_start=datetime.fromtimestamp(window[0], UTC),
            window_end=datetime.fromtimestamp(window[1], UTC),
        )
        result = await self.store.replace_external(
            envelope.idempotency_key,
            envelope.payload_fingerprint(),
            envelope.tenant_id,
            calendar.calendar_id,
            args.source,
            blocks,
            answer.model_dump_json(),
            now,
        )
        return BusyImported.model_validate_json(_payload(result))

    async def _replay(self, envelope: Envelope) -> str | None:
        """The stored result of this idempotency key, checked before any work (or a conflict)."""
        stored = await self.store.stored_result(envelope.tenant_id, envelope.idempotency_key)
        if stored is None:
            return None
        fingerprint, result = stored
        if fingerprint != envelope.payload_fingerprint():
            raise _conflict()
        return result


def _payload(result: WriteResult) -> str:
    if result.status == "conflict":
        raise _conflict()
    return result.payload


def _conflict() -> DomainError:
    return DomainError(
        ErrorCode.idempotency_conflict, "This idempotency key was already used with other data; use a new key."
    )
