"""Redis reads and writes of calendars and their busy time (offers and holds: runtime/offers.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from redis.asyncio import Redis

from runtime.offers import SlotHolds
from runtime.redis import as_text, transaction
from runtime.scripts import Direct, Key, Keys, Script, ScriptRequest
from shared.domain import Calendar
from shared.keys import TenantKeys
from shared.slots import Interval

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


@dataclass(frozen=True, slots=True, kw_only=True)
class UpsertCalendar(ScriptRequest):
    """lua/upsert_calendar.lua: a calendar created or replaced once per idempotency key."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "upsert_calendar.lua")
    idempotency: Key
    calendar: Key
    calendars: Key
    fingerprint: str
    calendar_json: str
    calendar_id: str
    ttl_s: int
    if_created: str
    if_replaced: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportBusy(ScriptRequest):
    """lua/import_busy.lua: one source's imported busy blocks replaced once per idempotency key."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "import_busy.lua")
    idempotency: Key
    external: Key
    fingerprint: str
    result: str
    ttl_s: int
    source: str
    drop_before: int
    blocks: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BusySpans(ScriptRequest):
    """lua/busy_spans.lua: the intervals of several busy sets starting in [lo, hi)."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "busy_spans.lua")
    busy: Keys
    lo: int
    hi: int


class CalendarStore:
    """Calendars and busy sets of every tenant, in one Redis; `offers`, their offers and holds."""

    def __init__(self, redis: Redis, idempotency_ttl_s: int = 48 * 3600) -> None:
        self.redis = redis
        self.ttl = idempotency_ttl_s
        self.run = Direct(redis)
        self.offers = SlotHolds(redis, self.run)

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
        pipe = await transaction(self.redis)
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
        out = await self.run.script(
            UpsertCalendar(
                idempotency=keys.idempotency(key),
                calendar=keys.calendar(calendar.calendar_id),
                calendars=keys.calendars(),
                fingerprint=fingerprint,
                calendar_json=calendar.model_dump_json(),
                calendar_id=calendar.calendar_id,
                ttl_s=self.ttl,
                if_created=if_created,
                if_replaced=if_replaced,
            )
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
        out = await self.run.script(
            ImportBusy(
                idempotency=keys.idempotency(key),
                external=keys.external_busy(calendar_id),
                fingerprint=fingerprint,
                result=result_json,
                ttl_s=self.ttl,
                source=source,
                drop_before=now - EXPIRED_S,
                blocks=tuple(edge for block in blocks for edge in block),
            )
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
        texts = await self.run.script(BusySpans(busy=tuple(names), lo=window[0] - LOOKBACK_S, hi=window[1]))
        sets = [_pairs(t) for t in texts]
        return [(sets[i], sets[i + 1]) for i in range(0, len(sets), 2)]


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
