"""Data for booking tests and benchmarks: roomy calendars, offered slots, command envelopes,
raw publishing and a reply collector. Everything goes through the real store and streams."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from runtime.redis import StreamRows
from services.calendar.store import CalendarStore
from shared import streams
from shared.domain import Calendar, TimeRange
from shared.messages import Envelope, MessageType, Reply

TENANT = "demo"
SLOT = timedelta(minutes=5)
SLOTS_PER_DAY = 287
"""00:00-23:55 on a 5-minute grid."""


def room(calendar_id: str, tenant_id: str = TENANT) -> Calendar:
    """A calendar open 00:00-23:55 every day in UTC with 5-minute slots and no notice period:
    287 slots a day, so thousands of distinct slots for load tests."""
    hours = [TimeRange.model_validate({"start": "00:00", "end": "23:55"})]
    return Calendar(
        calendar_id=calendar_id,
        tenant_id=tenant_id,
        name=f"Room {calendar_id}",
        timezone="UTC",
        weekly_hours={d: hours for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        slot_minutes=5,
        granularity_minutes=5,
        min_notice_minutes=0,
        horizon_days=60,
    )


async def put_rooms(redis: Redis, count: int, tenant_id: str = TENANT, prefix: str = "room") -> list[str]:
    """Store `count` rooms; returns their ids."""
    store = CalendarStore(redis)
    ids = [f"{prefix}-{i:02d}" for i in range(count)]
    for calendar_id in ids:
        await store.put(room(calendar_id, tenant_id))
    return ids


def first_slot(days_ahead: int = 1) -> datetime:
    """Midnight UTC `days_ahead` days from now: the first 5-minute slot of that day."""
    return (datetime.now(UTC) + timedelta(days=days_ahead)).replace(hour=0, minute=0, second=0, microsecond=0)


def slot_at(index: int, calendars: Sequence[str], days_ahead: int = 1) -> tuple[str, datetime]:
    """The index-th distinct (calendar, start), spread across calendars, then days."""
    calendar_id = calendars[index % len(calendars)]
    rest = index // len(calendars)
    day, slot = divmod(rest, SLOTS_PER_DAY)
    return calendar_id, first_slot(days_ahead + day) + slot * SLOT


async def offer(
    redis: Redis, conversation_id: str, slots: Iterable[tuple[str, datetime]], tenant_id: str = TENANT
) -> list[str]:
    """Record slots as offered in a conversation, as fetch_free_slots does; their refs."""
    store, refs = CalendarStore(redis), []
    for calendar_id, start in slots:
        refs += await store.offers.record_offers(
            tenant_id, conversation_id, [calendar_id], [int(start.timestamp())], 30 * 60, int(time.time()) + 3600
        )
    return refs


def command(
    kind: MessageType,
    payload: dict[str, Any],
    *,
    user: str,
    conversation: str,
    reply_to: str,
    key: str | None = None,
    tenant_id: str = TENANT,
) -> Envelope:
    """One envelope as the chat service sends it (the key defaults to a fresh one)."""
    return Envelope(
        idempotency_key=key or f"{conversation}:{uuid.uuid4().hex}",
        correlation_id=f"call_{uuid.uuid4().hex[:12]}",
        tenant_id=tenant_id,
        conversation_id=conversation,
        user_id=user,
        type=kind,
        payload=payload,
        reply_to=reply_to,
    )


def book_payload(
    calendar_id: str, start: datetime, name: str = "Guest", participants: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "calendar_id": calendar_id,
        "start": start.isoformat(),
        "duration_minutes": None,
        "attendee_name": name,
        "participants": list(participants),
    }


def cancel_payload(calendar_id: str, start: datetime) -> dict[str, Any]:
    return {"calendar_id": calendar_id, "start": start.isoformat()}


def reschedule_payload(calendar_id: str, start: datetime, new_start: datetime) -> dict[str, Any]:
    return {"calendar_id": calendar_id, "start": start.isoformat(), "new_start": new_start.isoformat()}


def stream_partitions() -> int:
    """P of the system under test: STREAM_PARTITIONS in the environment, as its Settings read it."""
    return int(os.environ.get("STREAM_PARTITIONS", "1"))


async def publish(
    redis: Redis, envelopes: Sequence[Envelope], stream: str = streams.BOOKING_COMMANDS, partitions: int | None = None
) -> None:
    """XADD each envelope as raw JSON (`__data__`) on its tenant's partition of `stream`
    (`partitions`: stream_partitions() unless given), in one pipelined round trip."""
    count = stream_partitions() if partitions is None else partitions
    pipe = redis.pipeline(transaction=False)
    for envelope in envelopes:
        pipe.xadd(
            streams.partition_of(stream, envelope.tenant_id, count), {streams.DATA_FIELD: envelope.model_dump_json()}
        )
    await pipe.execute()


async def add_and_take(redis: Redis, envelope: Envelope, consumer: str, group: str = streams.BOOKING_GROUP) -> bool:
    """XADD the envelope on its partition of booking.commands and XREADGROUP it as `consumer`
    in one MULTI, so that no live worker's blocked read takes it first (a worker that read it
    and died); whether it was taken. On a cluster the transaction goes to the stream's master
    through a plain client: redis-py 8.1's cluster transactions cannot carry XREADGROUP (they
    look its keys up over a connection of a private event loop)."""
    stream = streams.partition_of(streams.BOOKING_COMMANDS, envelope.tenant_id, stream_partitions())
    client = redis
    if isinstance(redis, RedisCluster):
        node = redis.get_node_from_key(stream)
        client = Redis(host=node.host, port=node.port)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.xadd(stream, {streams.DATA_FIELD: envelope.model_dump_json()})
        pipe.xreadgroup(group, consumer, {stream: ">"}, count=1)
        _, taken = await pipe.execute()
    finally:
        if client is not redis:
            await client.aclose()
    return bool(taken)


class Replies:
    """Collects the replies that arrive on one reply stream, by message id (a message delivered
    twice may be answered twice)."""

    def __init__(self, redis: Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self.by_message: dict[str, list[Reply]] = defaultdict(list)
        self._last = "0-0"

    async def poll(self, block_ms: int = 100) -> None:
        rows = cast(
            StreamRows,
            await self.redis.xread({self.stream: self._last}, count=5_000, block=block_ms),
        )
        for _, entries in rows:
            for entry_id, fields in entries:
                self._last = entry_id.decode()
                reply = Reply.model_validate(json.loads(fields[streams.DATA_FIELD.encode()]))
                self.by_message[reply.message_id].append(reply)

    async def wait_for(self, message_ids: Iterable[str], timeout_s: float) -> set[str]:
        """Poll until every id has a reply or the time is up; returns the ids still unanswered."""
        wanted = set(message_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            missing = wanted - self.by_message.keys()
            if not missing or time.monotonic() > deadline:
                return missing
            await self.poll()

    def first(self, message_id: str) -> Reply:
        return self.by_message[message_id][0]


async def stream_entries(redis: Redis, stream: str) -> list[dict[str, Any]]:
    """Every entry of a stream (events, dead letters) as parsed JSON."""
    rows = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))
    return [json.loads(fields[streams.DATA_FIELD.encode()]) for _, fields in rows]


async def settle(
    redis: Redis, group: str = streams.BOOKING_GROUP, timeout_s: float = 20.0, partitions: int | None = None
) -> int:
    """Wait until the group has nothing pending on any partition; returns what is still pending."""
    names = streams.partitions(streams.BOOKING_COMMANDS, stream_partitions() if partitions is None else partitions)
    deadline = time.monotonic() + timeout_s
    while True:
        pending = sum([int((await redis.xpending(name, group))["pending"]) for name in names])
        if pending == 0 or time.monotonic() > deadline:
            return pending
        await asyncio.sleep(0.1)
