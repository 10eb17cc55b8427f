"""Bookings in Redis. Every write is one Lua script: the check and the write are one atomic step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from redis.asyncio import Redis

from shared.domain import Booking, Calendar
from shared.keys import TenantKeys
from shared.redis import as_text

LUA = Path(__file__).with_name("lua")
LOOKBACK_S = 2 * 86_400
"""No booking lasts longer than this: the conflict scan reaches back this far."""


@dataclass(frozen=True, slots=True)
class ScriptResult:
    status: str
    """created | replayed | existing | conflict | slot_taken | daily_limit | changed | not_offered | offer_expired"""
    payload: str


def busy_member(booking: Booking) -> str:
    return f"{int(booking.end.timestamp())}|{booking.booking_id}|{booking.user_id}"


class BookingStore:
    def __init__(self, redis: Redis, idempotency_ttl_s: int) -> None:
        self.redis = redis
        self.ttl = idempotency_ttl_s
        self._book = redis.register_script((LUA / "book.lua").read_text())
        self._cancel = redis.register_script((LUA / "cancel.lua").read_text())
        self._reschedule = redis.register_script((LUA / "reschedule.lua").read_text())

    async def calendar(self, tenant_id: str, calendar_id: str) -> Calendar | None:
        raw = await self.redis.get(TenantKeys(tenant_id).calendar(calendar_id))
        return None if raw is None else Calendar.model_validate_json(raw)

    async def booking(self, tenant_id: str, booking_id: str) -> Booking | None:
        raw = await self.redis.get(TenantKeys(tenant_id).booking(booking_id))
        return None if raw is None else Booking.model_validate_json(raw)

    async def user_bookings(self, tenant_id: str, user_id: str, since: int | None) -> list[Booking]:
        keys = TenantKeys(tenant_id)
        ids = cast(
            list[bytes],
            await self.redis.zrangebyscore(keys.user_bookings(user_id), "-inf" if since is None else since, "+inf"),
        )
        if not ids:
            return []
        raws = await self.redis.mget([keys.booking(as_text(i)) for i in ids])
        return [Booking.model_validate_json(r) for r in raws if r is not None]

    async def stored_result(self, tenant_id: str, key: str) -> tuple[str, str] | None:
        """(fingerprint, result json) stored under an idempotency key, if any."""
        fp, result = await self.redis.hmget(TenantKeys(tenant_id).idempotency(key), ["fp", "result"])
        return None if fp is None else (as_text(fp), as_text(result or b""))

    async def external_busy(self, tenant_id: str, calendar_id: str, lo: int, hi: int) -> list[tuple[int, int]]:
        rows = cast(
            list[tuple[bytes, float]],
            await self.redis.zrangebyscore(
                TenantKeys(tenant_id).external_busy(calendar_id), lo - LOOKBACK_S, hi, withscores=True
            ),
        )
        return [(int(score), int(member.split(b"|", 1)[0])) for member, score in rows]

    async def book(
        self,
        key: str,
        fingerprint: str,
        booking: Booking,
        result_json: str,
        calendar: Calendar,
        day: tuple[int, int],
        conversation_id: str,
        now: int,
    ) -> ScriptResult:
        keys = TenantKeys(booking.tenant_id)
        out = await self._book(
            keys=[
                keys.idempotency(key),
                keys.calendar_bookings(booking.calendar_id),
                keys.booking(booking.booking_id),
                keys.user_bookings(booking.user_id),
                keys.offers(conversation_id),
            ],
            args=[
                fingerprint,
                result_json,
                int(booking.start.timestamp()),
                int(booking.end.timestamp()),
                calendar.buffer_before_minutes * 60,
                calendar.buffer_after_minutes * 60,
                LOOKBACK_S,
                self.ttl,
                booking.booking_id,
                booking.user_id,
                booking.model_dump_json(),
                keys.booking(""),
                calendar.max_bookings_per_day or 0,
                day[0],
                day[1],
                f"{booking.calendar_id}|{int(booking.start.timestamp())}",
                now,
            ],
        )
        return _result(out)

    async def cancel(
        self, key: str, fingerprint: str, current: Booking, cancelled: Booking, result_json: str
    ) -> ScriptResult:
        keys = TenantKeys(current.tenant_id)
        out = await self._cancel(
            keys=[
                keys.idempotency(key),
                keys.calendar_bookings(current.calendar_id),
                keys.booking(current.booking_id),
                keys.user_bookings(current.user_id),
            ],
            args=[
                fingerprint,
                result_json,
                busy_member(current),
                self.ttl,
                current.model_dump_json(),
                cancelled.model_dump_json(),
                current.booking_id,
            ],
        )
        return _result(out)

    async def reschedule(
        self,
        key: str,
        fingerprint: str,
        current: Booking,
        moved: Booking,
        result_json: str,
        calendar: Calendar,
        day: tuple[int, int],
        conversation_id: str,
        now: int,
    ) -> ScriptResult:
        keys = TenantKeys(current.tenant_id)
        out = await self._reschedule(
            keys=[
                keys.idempotency(key),
                keys.calendar_bookings(current.calendar_id),
                keys.booking(current.booking_id),
                keys.user_bookings(current.user_id),
                keys.offers(conversation_id),
            ],
            args=[
                fingerprint,
                result_json,
                busy_member(current),
                int(moved.start.timestamp()),
                int(moved.end.timestamp()),
                calendar.buffer_before_minutes * 60,
                calendar.buffer_after_minutes * 60,
                LOOKBACK_S,
                self.ttl,
                current.model_dump_json(),
                moved.model_dump_json(),
                current.booking_id,
                current.user_id,
                calendar.max_bookings_per_day or 0,
                day[0],
                day[1],
                f"{moved.calendar_id}|{int(moved.start.timestamp())}",
                now,
            ],
        )
        return _result(out)


def _result(out: list[bytes]) -> ScriptResult:
    status, payload = out
    return ScriptResult(status.decode(), (payload or b"").decode())
