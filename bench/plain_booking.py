"""The floor of a booking worker: the same Redis work as ours, done by a plain redis-py loop.

Per batch: XREADGROUP COUNT 100, then `book.lua` by sha for each entry (one pipeline), then
for each entry an XADD of its reply and of its event, and one XACK of the batch (a second
pipeline). The script's keys and arguments were computed by the bench when it published the
entry (field `call`), so no code of ours runs here: what is left is redis-py's own cost.

`bench.booking_throughput` runs N of these processes (`python -m bench.plain_booking URL NAME`)
next to N booking workers in the same run and reports our figures as ratios to these.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis

from runtime.redis import StreamRows
from services.booking.scripts import BookRequest
from shared.domain import Booking, BookingOutcome, BookingStatus
from shared.keys import TenantKeys
from shared.messages import Envelope, Reply

PLAIN_STREAM = "bench.plain"
PLAIN_GROUP = "plain"
TTL_S = 48 * 3600
RESULT = "@RESULT@"


def reply_around(envelope: Envelope) -> tuple[str, str]:
    """The JSON our worker writes as the reply to `envelope`, before and after its result
    (`Reply.ok_json`), so a plain loop writes the same bytes with its script's result between."""
    head, tail = Reply.ok_json(envelope, RESULT).split(RESULT)
    return head, tail


def plain_call(envelope: Envelope, booking_id: str, now: int) -> str:
    """The `book.lua` keys and arguments our worker would send for this book_meeting command
    (on the bench's rooms: no buffers, no daily cap), with the reply and event JSON it would
    write, as one JSON field."""
    payload = envelope.payload
    start = datetime.fromisoformat(payload["start"])
    keys = TenantKeys(envelope.tenant_id)
    calendar_id = payload["calendar_id"]
    booking = Booking(
        booking_id=booking_id,
        tenant_id=envelope.tenant_id,
        calendar_id=calendar_id,
        user_id=envelope.user_id,
        attendee_name=payload["attendee_name"],
        participants=payload["participants"],
        start=start,
        end=start + timedelta(minutes=5),
        status=BookingStatus.confirmed,
        created_at=datetime.fromtimestamp(now).astimezone(),
    )
    outcome = BookingOutcome(status="confirmed", booking=booking).model_dump_json()
    meta = json.dumps({"message_id": envelope.message_id, "occurred_at": booking.created_at.isoformat()})
    s = int(start.timestamp())
    day = s - s % 86_400
    request = BookRequest(
        idempotency=keys.idempotency(envelope.idempotency_key),
        fingerprint=envelope.payload_fingerprint(),
        attempt=booking_id,
        deadline_ms=0,
        ttl_s=TTL_S,
        result=outcome,
        meta=meta,
        busy=keys.calendar_bookings(calendar_id),
        booking=keys.booking(booking_id),
        user_bookings=keys.user_bookings(envelope.user_id),
        user_docs=keys.user_booking_docs(envelope.user_id),
        offers=keys.offers(envelope.conversation_id),
        holds=keys.holds(calendar_id),
        calendar_id=calendar_id,
        start=s,
        ends=s + 300,
        buffer_before_s=0,
        buffer_after_s=0,
        daily_cap=0,
        day_start=day,
        day_end=day + 86_400,
        conversation=envelope.conversation_id,
        now=now,
        booking_id=booking_id,
        user_id=envelope.user_id,
        booking_json=booking.model_dump_json(),
    )
    head, tail = reply_around(envelope)
    call = {"keys": request.keys(), "args": request.argv(), "reply_to": envelope.reply_to, "head": head, "tail": tail}
    return json.dumps(call)


async def serve(url: str, consumer: str) -> None:
    """Consume PLAIN_STREAM until killed."""
    redis = Redis.from_url(url)
    await BookRequest.SCRIPT.preload(redis)
    while True:
        rows = cast(
            StreamRows,
            await redis.xreadgroup(PLAIN_GROUP, consumer, {PLAIN_STREAM: ">"}, count=100, block=100),
        )
        for _, entries in rows:
            calls: list[dict[str, Any]] = [json.loads(fields[b"call"]) for _, fields in entries]
            pipe = redis.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(BookRequest.SCRIPT.sha, len(call["keys"]), *call["keys"], *call["args"])
            results = await pipe.execute(raise_on_error=False)
            pipe = redis.pipeline(transaction=False)
            done = []
            for (entry_id, _), call, result in zip(entries, calls, results, strict=True):
                if isinstance(result, Exception):
                    continue
                reply = call["head"].encode() + result[1] + call["tail"].encode()
                pipe.xadd(call["reply_to"], {b"__data__": reply}, maxlen=10_000, approximate=True)
                pipe.xadd("bench.plain.events", {b"__data__": result[2]}, maxlen=100_000, approximate=True)
                done.append(entry_id)
            if done:
                pipe.xack(PLAIN_STREAM, PLAIN_GROUP, *done)
            await pipe.execute()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
