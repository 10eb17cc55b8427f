"""The chat's tool hop next to a bare Redis Streams round trip, measured in the same run.

Run: .venv/bin/python -m bench.tool_hop [--requests 2000] [--redis-url URL]

* tool hop: the chat service's ToolBus publishes a `list_my_bookings` envelope, a real
  `python -m services.booking` process answers, the ToolBus reply reader resolves the future;
* raw: plain redis-py, one request at a time: XADD -> (echo process: XREADGROUP, XADD reply,
  XACK) -> XREAD of the reply.
Both run one request at a time against the same (private, by default) Redis. Goal (issue 16):
the tool hop within 2x the raw round trip at p50 (it was 4.7-4.9x with FastStream's subscriber).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import cast

from redis.asyncio import Redis

from runtime.redis import connect, ensure_groups
from services.chat.toolbus import ToolBus
from shared.messages import Envelope
from testkit.booking_data import book_payload, first_slot, offer, publish, put_rooms
from testkit.redis_server import private_redis
from testkit.worker_processes import ROOT, WorkerProcess

ECHO_STREAM = "bench.echo"
ECHO_GROUP = "echo"
GOAL_RATIO = 2.0


async def echo(url: str) -> None:
    """The raw path's worker: answer each entry on the stream its `reply` field names."""
    redis = Redis.from_url(url)
    while True:
        rows = cast(
            list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
            await redis.xreadgroup(ECHO_GROUP, "echo-1", {ECHO_STREAM: ">"}, count=100, block=1_000),
        )
        for _, entries in rows:
            pipe = redis.pipeline(transaction=False)
            for _, fields in entries:
                pipe.xadd(fields[b"reply"], {b"id": fields[b"id"]})
            pipe.xack(ECHO_STREAM, ECHO_GROUP, *(entry_id for entry_id, _ in entries))
            await pipe.execute()


async def raw_round_trips(redis: Redis, count: int) -> list[float]:
    reply = f"bench.echo.reply.{uuid.uuid4().hex[:6]}"
    last = "0-0"
    out = []
    for i in range(count):
        began = time.perf_counter()
        await redis.xadd(ECHO_STREAM, {b"id": str(i), b"reply": reply})
        while True:
            rows = cast(
                list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                await redis.xread({reply: last}, count=10, block=1_000),
            )
            if rows:
                last = rows[0][1][-1][0].decode()
                break
        out.append((time.perf_counter() - began) * 1000)
    return out


async def hop_round_trips(bus: ToolBus, count: int) -> list[float]:
    out = []
    for i in range(count):
        envelope = Envelope(
            idempotency_key=f"bench:{uuid.uuid4().hex}",
            correlation_id=f"call_{i}",
            tenant_id="demo",
            conversation_id="conv-bench",
            user_id="bench-user",
            type="list_my_bookings",
            payload={"include_past": False},
            reply_to=bus.reply_to,
        )
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
    # the user has three upcoming bookings to list
    (room,) = await put_rooms(redis, 1, prefix="bench")
    starts = [first_slot(1 + i) for i in range(3)]
    await offer(redis, "conv-bench", [(room, s) for s in starts])
    echo_proc = subprocess.Popen([sys.executable, "-m", "bench.tool_hop", "--echo", url], cwd=ROOT)  # noqa: ASYNC220
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
            await publish(redis, [envelope])
        await hop_round_trips(bus, 200)  # warm up both paths
        await raw_round_trips(redis, 200)
        raw: list[float] = []
        hop: list[float] = []
        for _ in range(4):  # interleaved, so both see the same machine load
            raw += await raw_round_trips(redis, requests // 4)
            hop += await hop_round_trips(bus, requests // 4)
    finally:
        await bus.stop()
        await chat_redis.aclose()
        worker.stop()
        echo_proc.terminate()
        echo_proc.wait(5)
        await redis.flushdb()
        await redis.aclose()
    print(f"\none request at a time, {len(raw)} each (ms); 1-min load {os.getloadavg()[0]:.1f}")
    print(f"{'path':<44} | {'p50':>6} | {'p99':>6}")
    print(f"{'-' * 44}-+-{'-' * 6}-+-{'-' * 6}")
    print(f"{'raw redis-py XADD>XREADGROUP>XADD>XREAD':<44} | {pct(raw, 0.5):>6.2f} | {pct(raw, 0.99):>6.2f}")
    print(f"{'ToolBus list_my_bookings via booking worker':<44} | {pct(hop, 0.5):>6.2f} | {pct(hop, 0.99):>6.2f}")
    ratio = pct(hop, 0.5) / pct(raw, 0.5)
    print(f"ratio at p50: {ratio:.1f}x (goal <= {GOAL_RATIO:.0f}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=None, help="an empty database to use instead of a private server")
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--echo", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(echo(args.echo))
        return 0
    with private_redis(args.redis_url) as url:
        return asyncio.run(run(url, args.requests))


if __name__ == "__main__":
    raise SystemExit(main())
