"""fetch_free_slots round trips over Redis through a real calendar worker process.

Run: .venv/bin/python -m bench.calendar_roundtrip [--callers 10] [--requests 100] [--redis-url URL]

Starts `python -m services.calendar` (one process, or `--workers N`), seeds calendars with
bookings and an imported .ics, then `--callers` concurrent callers each send `--requests`
fetch_free_slots messages through the chat service's ToolBus (XADD -> worker -> reply stream)
and wait for each reply before the next. Prints p50/p99 latency and requests per second per
scenario, and the time of one import_ics. By default a private `redis-server` (no persistence)
runs on a free loopback port, so no test run on the shared server can flush data mid-run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from runtime.redis import ensure_groups
from services.calendar.store import CalendarStore
from services.chat.toolbus import ToolBus
from shared.domain import BusyImported, Calendar, FreeSlots, TimeRange
from shared.keys import TenantKeys
from shared.messages import Envelope, MessageType
from testkit.redis_server import private_redis
from testkit.worker_processes import WorkerProcess

TENANT = "bench"
ZONES = ("Europe/Berlin", "America/New_York", "Europe/London")
CALENDARS = 3
BOOKINGS_PER_CALENDAR = 600
ICS_EVENTS = 300


def calendar(index: int) -> Calendar:
    hours = [
        TimeRange.model_validate({"start": "08:00", "end": "12:00"}),
        TimeRange.model_validate({"start": "13:00", "end": "18:00"}),
    ]
    return Calendar(
        calendar_id=f"cal-{index}",
        tenant_id=TENANT,
        name=f"Calendar {index}",
        timezone=ZONES[index % len(ZONES)],
        weekly_hours={d: hours for d in ("mon", "tue", "wed", "thu", "fri")},
        slot_minutes=30,
        granularity_minutes=15,
        buffer_after_minutes=10,
        min_notice_minutes=60,
        horizon_days=60,
    )


def ics_text(rng: random.Random, first: date, events: int) -> str:
    """A calendar file of `events` one-hour events, a tenth of them weekly series."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bench//EN"]
    for i in range(events):
        start = datetime.combine(first + timedelta(days=rng.randrange(30)), datetime.min.time()) + timedelta(
            hours=rng.randrange(7, 18)
        )
        lines += [
            "BEGIN:VEVENT",
            f"UID:bench-{i}@example.com",
            "SUMMARY:Private",
            f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%dT%H%M%S}",
            f"DTEND;TZID=Europe/Berlin:{start + timedelta(hours=1):%Y%m%dT%H%M%S}",
            *(["RRULE:FREQ=WEEKLY;COUNT=8"] if i % 10 == 0 else []),
            "END:VEVENT",
        ]
    return "\r\n".join([*lines, "END:VCALENDAR", ""])


async def seed(redis: Redis, rng: random.Random, first: date) -> None:
    """Calendars and their bookings, written straight to the store (the worker only reads them)."""
    store = CalendarStore(redis)
    for i in range(CALENDARS):
        cal = calendar(i)
        await store.put(cal)
        pipe = redis.pipeline(transaction=False)
        for n in range(BOOKINGS_PER_CALENDAR):
            day = first + timedelta(days=rng.randrange(30))
            start = datetime.combine(day, datetime.min.time(), tzinfo=cal.zone) + timedelta(
                minutes=rng.randrange(32, 72) * 15
            )
            s = int(start.timestamp())
            pipe.zadd(TenantKeys(TENANT).calendar_bookings(cal.calendar_id), {f"{s + 1800}|bk{n}|bench": s})
        await pipe.execute()


def envelope(bus: ToolBus, kind: MessageType, payload: dict[str, Any], conversation: str) -> Envelope:
    return Envelope(
        idempotency_key=uuid.uuid4().hex,
        correlation_id=f"call_{uuid.uuid4().hex[:8]}",
        tenant_id=TENANT,
        conversation_id=conversation,
        user_id="bench",
        type=kind,
        payload=payload,
        reply_to=bus.reply_to,
    )


