"""The chat's tool hop next to plain redis-py round trips, measured in the same run.

Run: .venv/bin/python -m bench.tool_hop [--requests 2000] [--redis-url URL]

Three paths, one request at a time, interleaved, against the same (private, by default) Redis:
* tool hop: the chat service's ToolBus publishes a `list_my_bookings` envelope, a real
  `python -m services.booking` process answers, the ToolBus reply reader resolves the future;
* plain, same Redis work (the floor, issue 16): plain redis-py XADD -> (a plain loop:
  XREADGROUP, `list.lua` by sha with the keys and arguments our worker would send, XADD of the
  reply with the script's documents spliced in, XACK) -> XREAD of the reply. No code of ours runs
  in the loop: the bench computed the script's keys and arguments when it built the entry;
* bare stream echo: plain redis-py XADD -> (echo: XREADGROUP, XADD reply, XACK) -> XREAD. It
  does one Redis round trip fewer than any tool call can (no read of the user's data), so it
  is a floor no worker can reach: shown for comparison with earlier runs.
Goal (issue 16): the tool hop within 2x the plain round trip doing the same Redis work, at p50
(it was 4.7-4.9x the bare echo with FastStream's subscriber).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import cast

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from bench.plain_booking import reply_around
from runtime.redis import StreamRows, connect, ensure_groups
from services.booking.scripts import ListRequest
from services.booking.store import LOOKBACK_S
from services.chat.toolbus import ToolBus
from shared.domain import BookingList
from shared.keys import TenantKeys
from shared.messages import Envelope, Reply
from testkit.booking_data import book_payload, first_slot, offer, put_rooms
from testkit.redis_server import private_redis
from testkit.worker_processes import ROOT, WorkerProcess

ECHO_STREAM = "bench.echo"
ECHO_GROUP = "echo"
PLAIN_STREAM = "bench.plain-list"
PLAIN_GROUP = "plain"
GOAL_RATIO = 2.0


async def echo(url: str) -> None:
    """The raw path's worker: answer each entry on the stream its `reply` field names."""
    redis = Redis.from_url(url)
    while True:
        rows = cast(
            StreamRows,
            await redis.xreadgroup(ECHO_GROUP, "echo-1", {ECHO_STREAM: ">"}, count=100, block=1_000),
        )
        for _, entries in rows:
            pipe = redis.pipeline(transaction=False)
            for _, fields in entries:
                pipe.xadd(fields[b"reply"], {b"id": fields[b"id"]})
            pipe.xack(ECHO_STREAM, ECHO_GROUP, *(entry_id for entry_id, _ in entries))
            await pipe.execute()


def plain_list_call(envelope: Envelope) -> str:
    """The `list.lua` keys and arguments our worker sends for this list_my_bookings envelope
    (include_past false), and the reply it writes around the result, as one JSON field."""
    keys = TenantKeys(envelope.tenant_id)
    request = ListRequest(
        user_bookings=keys.user_bookings(envelope.user_id),
        user_docs=keys.user_booking_docs(envelope.user_id),
        lo=int(time.time()) - LOOKBACK_S,
        hi="+inf",
    )
    head, tail = reply_around(envelope)
    return json.dumps({"keys": request.keys(), "args": request.argv(), "head": head, "tail": tail})


async def plain_list(url: str) -> None:
    """The same Redis work as the booking worker answering list_my_bookings, done plainly: per
    batch, `list.lua` by sha for each entry (one pipeline), then each reply, with the script's
    documents spliced in, and one XACK of the batch (a second pipeline)."""
    redis = Redis.from_url(url)
    await ListRequest.SCRIPT.preload(redis)
    while True:
        rows = cast(
            StreamRows,
            await redis.xreadgroup(PLAIN_GROUP, "plain-1", {PLAIN_STREAM: ">"}, count=100, block=1_000),
        )
        for _, entries in rows:
            calls = [json.loads(fields[b"call"]) for _, fields in entries]
            pipe = redis.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(ListRequest.SCRIPT.sha, len(call["keys"]), *call["keys"], *call["args"])
            results = await pipe.execute()
            pipe = redis.pipeline(transaction=False)
            for (_, fields), call, (_, docs) in zip(entries, calls, results, strict=True):
                listed = b'{"bookings":[' + b",".join(d for d in docs if d is not None) + b"]}"
                reply = call["head"].encode() + listed + call["tail"].encode()
                pipe.xadd(fields[b"reply"], {b"__data__": reply}, maxlen=10_000, approximate=True)
            pipe.xack(PLAIN_STREAM, PLAIN_GROUP, *(entry_id for entry_id, _ in entries))
            await pipe.execute()


async def raw_round_trips(redis: Redis, count: int, stream: str = ECHO_STREAM, call: str = "") -> list[float]:
    """One request at a time on `stream` (the echo's, or the plain loop's with its `call`)."""
    reply = f"bench.reply.{uuid.uuid4().hex[:6]}"
    last = "0-0"
    out = []
    for i in range(count):
        fields: dict[FieldT, EncodableT] = {b"id": str(i), b"reply": reply}
        if call:
            fields[b"call"] = call
        began = time.perf_counter()
        await redis.xadd(stream, fields)
        while True:
            rows = cast(
                StreamRows,
                await redis.xread({reply: last}, count=10, block=1_000),
            )
            if rows:
                last = rows[0][1][-1][0].decode()
                break
        out.append((time.perf_counter() - began) * 1000)
    return out


