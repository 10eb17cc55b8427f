"""Redis reads and writes of calendars, their busy time and the offers made in a conversation."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis

from services.calendar.slots import Interval
from shared.domain import Calendar
from shared.keys import TenantKeys
from shared.redis import as_text

LOOKBACK_S = 2 * 86_400
"""Bookings are indexed by start; one never lasts longer than this, so a window query reaches back this far."""


class CalendarStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def get(self, tenant_id: str, calendar_id: str) -> Calendar | None:
        raw = await self.redis.get(TenantKeys(tenant_id).calendar(calendar_id))
        return None if raw is None else Calendar.model_validate_json(raw)

    async def all(self, tenant_id: str) -> list[Calendar]:
        keys = TenantKeys(tenant_id)
        ids = sorted(as_text(m) for m in await self.redis.smembers(keys.calendars()))
        if not ids:
            return []
        raws = await self.redis.mget([keys.calendar(i) for i in ids])
        return [Calendar.model_validate_json(r) for r in raws if r is not None]

    async def put(self, calendar: Calendar, *, only_if_new: bool = False) -> bool:
        keys = TenantKeys(calendar.tenant_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.calendar(calendar.calendar_id), calendar.model_dump_json(), nx=only_if_new)
        pipe.sadd(keys.calendars(), calendar.calendar_id)
        stored, _ = await pipe.execute()
        return bool(stored)

    async def busy(self, tenant_id: str, calendar_id: str, window: Interval) -> tuple[list[Interval], list[Interval]]:
        """Core intervals of bookings and external busy blocks that may touch the window."""
        keys = TenantKeys(tenant_id)
        pipe = self.redis.pipeline(transaction=False)
        for key in (keys.calendar_bookings(calendar_id), keys.external_busy(calendar_id)):
            pipe.zrangebyscore(key, window[0] - LOOKBACK_S, window[1], withscores=True)
        bookings, external = await pipe.execute()
        return _intervals(bookings), _intervals(external)

    async def record_offers(
        self, tenant_id: str, conversation_id: str, offers: Iterable[tuple[str, int]], expires_at: int
    ) -> None:
        """Remember which (calendar, start) pairs this conversation was offered, until expires_at."""
        key = TenantKeys(tenant_id).offers(conversation_id)
        mapping = {f"{calendar_id}|{start}": expires_at for calendar_id, start in offers}
        if not mapping:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=cast(dict[Any, Any], mapping))
        pipe.expireat(key, expires_at + 3600)
        await pipe.execute()


def _intervals(rows: list[tuple[bytes, float]]) -> list[Interval]:
    """Busy-set rows (member `end|...`, score = start) as intervals."""
    return [(int(score), int(member.split(b"|", 1)[0])) for member, score in rows]


def load_calendars(path: Path) -> list[Calendar]:
    """Calendars from a JSON file: a list of Calendar objects."""
    return [Calendar.model_validate(item) for item in json.loads(path.read_text())]
