"""The slots offered in one conversation: recorded by the calendar worker, checked by the
booking worker (atomically, in its Lua scripts) and by the chat's confirmation gate.

One hash per conversation (`TenantKeys.offers`), so any chat replica or worker can check it:
- `<calendar_id>|<start epoch>` -> expiry (epoch s): the field the booking scripts check;
- `ref|<ref>` -> `<start epoch>|<duration s>|<calendar ids, comma-separated>`: a short reference ("s3") the
  model may book by instead of copying the start; the same slot keeps its reference when it is
  offered again in the conversation (`at|<calendar ids>|<start epoch>` -> ref);
- `#refs`: the counter behind the references.
A reference expires with its offer: its `<calendar_id>|<start>` field says until when.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import StringConstraints
from redis.asyncio import Redis

from shared.keys import TenantKeys
from shared.messages import DomainError, ErrorCode
from shared.redis import as_text

REF_PATTERN: Final = r"^s[1-9][0-9]{0,5}$"
REF_IN_TEXT: Final = re.compile(r"\bs[1-9][0-9]{0,5}\b")
"""A reference written into prose: the leak guard strips it from what the user reads."""


SlotRef = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
"""A slot reference as fetch_free_slots gives it: "s" and a number, unique in the conversation."""


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


def ref_field(ref: str) -> str:
    """The field holding `<start epoch>|<duration s>|<calendar ids>` of a reference."""
    return f"ref|{ref}"


def start_of_ref(raw: bytes | str | None, calendar_id: str, ref: str, start: datetime | None) -> datetime:
    """The start (UTC) of the slot offered under `ref` for `calendar_id`, from its `ref_field` value.

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


async def resolve_ref(
    redis: Redis, tenant_id: str, conversation_id: str, calendar_id: str, ref: str, start: datetime | None
) -> datetime:
    """`start_of_ref` for a reference read from Redis."""
    raw = await redis.hget(TenantKeys(tenant_id).offers(conversation_id), ref_field(ref))
    return start_of_ref(raw, calendar_id, ref, start)
