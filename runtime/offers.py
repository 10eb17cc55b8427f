"""Offers, slot references and holds: the one module that writes, reads and checks them.

Used alike by the calendar worker (records the offers of a fetch_free_slots answer; reads other
conversations' holds as busy), the chat service (reads the live offers it lets the model pick
from; holds the one slot a proposal names while the user decides) and the booking worker
(reads a slot reference with `offered_ref` and resolves it with `start_of_ref`; its write
scripts check the offer and the holds through lua/offers.lua, the Lua side of this module). Who
owns which key: docs/decisions/key-ownership.md.
Just over 300 lines because it is the one owner: the key layout, its parsing and the request
objects of its three scripts stay together, so a change to the layout is one file (and its Lua).

Offers: one hash per conversation (`TenantKeys.offers`), so any chat replica or worker can check it:
- `<calendar_id>|<start epoch>` -> expiry (epoch s): the field the booking scripts check;
- `ref|<ref>` -> `<start epoch>|<duration s>|<calendar ids, comma-separated>`: a short reference
  ("s3") the model may book by instead of copying the start; the same slot keeps its reference
  when it is offered again in the conversation (`at|<calendar ids>|<start epoch>` -> ref);
- `#refs`: the counter behind the references.
A reference expires with its offer: its `<calendar_id>|<start>` field says until when.

Holds (`Calendar.hold_seconds`, 0 = off, the default): while the assistant's proposal of one slot
awaits the user's yes, the chat holds it for that conversation; fetch_free_slots then shows it
busy to every other conversation, and the booking scripts refuse it to them, until the hold
expires or its holder books it. A calendar's holds live in one sorted set (`TenantKeys.holds`):
score = start, member = `end|conversation|expires` (epoch s). Overlap is checked on intervals,
so a hold also blocks a longer or shifted slot that would overlap it; placing a hold is atomic
(like SET NX PX on the interval), and expired members are removed whenever a script passes them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, cast

from redis.asyncio import Redis

from runtime.redis import as_text
from runtime.scripts import Direct, Key, Keys, Runner, Script, ScriptRequest
from shared.domain import CalendarSummary
from shared.keys import TenantKeys
from shared.messages import DomainError, ErrorCode

LUA = Path(__file__).with_name("lua")
LOOKBACK_S = 2 * 86_400
"""No slot lasts longer than this: holds starting this long before a window may still touch it."""


def offer_field(calendar_id: str, start: int) -> str:
    """The field whose value is the expiry of offering `start` of one calendar."""
    return f"{calendar_id}|{start}"


@dataclass(frozen=True, slots=True)
class Offered:
    """One slot offered in the conversation, as stored under its reference."""

    ref: str
    start: int
    duration_s: int
    calendar_ids: tuple[str, ...]


def _parse_ref(ref: str, raw: bytes | str) -> Offered:
    start, duration, calendars = as_text(raw).split("|", 2)
    return Offered(ref, int(start), int(duration), tuple(calendars.split(",")))


def live_offers(fields: Mapping[bytes, bytes], now: int) -> list[Offered]:
    """The conversation's offers (its hash read whole) that have not expired, by reference."""
    offers = []
    for name, value in fields.items():
        if name.startswith(b"ref|"):
            offered = _parse_ref(as_text(name[4:]), value)
            expires = fields.get(offer_field(offered.calendar_ids[0], offered.start).encode())
            if expires is not None and int(expires) >= now:
                offers.append(offered)
    return offers


def start_of_ref(raw: bytes | str | None, calendar_id: str, ref: str, start: datetime | None) -> datetime:
    """The start (UTC) of the slot offered under `ref` for `calendar_id`, from the field recorded
    under it (`<start epoch>|<duration s>|<calendar ids>`, read by lua/offers.lua's offered_ref).

    slot_not_offered when the conversation never had that reference or it was offered for
    other calendars; invalid_arguments when a start is given too and names another time.
    Whether the offer has expired is checked where it is written (the booking scripts)."""
    if raw is None:
        raise DomainError(
            ErrorCode.slot_not_offered,
            f"No slot {ref} was offered in this conversation; call fetch_free_slots and use one of its slots.",
        )
    offered = _parse_ref(ref, raw)
    if calendar_id not in offered.calendar_ids:
        raise DomainError(
            ErrorCode.slot_not_offered,
            f"Slot {ref} was offered for another calendar; use a slot offered for {calendar_id}.",
        )
    resolved = datetime.fromtimestamp(offered.start, UTC)
    if start is not None and start != resolved:
        raise DomainError(
            ErrorCode.invalid_arguments,
            f"Slot {ref} does not start at {start.isoformat()}; give the ref alone (start null) or its exact start.",
        )
    return resolved


