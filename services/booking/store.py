"""Bookings in Redis. Every write is one Lua script: the check and the write are one atomic step.

Commands go through an AutoPipeline: the handlers of one stream batch share their round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from runtime.offers import SlotHolds
from runtime.redis import as_text
from services.booking.pipeline import AutoPipeline
from services.booking.scripts import (
    BookRequest,
    CancelRequest,
    ListRequest,
    Prefetch,
    RescheduleRequest,
    StoreInvitation,
    WriteOnce,
)
from shared.domain import Booking, BookingStatus, Calendar
from shared.keys import TenantKeys

LOOKBACK_S = 2 * 86_400
"""No booking or imported busy block lasts longer than this: reads by start reach back this far."""
MAX_SPAN_S = (480 + 240 + 240) * 60
"""The longest slot plus both buffers: busy blocks starting later cannot touch a slot."""
CALENDAR_CACHE = 1_000


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """A write script's answer, or a stored one (see the scripts' headers)."""

    status: str
    """created | replayed | existing | conflict | expired | slot_taken | held | daily_limit | changed |
    not_offered | offer_expired"""
    payload: str
    meta: str = ""
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Stored:
    """What an idempotency key holds: the request's fingerprint and its first result."""

    fingerprint: str
    result: ScriptResult


@dataclass(frozen=True, slots=True)
class Prefetched:
    """Everything a command reads before its write, fetched in one round trip."""

    stored: Stored | None
    calendar: Calendar | None
    external: list[tuple[int, int]]
    offer: bytes | None = None
    """The offer the command's reference names, as recorded (`runtime.offers.start_of_ref` reads it)."""


@dataclass(frozen=True, slots=True)
class Owned:
    """One of a user's bookings, with its JSON exactly as stored (the compare-and-set operand)."""

    booking: Booking
    raw: str


class BookingStore:
    def __init__(self, redis: Redis, idempotency_ttl_s: int) -> None:
        self.redis = redis
        self.ttl = idempotency_ttl_s
        self.auto = AutoPipeline(redis)
        self.offers = SlotHolds(redis, self.auto)
        """The conversations' offers, read through the shared round trips."""
        self._calendars: dict[bytes, Calendar] = {}

    async def load_scripts(self) -> None:
        """Load the scripts up front, so the first batch does not pay a NOSCRIPT round trip."""
        for request in (Prefetch, ListRequest, BookRequest, CancelRequest, RescheduleRequest, StoreInvitation):
            await request.SCRIPT.preload(self.redis)

    def _parse_calendar(self, raw: bytes | None) -> Calendar | None:
        """Calendars are re-read on every command (an admin may change them) but parsed once
        per distinct JSON: the model is frozen, so a cached instance is safe to share."""
        if raw is None:
            return None
        calendar = self._calendars.get(raw)
        if calendar is None:
            if len(self._calendars) >= CALENDAR_CACHE:
                self._calendars.clear()
            calendar = self._calendars[raw] = Calendar.model_validate_json(raw)
        return calendar

    async def prefetch(
        self, tenant_id: str, key: str, calendar_id: str, conversation_id: str, *, ref: str | None, start: int | None
    ) -> Prefetched:
        """What a command reads before its write, in one read-only script in the shared round
        trip: the key's stored result, the calendar, the offer `ref` names in the conversation
        (when given), and the external busy blocks that may touch a slot starting at the offered
        start (with `ref`) or at `start` (without; None: no slot is checked)."""
        keys = TenantKeys(tenant_id)
        stored, raw_calendar, rows, offer = await self.auto.script(
            Prefetch(
                idempotency=keys.idempotency(key),
                calendar=keys.calendar(calendar_id),
                external=keys.external_busy(calendar_id),
                offers=keys.offers(conversation_id),
                ref="" if ref is None else ref,
                start="" if start is None else start,
                before_s=LOOKBACK_S,
                after_s=MAX_SPAN_S,
            )
        )
        fp, result, meta, seq = stored
        return Prefetched(
            stored=None
            if fp is None
            else Stored(
                as_text(fp),
                ScriptResult("replayed", as_text(result or b""), as_text(meta or b""), int(seq or 0)),
            ),
            calendar=self._parse_calendar(raw_calendar),
            external=[(int(rows[i + 1]), int(rows[i].split(b"|", 1)[0])) for i in range(0, len(rows), 2)],
            offer=offer or None,
        )

    async def calendar(self, tenant_id: str, calendar_id: str) -> Calendar | None:
        raw = await self.auto.call(lambda p: p.get(TenantKeys(tenant_id).calendar(calendar_id)))
        return self._parse_calendar(raw)

    async def user_bookings(self, tenant_id: str, user_id: str, lo: int | None, hi: int | None) -> list[Owned]:
        """The user's bookings starting in [lo, hi] (None = unbounded), by start: one read, and a
        second only for bookings written before the user's docs hash was kept (their own keys)."""
        keys = TenantKeys(tenant_id)
        ids, docs = await self.auto.script(
            ListRequest(
                user_bookings=keys.user_bookings(user_id),
                user_docs=keys.user_booking_docs(user_id),
                lo="-inf" if lo is None else lo,
                hi="+inf" if hi is None else hi,
            )
        )
        raws: list[bytes | None] = list(docs)
        missing = [i for i, raw in enumerate(raws) if raw is None]
        if missing:
            # MGET as a plain command: a cluster pipeline refuses its `mget` method (one tenant: one slot)
            found = await self.auto.call(
                lambda p: p.execute_command("MGET", *(keys.booking(as_text(ids[i])) for i in missing))
            )
            for i, raw in zip(missing, found, strict=True):
                raws[i] = raw
        return [Owned(Booking.model_validate_json(r), as_text(r)) for r in raws if r is not None]

    async def write(self, request: WriteOnce) -> ScriptResult:
        """One booking write (book, cancel or reschedule): its script's checks and write, in one
        atomic step, in the shared round trip."""
        result = _result(await self.auto.script(request))
        if result.status == "existing" and isinstance(request, BookRequest):
            return await self._existing(request, result.payload)
        return result

    async def _existing(self, request: BookRequest, booking_id: str) -> ScriptResult:
        """book.lua found the caller's own booking of the slot and names it by id (a script
        reads only its KEYS): its JSON, or `changed` when it moved or went meanwhile."""
        raw = await self.auto.call(lambda p: p.get(request.other_booking(booking_id)))
        if raw is not None:
            booking = Booking.model_validate_json(raw)
            if booking.status is BookingStatus.confirmed and int(booking.start.timestamp()) == request.start:
                return ScriptResult("existing", as_text(raw))
        return ScriptResult("changed", "")


def _result(out: Sequence[Any]) -> ScriptResult:
    status, payload, meta, sequence = out
    return ScriptResult(as_text(status), as_text(payload or b""), as_text(meta or b""), int(sequence or 0))
