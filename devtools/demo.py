"""A scripted booking conversation through the chat HTTP API, printed turn by turn.

    python -m devtools.demo [--chat-url http://127.0.0.1:8000] [--user alice]

The user asks when Dr. Lee is free on the next weekday, picks one of the offered slots, answers
the confirmation question (the response's `pending_action`) with yes, and the demo then reads
the booking back from Redis. It speaks only HTTP to the chat service (as any client would) and reads Redis only to
show that the booking is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel

from runtime.redis import as_text, connect
from shared.domain import Booking
from shared.keys import TenantKeys
from shared.settings import Settings

CALENDAR_ID = "dr-lee"
CALENDAR_NAME = "Dr. Lee"
CALENDAR_ZONE = ZoneInfo("Europe/Berlin")
USER_NAME = "Alice Smith"
CONFIRMATIONS = 2
"""How often the user says yes to the slot before the demo gives up (a second yes answers an
assistant that asked once more)."""

Print = Callable[[str], None]


class PendingWrite(BaseModel):
    """The write waiting for the user's yes (services.chat.approvals.PendingAction), as a client reads it."""

    action_id: str
    start: datetime
    question: str


class ChatReply(BaseModel):
    """The chat API's answer (services.chat.api.ChatResponse), as a client reads it."""

    reply: str
    bookings: list[Booking]
    suggested_slots: list[datetime]
    pending_action: PendingWrite | None = None


@dataclass(frozen=True)
class TurnRecord:
    user: str
    reply: ChatReply
    seconds: float


@dataclass
class DemoResult:
    """What happened: the turns, the slot the user chose and the booking found in Redis."""

    conversation_id: str
    turns: list[TurnRecord] = field(default_factory=list)
    chosen: datetime | None = None
    stored: Booking | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.stored is not None

    @property
    def offered(self) -> list[datetime]:
        return [s for t in self.turns for s in t.reply.suggested_slots]


def next_weekday(now: datetime, zone: ZoneInfo = CALENDAR_ZONE) -> date:
    """The first Monday-Friday after today in `zone`."""
    day = now.astimezone(zone).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def spoken_day(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B}"


def clock(moment: datetime, zone: ZoneInfo = CALENDAR_ZONE) -> str:
    return f"{moment.astimezone(zone):%H:%M}"


def pick_slot(reply: ChatReply, index: int = 0) -> datetime | None:
    """The `index`-th offered slot (wrapping), as the user sees them listed."""
    offered = reply.suggested_slots
    return offered[index % len(offered)] if offered else None


class ChatClient:
    """One user in one conversation, over the chat's HTTP API."""

    def __init__(self, http: httpx.AsyncClient, conversation_id: str, user_id: str, api_key: str | None) -> None:
        self.http = http
        self.conversation_id = conversation_id
        self.headers = {"X-User-Id": user_id}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    async def say(self, text: str) -> TurnRecord:
        started = time.perf_counter()
        response = await self.http.post(
            f"/v1/conversations/{self.conversation_id}/messages",
            json={"text": text},
            headers=self.headers,
        )
        response.raise_for_status()
        return TurnRecord(text, ChatReply.model_validate(response.json()), time.perf_counter() - started)


async def stored_booking(redis_url: str, tenant: str, user_id: str, start: datetime) -> Booking | None:
    """The user's Dr. Lee booking at `start`, read straight from Redis."""
    keys = TenantKeys(tenant)
    redis = connect(redis_url)
    try:
        ids = cast(list[bytes], await redis.zrange(keys.user_bookings(user_id), 0, -1))
        raws = await redis.mget([keys.booking(as_text(i)) for i in ids]) if ids else []
    finally:
        await redis.aclose()
    bookings = [Booking.model_validate_json(r) for r in raws if r is not None]
    return next((b for b in bookings if b.calendar_id == CALENDAR_ID and b.start == start), None)


async def run_demo(
    http: httpx.AsyncClient,
    redis_url: str,
    *,
    tenant: str = "demo",
    api_key: str | None = None,
    user_id: str = "alice",
    conversation_id: str | None = None,
    day: date | None = None,
    slot_index: int = 0,
    echo: Print = print,
) -> DemoResult:
    """Ask, pick, confirm, verify; every turn is echoed as it happens. Without `api_key` the
    chat serves its default tenant, which `tenant` must then name."""
    result = DemoResult(conversation_id or f"demo-{uuid.uuid4().hex[:8]}")
    chat = ChatClient(http, result.conversation_id, user_id, api_key)
    day = day or next_weekday(datetime.now(CALENDAR_ZONE))

    async def turn(text: str) -> ChatReply:
        echo(f"user      > {text}")
        record = await chat.say(text)
        result.turns.append(record)
        echo(f"assistant > {record.reply.reply}   ({record.seconds:.1f} s)")
        if record.reply.suggested_slots:
            echo("offered   : " + " ".join(clock(s) for s in record.reply.suggested_slots))
        return record.reply

    first = await turn(f"Hi, I'm {USER_NAME}. When is {CALENDAR_NAME} free on {spoken_day(day)}?")
    slot = first.pending_action.start if first.pending_action else pick_slot(first, slot_index)
    if slot is None:
        result.problem = "the assistant offered no slot"
        return result
    result.chosen = slot
    last = first
    if last.pending_action is None:  # the user picks one of the offered times
        last = await turn(f"{clock(slot)} suits me, please book it for {USER_NAME}.")
    for _ in range(CONFIRMATIONS):  # the assistant asks to confirm exactly that slot: yes
        if any(b.start == slot for b in last.bookings):
            break
        if last.pending_action is not None:
            slot = result.chosen = last.pending_action.start
        last = await turn("Yes, please.")
    result.stored = await stored_booking(redis_url, tenant, user_id, slot)
    if result.stored is None:
        result.problem = f"no booking at {clock(slot)} was stored"
    return result


def report(result: DemoResult, echo: Print = print) -> None:
    if result.ok and result.stored is not None:
        b = result.stored
        echo(
            f"verified  : Redis holds booking {b.booking_id} for {b.attendee_name} with {CALENDAR_NAME} "
            f"on {b.start.astimezone(CALENDAR_ZONE):%a %d %b %H:%M} ({b.status.value})"
        )
    else:
        echo(f"not booked: {result.problem}")


async def _main(args: argparse.Namespace) -> int:
    settings = Settings()
    async with httpx.AsyncClient(base_url=args.chat_url, timeout=args.timeout) as http:
        result = await run_demo(http, args.redis_url or settings.redis_url, tenant=args.tenant, user_id=args.user)
    report(result)
    return 0 if result.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chat-url", default="http://127.0.0.1:8000")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per chat turn")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