def _spans(text: bytes | str) -> list[tuple[int, int]]:
    """ "s e s e ..." as intervals."""
    edges = [int(v) for v in text.split()]
    return list(zip(edges[::2], edges[1::2], strict=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOffers(ScriptRequest):
    """lua/record_offers.lua: the slots of one answer recorded as offers, with their references."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "record_offers.lua")
    offers: Key
    expires: int
    key_expires: int
    calendars: str
    duration: int
    starts: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceHold(ScriptRequest):
    """lua/hold.lua: one conversation's hold on a slot of several calendars, all or none."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "hold.lua")
    holds: Keys
    start: int
    ends: int
    conversation: str
    now: int
    expires: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldSpans(ScriptRequest):
    """lua/held_spans.lua: other conversations' live holds starting in [lo, hi), per calendar."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "held_spans.lua")
    holds: Keys
    lo: int
    hi: int
    conversation: str
    now: int


class SlotHolds:
    """The offers and holds of conversations, read and written through one runner (`Direct`
    by default; the booking worker passes its auto-pipeline, so its reads share round trips)."""

    def __init__(self, redis: Redis, runner: Runner | None = None) -> None:
        self.redis = redis
        self.run = runner or Direct(redis)

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
        `duration_s` long) until expires_at, in one atomic step; the slots' references, in order."""
        if not starts:
            return []
        refs = await self.run.script(
            RecordOffers(
                offers=TenantKeys(tenant_id).offers(conversation_id),
                expires=expires_at,
                key_expires=expires_at + 3600,
                calendars=",".join(calendar_ids),
                duration=duration_s,
                starts=tuple(starts),
            )
        )
        return [as_text(r) for r in refs]

    async def offers(self, tenant_id: str, conversation_id: str) -> list[Offered]:
        """The conversation's live offers."""
        key = TenantKeys(tenant_id).offers(conversation_id)
        fields = await self.run.call(lambda p: p.hgetall(key))
        return live_offers(cast(dict[bytes, bytes], fields), int(time.time()))  # a bytes-mode client

    async def hold(
        self,
        tenant_id: str,
        conversation_id: str,
        calendars: Sequence[CalendarSummary],
        start: int,
        duration_s: int,
    ) -> bool:
        """Hold [start, start + duration) on the calendars that hold slots, for the longest of
        their hold times; False when off or another conversation holds an overlapping slot."""
        holding = [c for c in calendars if c.hold_seconds]
        if not holding:
            return False
        keys = TenantKeys(tenant_id)
        now = int(time.time())
        held = await self.run.script(
            PlaceHold(
                holds=tuple(keys.holds(c.calendar_id) for c in holding),
                start=start,
                ends=start + duration_s,
                conversation=conversation_id,
                now=now,
                expires=now + max(c.hold_seconds for c in holding),
            )
        )
        return bool(held)

    async def held(
        self,
        tenant_id: str,
        calendar_ids: Sequence[str],
        window: tuple[int, int],
        conversation_id: str,
        now: int,
    ) -> list[list[tuple[int, int]]]:
        """Per calendar, the live holds of other conversations that may touch the window."""
        keys = TenantKeys(tenant_id)
        texts = await self.run.script(
            HeldSpans(
                holds=tuple(keys.holds(i) for i in calendar_ids),
                lo=window[0] - LOOKBACK_S,
                hi=window[1],
                conversation=conversation_id,
                now=now,
            )
        )
        return [_spans(t) for t in texts]
