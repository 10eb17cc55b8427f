"""Bookings in Redis. Every write is one Lua script: the check and the write are one atomic step.

Commands go through an AutoPipeline: the handlers of one stream batch share their round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from services.booking.pipeline import AutoPipeline, LuaScript
from shared.domain import Booking, Calendar
from shared.holds import with_holds
from shared.keys import TenantKeys
from shared.offers import offer_field, ref_field
from shared.redis import as_text

LUA = Path(__file__).with_name("lua")
LOOKBACK_S = 2 * 86_400
"""No booking or imported busy block lasts longer than this: reads by start reach back this far."""
MAX_SPAN_S = (480 + 240 + 240) * 60
"""The longest slot plus both buffers: busy blocks starting later cannot touch a slot."""
CALENDAR_CACHE = 1_000
DEADLINE_LUA = """
-- true when a command's deadline (epoch ms, 0 = none) has passed by the Redis server's clock
local function past_deadline(deadline)
  deadline = tonumber(deadline)
  if not deadline or deadline == 0 then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= deadline
end
"""


def write_script(name: str) -> str:
    """A write script with the helpers it calls (holds, deadline) defined before it."""
    return DEADLINE_LUA + with_holds((LUA / name).read_text())


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """A write script's answer, or a stored one (see the scripts' headers)."""

    status: str
    """created | replayed | existing | conflict | expired | slot_taken | daily_limit | changed | not_offered |
    offer_expired"""
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
        self._prefetch = LuaScript((LUA / "prefetch.lua").read_text())
        self._book = LuaScript(write_script("book.lua"))
        self._cancel = LuaScript(write_script("cancel.lua"))
        self._reschedule = LuaScript(write_script("reschedule.lua"))
        self._calendars: dict[bytes, Calendar] = {}

    async def load_scripts(self) -> None:
        """Load the scripts up front, so the first batch does not pay a NOSCRIPT round trip."""
        for script in (self._prefetch, self._book, self._cancel, self._reschedule):
            await self.redis.script_load(script.source)

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

    async def offered_ref(self, tenant_id: str, conversation_id: str, ref: str) -> bytes | None:
        """The stored value of a slot reference of the conversation (shared/offers.py), batched."""
        key = TenantKeys(tenant_id).offers(conversation_id)
        raw: bytes | None = await self.auto.call(lambda p: p.hget(key, ref_field(ref)))
        return raw

    async def prefetch(self, tenant_id: str, key: str, calendar_id: str, around: int | None) -> Prefetched:
        """The key's stored result, the calendar and (with `around`) the external busy blocks
        that may touch a slot starting at `around`: one read-only script in the shared round trip."""
        keys = TenantKeys(tenant_id)
        window: list[str | int] = ["", ""] if around is None else [around - LOOKBACK_S, around + MAX_SPAN_S]
        stored, raw_calendar, rows = await self.auto.script(
            self._prefetch, [keys.idempotency(key), keys.calendar(calendar_id), keys.external_busy(calendar_id)], window
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
        )

    async def calendar(self, tenant_id: str, calendar_id: str) -> Calendar | None:
        raw = await self.auto.call(lambda p: p.get(TenantKeys(tenant_id).calendar(calendar_id)))
        return self._parse_calendar(raw)

    async def user_bookings(self, tenant_id: str, user_id: str, lo: int | None, hi: int | None) -> list[Owned]:
        """The user's bookings starting in [lo, hi] (None = unbounded), by start."""
        keys = TenantKeys(tenant_id)
        ids: list[bytes] = await self.auto.call(
            lambda p: p.zrangebyscore(
                keys.user_bookings(user_id), "-inf" if lo is None else lo, "+inf" if hi is None else hi
            )
        )
        if not ids:
            return []
        raws: list[bytes | None] = await self.auto.call(lambda p: p.mget([keys.booking(as_text(i)) for i in ids]))
        return [Owned(Booking.model_validate_json(r), as_text(r)) for r in raws if r is not None]

    async def book(
        self,
        key: str,
        fingerprint: str,
        booking: Booking,
        booking_json: str,
        result_json: str,
        calendar: Calendar,
        day: tuple[int, int],
        conversation_id: str,
        now: int,
        meta: str,
        attempt: str,
        deadline_ms: int = 0,
    ) -> ScriptResult:
        keys = TenantKeys(booking.tenant_id)
        start, end = int(booking.start.timestamp()), int(booking.end.timestamp())
        out = await self.auto.script(
            self._book,
            keys=[
                keys.idempotency(key),
                keys.calendar_bookings(booking.calendar_id),
                keys.booking(booking.booking_id),
                keys.user_bookings(booking.user_id),
                keys.offers(conversation_id),
                keys.holds(booking.calendar_id),
            ],
            args=[
                fingerprint,
                result_json,
                start,
                end,
                calendar.buffer_before_minutes * 60,
                calendar.buffer_after_minutes * 60,
                self.ttl,
                booking.booking_id,
                booking.user_id,
                booking_json,
                keys.booking(""),
                calendar.max_bookings_per_day or 0,
                day[0],
                day[1],
                offer_field(booking.calendar_id, start),
                now,
                meta,
                attempt,
                conversation_id,
                deadline_ms,
            ],
        )
        return _result(out)

    async def cancel(
        self,
        key: str,
        fingerprint: str,
        current: Owned,
        cancelled: Booking,
        result_json: str,
        meta: str,
        attempt: str,
        deadline_ms: int = 0,
    ) -> ScriptResult:
        booking = current.booking
        keys = TenantKeys(booking.tenant_id)
        out = await self.auto.script(
            self._cancel,
            keys=[
                keys.idempotency(key),
                keys.calendar_bookings(booking.calendar_id),
                keys.booking(booking.booking_id),
                keys.user_bookings(booking.user_id),
                TenantKeys(booking.tenant_id).booking_revision(booking.booking_id),
            ],
            args=[
                fingerprint,
                result_json,
                busy_member(booking),
                self.ttl,
                current.raw,
                cancelled.model_dump_json(),
                booking.booking_id,
                meta,
                attempt,
                deadline_ms,
            ],
        )
        return _result(out)

    async def reschedule(
        self,
        key: str,
        fingerprint: str,
        current: Owned,
        moved: Booking,
        result_json: str,
        calendar: Calendar,
        day: tuple[int, int],
        conversation_id: str,
        now: int,
        meta: str,
        attempt: str,
        deadline_ms: int = 0,
    ) -> ScriptResult:
        booking = current.booking
        keys = TenantKeys(booking.tenant_id)
        start = int(moved.start.timestamp())
        out = await self.auto.script(
            self._reschedule,
            keys=[
                keys.idempotency(key),
                keys.calendar_bookings(booking.calendar_id),
                keys.booking(booking.booking_id),
                keys.user_bookings(booking.user_id),
                keys.offers(conversation_id),
                TenantKeys(booking.tenant_id).booking_revision(booking.booking_id),
                keys.holds(booking.calendar_id),
            ],
            args=[
                fingerprint,
                result_json,
                busy_member(booking),
                start,
                int(moved.end.timestamp()),
                calendar.buffer_before_minutes * 60,
                calendar.buffer_after_minutes * 60,
                self.ttl,
                current.raw,
                moved.model_dump_json(),
                booking.booking_id,
                booking.user_id,
                calendar.max_bookings_per_day or 0,
                day[0],
                day[1],
                offer_field(moved.calendar_id, start),
                now,
                meta,
                attempt,
                conversation_id,
                deadline_ms,
            ],
        )
        return _result(out)


def busy_member(booking: Booking) -> str:
    """The booking's member in its calendar's busy set: `end|booking_id|user_id`."""
    return f"{int(booking.end.timestamp())}|{booking.booking_id}|{booking.user_id}"


def _result(out: Sequence[Any]) -> ScriptResult:
    status, payload, meta, sequence = out
    return ScriptResult(as_text(status), as_text(payload or b""), as_text(meta or b""), int(sequence or 0))