async def caller(bus: ToolBus, rng: random.Random, first: date, ids: int, days: int, count: int) -> list[float]:
    """`count` fetches one after another; returns each round trip in milliseconds."""
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    samples = []
    for _ in range(count):
        day = first + timedelta(days=rng.randrange(20))
        payload = {
            "calendar_ids": [f"cal-{i}" for i in rng.sample(range(CALENDARS), ids)],
            "date_from": day.isoformat(),
            "date_to": (day + timedelta(days=days - 1)).isoformat(),
            "duration_minutes": 30,
            "timezone": None,
        }
        t0 = time.perf_counter()
        reply = await bus.request(envelope(bus, "fetch_free_slots", payload, conversation), 10)
        samples.append((time.perf_counter() - t0) * 1000)
        if reply.error is not None:
            raise RuntimeError(f"fetch failed: {reply.error}")
        FreeSlots.model_validate(reply.result)
    return samples


async def scenario(
    bus: ToolBus, first: date, callers: int, requests: int, ids: int, days: int
) -> tuple[float, float, float]:
    """p50 ms, p99 ms and requests/s of `callers` concurrent callers."""
    rngs = [random.Random(i) for i in range(callers)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(caller(bus, r, first, ids, days, requests) for r in rngs))
    elapsed = time.perf_counter() - t0
    samples = sorted(s for batch in results for s in batch)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples), p99, len(samples) / elapsed


async def run(url: str, workers: int, callers: int, requests: int) -> None:
    rng = random.Random(11)
    first = date.today() + timedelta(days=3)
    redis = Redis.from_url(url)
    await redis.flushdb()
    await ensure_groups(redis)
    await seed(redis, rng, first)
    procs = [WorkerProcess("services.calendar", url, f"bench-calendar-{i}").start() for i in range(workers)]
    bus = ToolBus(redis, f"bench-{uuid.uuid4().hex[:6]}", block_ms=500)
    try:
        await asyncio.gather(*(p.ready() for p in procs))
        await bus.start()
        text = ics_text(rng, first, ICS_EVENTS)
        t0 = time.perf_counter()
        reply = await bus.request(
            envelope(bus, "import_ics", {"calendar_id": "cal-0", "ics": text, "source": "bench"}, "admin"), 60
        )
        import_ms = (time.perf_counter() - t0) * 1000
        if reply.error is not None:
            raise RuntimeError(f"import failed: {reply.error}")
        blocks = BusyImported.model_validate(reply.result).busy_blocks
        await scenario(bus, first, callers, 10, 1, 1)  # warm-up
        print(
            f"calendar round trip: {workers} worker process(es), {callers} concurrent callers x {requests} requests, "
            f"{CALENDARS} calendars x {BOOKINGS_PER_CALENDAR} bookings"
        )
        print(f"{'scenario':<34} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        for name, ids, days in (
            ("1 calendar, 1 day", 1, 1),
            ("1 calendar, 7 days", 1, 7),
            ("2 calendars intersected, 7 days", 2, 7),
            ("3 calendars intersected, 30 days", 3, 30),
        ):
            p50, p99, rate = await scenario(bus, first, callers, requests, ids, days)
            print(f"{name:<34} {p50:>8.2f} {p99:>8.2f} {rate:>8.0f}")
        print(
            f"import_ics of {len(text) // 1024} KiB ({ICS_EVENTS} events -> {blocks} busy blocks): {import_ms:.0f} ms"
        )
    finally:
        await bus.stop()
        for p in procs:
            p.stop()
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=10)
    parser.add_argument("--requests", type=int, default=100, help="per caller and scenario")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", default=None, help="an empty database to use (it is flushed)")
    args = parser.parse_args()
    with private_redis(args.redis_url) as url:
        asyncio.run(run(url, args.workers, args.callers, args.requests))


if __name__ == "__main__":
    main()