def list_envelope(reply_to: str, i: int) -> Envelope:
    return Envelope(
        idempotency_key=f"bench:{uuid.uuid4().hex}",
        correlation_id=f"call_{i}",
        tenant_id="demo",
        conversation_id="conv-bench",
        user_id="bench-user",
        type="list_my_bookings",
        payload={"include_past": False},
        reply_to=reply_to,
    )


async def plain_reply(redis: Redis, call: str) -> Reply:
    """One request to the plain loop, its reply parsed (to check it lists what the worker does)."""
    reply = f"bench.reply.{uuid.uuid4().hex[:6]}"
    await redis.xadd(PLAIN_STREAM, {b"id": "check", b"reply": reply, b"call": call})
    rows = cast(StreamRows, await redis.xread({reply: "0-0"}, block=5_000))
    return Reply.model_validate_json(rows[0][1][0][1][b"__data__"])


async def hop_round_trips(bus: ToolBus, count: int) -> list[float]:
    out = []
    for i in range(count):
        envelope = list_envelope(bus.reply_to, i)
        began = time.perf_counter()
        reply = await bus.request(envelope, 10)
        out.append((time.perf_counter() - began) * 1000)
        if reply.error is not None:
            raise RuntimeError(f"tool hop failed: {reply.error}")
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(url: str, requests: int) -> int:
    redis = Redis.from_url(url)
    if await redis.dbsize():
        print(f"{url} is not empty; give an empty database", file=sys.stderr)
        return 2
    await ensure_groups(redis)
    await redis.xgroup_create(ECHO_STREAM, ECHO_GROUP, id="0", mkstream=True)
    await redis.xgroup_create(PLAIN_STREAM, PLAIN_GROUP, id="0", mkstream=True)
    # the user has three upcoming bookings to list
    (room,) = await put_rooms(redis, 1, prefix="bench")
    starts = [first_slot(1 + i) for i in range(3)]
    await offer(redis, "conv-bench", [(room, s) for s in starts])
    echo_proc = subprocess.Popen([sys.executable, "-m", "bench.tool_hop", "--echo", url], cwd=ROOT)  # noqa: ASYNC220
    plain_proc = subprocess.Popen([sys.executable, "-m", "bench.tool_hop", "--plain", url], cwd=ROOT)  # noqa: ASYNC220
    worker = WorkerProcess("services.booking", url, f"bench-hop-{uuid.uuid4().hex[:6]}", BLOCK_MS=1_000).start()
    chat_redis = connect(url)  # what the chat uses
    bus = ToolBus(chat_redis, f"bench-chat-{uuid.uuid4().hex[:6]}", block_ms=1_000)
    try:
        await worker.ready()
        await bus.start()
        for start in starts:
            envelope = Envelope(
                idempotency_key=uuid.uuid4().hex,
                correlation_id="setup",
                tenant_id="demo",
                conversation_id="conv-bench",
                user_id="bench-user",
                type="book_meeting",
                payload=book_payload(room, start),
                reply_to=bus.reply_to,
            )
            booked = await bus.request(envelope, 10)
            if booked.error is not None:
                raise RuntimeError(f"setting up a booking failed: {booked.error}")
        call = plain_list_call(list_envelope("set by each request", 0))
        ours = await bus.request(list_envelope(bus.reply_to, 0), 10)
        if ours.result != (await plain_reply(redis, call)).result:
            raise RuntimeError("the plain loop does not list what the worker lists")
        listed = len(BookingList.model_validate(ours.result).bookings)
        await hop_round_trips(bus, 200)  # warm up every path
        await raw_round_trips(redis, 200)
        await raw_round_trips(redis, 200, PLAIN_STREAM, call)
        raw: list[float] = []
        plain: list[float] = []
        hop: list[float] = []
        for _ in range(4):  # interleaved, so all see the same machine load
            raw += await raw_round_trips(redis, requests // 4)
            plain += await raw_round_trips(redis, requests // 4, PLAIN_STREAM, call)
            hop += await hop_round_trips(bus, requests // 4)
    finally:
        await bus.stop()
        await chat_redis.aclose()
        worker.stop()
        for proc in (echo_proc, plain_proc):
            proc.terminate()
            proc.wait(5)
        await redis.flushdb()
        await redis.aclose()
    print(
        f"\none request at a time, {len(raw)} each (ms), listing {listed} bookings; 1-min load {os.getloadavg()[0]:.1f}"
    )
    rows = [
        ("bare stream echo (no data read)", raw),
        ("plain redis-py loop, same Redis work", plain),
        ("ToolBus list_my_bookings, booking worker", hop),
    ]
    print(f"{'path':<44} | {'p50':>6} | {'p99':>6}")
    print(f"{'-' * 44}-+-{'-' * 6}-+-{'-' * 6}")
    for name, values in rows:
        print(f"{name:<44} | {pct(values, 0.5):>6.2f} | {pct(values, 0.99):>6.2f}")
    ratio = pct(hop, 0.5) / pct(plain, 0.5)
    print(
        f"hop / plain loop doing the same Redis work, p50: {ratio:.2f}x "
        f"(goal <= {GOAL_RATIO:.0f}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'})"
    )
    print(f"hop / bare stream echo, p50: {pct(hop, 0.5) / pct(raw, 0.5):.2f}x (no goal: the echo reads no data)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=None, help="an empty database to use instead of a private server")
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--echo", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--plain", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(echo(args.echo))
        return 0
    if args.plain:
        asyncio.run(plain_list(args.plain))
        return 0
    with private_redis(args.redis_url) as url:
        return asyncio.run(run(url, args.requests))


if __name__ == "__main__":
    raise SystemExit(main())
