"""Redis reads and writes of calendars, their busy time and the offers made in a conversation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from services.calendar.slots import Interval
from shared.domain import Calendar
from shared.keys import TenantKeys
from shared.redis import as_text

LUA = Path(__file__).with_name("lua")
LOOKBACK_S = 2 * 86_400
"""Busy sets are indexed by start and no entry lasts longer than this (bookings are short,
imported blocks are cut into days), so a window query reaches back this far."""
EXPIRED_S = 3 * 86_400
"""Imported blocks starting this long before an import are dropped by it: no query sees them."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of an idempotent write: created (applied now), replayed (stored answer) or conflict."""

    status: str
    payload: str


class CalendarStore:
    """Calendars, busy sets and offers of every tenant, in one Redis."""

    def __init__(self, redis: Redis, idempotency_ttl_s: int = 48 * 3600) -> None:
        self.redis = redis
        self.ttl = idempotency_ttl_s
        self._upsert = redis.register_script((LUA / "upsert_calendar.lua").read_text())
        self._import = redis.register_script((LUA / "import_busy.lua").read_text())
        self._spans = redis.register_script((LUA / "busy_spans.lua").read_text())
        self._offer = redis.register_script((LUA / "record_offers.lua").read_text())
        self._held = redis.register_script((LUA / "held_spans.lua").read_text())

    async def get(self, tenant_id: str, calendar_id: str) -> Calendar | None:
        """One calendar, or None when the tenant has no such calendar."""
        raw = await self.redis.get(TenantKeys(tenant_id).calendar(calendar_id))
        return None if raw is None else Calendar.model_validate_json(raw)

    async def many(self, tenant_id: str, calendar_ids: Sequence[str]) -> list[Calendar | None]:
        """Several calendars in one round trip, None where missing."""
        keys = TenantKeys(tenant_id)
        raws = await self.redis.mget([keys.calendar(i) for i in calendar_ids])
        return [None if r is None else Calendar.model_validate_json(r) for r in raws]

    async def all(self, tenant_id: str) -> list[Calendar]:
        """The tenant's calendars, by id."""
        keys = TenantKeys(tenant_id)
        ids = sorted(as_text(m) for m in await self.redis.smembers(keys.calendars()))
        if not ids:
            return []
        return [c for c in await self.many(tenant_id, ids) if c is not None]

    async def put(self, calendar: Calendar, *, only_if_new: bool = False) -> bool:
        """Store a calendar (seeding; admin writes use `upsert`). Returns whether it was written."""
        keys = TenantKeys(calendar.tenant_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.calendar(calendar.calendar_id), calendar.model_dump_json(), nx=only_if_new)
        pipe.sadd(keys.calendars(), calendar.calendar_id)
        stored, _ = await pipe.execute()
        return bool(stored)

    async def stored_result(self, tenant_id: str, key: str) -> tuple[str, str] | None:
        """(fingerprint, result json) stored under an idempotency key, if any."""
        fp, result = await self.redis.hmget(TenantKeys(tenant_id).idempotency(key), ["fp", "result"])
        return None if fp is None else (as_text(fp), as_text(result or b""))

    async def upsert(
        self, key: str, fingerprint: str, calendar: Calendar, if_created: str, if_replaced: str
    ) -> WriteResult:
        """Create or replace a calendar once per idempotency key; the result json depends on
        whether the calendar existed."""
        keys = TenantKeys(calendar.tenant_id)
        out = await self._upsert(
            keys=[keys.idempotency(key), keys.calendar(calendar.calendar_id), keys.calendars()],
            args=[fingerprint, calendar.model_dump_json(), calendar.calendar_id, self.ttl, if_created, if_replaced],
        )
        return _result(out)

    async def replace_external(
        self,
        key: str,
        fingerprint: str,
        tenant_id: str,
        calendar_id: str,
        source: str,
        blocks: Iterable[Interval],
        result_json: str,
        now: int,
    ) -> WriteResult:
        """Replace one source's imported busy blocks once per idempotency key."""
        keys = TenantKeys(tenant_id)
        flat: list[int] = [edge for block in blocks for edge in block]
        out = await self._import(
            keys=[keys.idempotency(key), keys.external_busy(calendar_id)],
            args=[fingerprint, result_json, self.ttl, source, now - EXPIRED_S, *flat],
        )
        return _result(out)

    async def busy(self, tenant_id: str, calendar_id: str, window: Interval) -> tuple[list[Interval], list[Interval]]:
        """Core intervals of bookings and external busy blocks that may touch the window."""
        (both,) = await self.busy_many(tenant_id, [calendar_id], window)
        return both

    async def busy_many(
        self, tenant_id: str, calendar_ids: Sequence[str], window: Interval
    ) -> list[tuple[list[Interval], list[Interval]]]:
        """`busy` of several calendars in one round trip: (bookings, external) per calendar.

        A read-only script returns each set as one compact string: parsing thousands of
        WITHSCORES pairs in redis-py costs more than the engine's whole sweep.
        """
        keys = TenantKeys(tenant_id)
        names = [k for i in calendar_ids for k in (keys.calendar_bookings(i), keys.external_busy(i))]
        texts = await self._spans(keys=names, args=[window[0] - LOOKBACK_S, window[1]])
        sets = [_pairs(t) for t in texts]
        return [(sets[i], sets[i + 1]) for i in range(0, len(sets), 2)]

    async def held(
        self, tenant_id: str, calendar_ids: Sequence[str], window: Interval, conversation_id: str, now: int
    ) -> list[list[Interval]]:
        """Per calendar, the live holds of other conversations that may touch the window."""
        keys = TenantKeys(tenant_id)
        texts = await self._held(
            keys=[keys.holds(i) for i in calendar_ids], args=[window[0] - LOOKBACK_S, window[1], conversation_id, now]
        )
        return [_pairs(t) for t in texts]

    async def record_offers(
        self,
        tenant_id: str,
        conversation_id: str,
        calendar_ids: Sequence[str],
        starts: Sequence[int],
        duration_s: int,
        expires_at: int,
    ) -> list[str]:
        """Remember that this conversation was offered `starts` (common to `calendar_ids`, each
        `duration_s` long) until expires_at, in one atomic step; the slots' short references, in
        order (shared/offers.py)."""
        if not starts:
            return []
        refs = await self._offer(
            keys=[TenantKeys(tenant_id).offers(conversation_id)],
            args=[expires_at, expires_at + 3600, ",".join(calendar_ids), duration_s, *starts],
        )
        return [as_text(r) for r in refs]


def _result(out: Any) -> WriteResult:
    status, payload = out
    return WriteResult(as_text(status), as_text(payload))


def _pairs(text: bytes | str) -> list[Interval]:
    """ "s e s e ..." as intervals."""
    edges = [int(v) for v in text.split()]
    return list(zip(edges[::2], edges[1::2], strict=True))


def load_calendars(path: Path) -> list[Calendar]:
    """Calendars from a JSON file: a list of Calendar objects."""
    return [Calendar.model_validate(item) for item in json.loads(path.read_text())]
