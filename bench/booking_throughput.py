"""Booking worker throughput and command -> reply latency with 1 and 2 worker processes
(over 300 lines: our workers and the plain redis-py floor must be driven the same way in one run).

Run: .venv/bin/python -m bench.booking_throughput [--commands 20000] [--rate 1000] [--workers 1,2]
     [--appendfsync everysec|always|no] [--redis-url URL]

Each run starts real `python -m services.booking` processes, then
  * throughput: publishes `--commands` book_meeting commands (distinct slots, each offered in its
    own conversation, one participant, so every booking also builds its .ics event) with
    pipelined XADDs, as fast as they go, and times the last reply;
  * latency: publishes at a steady `--rate` per second (below capacity) and measures each
    command's XADD -> reply-seen time.
It also prints the workers' CPU time per command, which other load on the machine hardly moves.
The .ics invitations process (its own consumer group, off the reply path) is paused during the
throughput run, since the plain loop has nothing beside it on the two cores, and catches up after
(`--render-during` keeps it running); its CPU per booking is printed either way.
By default a private `redis-server` (no persistence unless `--appendfsync`) runs on a free
loopback port, so no test run on the shared server can flush the data mid-run.

The floor, in the same run: for each worker count N, N plain redis-py processes
(`bench.plain_booking`: XREADGROUP COUNT 100, `book.lua` by sha per entry, XADD reply + event,
XACK per batch) move the same number of bookings; our throughput and CPU per command are
printed as ratios to theirs, so the machine's speed cancels out.
Goals (issue 16): >= 2,000 bookings/s with 2 workers on a 2-core machine; worker CPU per
booking <= 0.4 ms; 1 worker at >= 50% of the plain loop's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from bench import plain_booking
from runtime.redis import ensure_groups
from shared import streams
from shared.messages import Envelope
from testkit.booking_data import Replies as _Replies
from testkit.booking_data import book_payload, command, offer, publish, put_rooms, slot_at
from testkit.redis_server import private_redis
from testkit.worker_processes import ROOT, WorkerProcess

ROOMS = 20
GOAL_PER_S = 2_000
GOAL_CPU_US = 400
GOAL_SHARE_OF_PLAIN = 0.5


class Replies(_Replies):
    """Also records when each reply was seen."""

    def __init__(self, redis: Redis, stream: str) -> None:
        super().__init__(redis, stream)
        self.seen: dict[str, float] = {}

    async def poll(self, block_ms: int = 100) -> None:
        await super().poll(block_ms)
        now = time.perf_counter()
        for message_id in self.by_message.keys() - self.seen.keys():
            self.seen[message_id] = now


class Slots:
    """Hands out distinct (room, start) pairs from tomorrow on."""

    def __init__(self, rooms: list[str]) -> None:
        self.rooms = rooms
        self.taken = 0

    async def commands(self, redis: Redis, count: int, reply_to: str) -> list[Envelope]:
        out = []
        for _ in range(count):
            calendar_id, start = slot_at(self.taken, self.rooms)
            i = self.taken
            self.taken += 1
            conversation = f"conv-{uuid.uuid4().hex[:12]}"
            await offer(redis, conversation, [(calendar_id, start)])
            payload = book_payload(calendar_id, start, f"User {i}", [f"user{i}@example.com"])
            out.append(
                command("book_meeting", payload, user=f"user-{i % 500}", conversation=conversation, reply_to=reply_to)
            )
        return out


async def publish_all(redis: Redis, envelopes: list[Envelope], sent: dict[str, float], chunk: int = 500) -> None:
    for i in range(0, len(envelopes), chunk):
        part = envelopes[i : i + chunk]
        now = time.perf_counter()
        for envelope in part:
            sent[envelope.message_id] = now
        await publish(redis, part)


async def paced(redis: Redis, envelopes: list[Envelope], sent: dict[str, float], rate: float) -> None:
    """Publish at `rate` per second in 10 ms ticks."""
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    start = time.perf_counter()
    for n, i in enumerate(range(0, len(envelopes), per_tick)):
        delay = start + n * tick - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await publish_all(redis, envelopes[i : i + per_tick], sent)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    workers: int
    replies: int
    per_s: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    plain_per_s: float = float("nan")
    plain_cpu_us: float = float("nan")
    invitation_cpu_us: float = float("nan")


async def wait_all(replies: Replies, envelopes: list[Envelope], timeout_s: float) -> None:
    await replies.wait_for([e.message_id for e in envelopes], timeout_s)


def errors_of(replies: Replies) -> dict[str, int]:
    out: dict[str, int] = {}
    for answers in replies.by_message.values():
        error = answers[0].error
        if error is not None:
            out[error.code] = out.get(error.code, 0) + 1
    return out


async def plain_done(redis: Redis) -> bool:
    """Every entry of the plain stream read and acked (its reply and event stored)."""
    for info in await redis.xinfo_groups(plain_booking.PLAIN_STREAM):
        if info["name"] == plain_booking.PLAIN_GROUP.encode():
            return not info["pending"] and not info["lag"]
    return False


async def run_plain(url: str, processes: int, commands: int, slots: Slots) -> tuple[float, float]:
    """(bookings/s, CPU us per booking) of `processes` plain redis-py loops (bench.plain_booking)."""
    redis = Redis.from_url(url)
    now = int(time.time())
    envelopes = await slots.commands(redis, commands, f"replies:plain-{uuid.uuid4().hex[:6]}")
    calls = [plain_booking.plain_call(e, uuid.uuid4().hex, now) for e in envelopes]
    await redis.delete(plain_booking.PLAIN_STREAM)
    await redis.xgroup_create(plain_booking.PLAIN_STREAM, plain_booking.PLAIN_GROUP, id="0", mkstream=True)
    procs = [
        subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "bench.plain_booking", url, f"plain-{i}"], cwd=ROOT
        )
        for i in range(processes)
    ]
    try:
        await asyncio.sleep(1.0)  # started and blocked on XREADGROUP
        cpu_before = sum(cpu_seconds(p.pid) for p in procs)
        began = time.perf_counter()
        for i in range(0, len(calls), 500):
            pipe = redis.pipeline(transaction=False)
            for call in calls[i : i + 500]:
                pipe.xadd(plain_booking.PLAIN_STREAM, {b"call": call})
            await pipe.execute()
        give_up = time.monotonic() + 120
        while not await plain_done(redis):
            if time.monotonic() > give_up:
                raise RuntimeError("the plain loop did not finish its entries")
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - began
        cpu_us = (sum(cpu_seconds(p.pid) for p in procs) - cpu_before) / commands * 1e6
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)
        await redis.aclose()
    return commands / elapsed, cpu_us


def start_profile(pid: int, path: str) -> subprocess.Popen[bytes]:
    """py-spy (pip install py-spy) sampling one worker into a raw profile until interrupted."""
    py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", path, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def invitations_settled(redis: Redis, timeout_s: float) -> None:
    """Wait until the invitations group has rendered every event so far."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for info in await redis.xinfo_groups(streams.BOOKING_EVENTS):
            if info["name"] == streams.INVITATIONS_GROUP.encode() and not info["pending"] and not info["lag"]:
                return
        await asyncio.sleep(0.05)


async def run(
    url: str, workers: int, commands: int, rate: float, slots: Slots, profile: str | None, render_during: bool
) -> Row:
    redis = Redis.from_url(url)
    tag = uuid.uuid4().hex[:6]
    procs = [
        WorkerProcess(
            "services.booking", url, f"bench-{workers}-{i}-{tag}", BLOCK_MS=100, BOOKING_INVITATIONS="false"
        ).start()
        for i in range(workers)
    ]
    # the .ics invitations: one process of their own, as `make run` starts them
    renderer = WorkerProcess("services.booking.invitations", url, f"bench-inv-{tag}", BLOCK_MS=100).start()
    try:
        for proc in [*procs, renderer]:
            await proc.ready()
        warm = await slots.commands(redis, 200 * workers, f"replies:bench-warm-{uuid.uuid4().hex[:6]}")
        await publish_all(redis, warm, {})
        await wait_all(Replies(redis, warm[0].reply_to), warm, 30)
        await invitations_settled(redis, 60)
        assert renderer.process is not None
        renderer_before = cpu_seconds(renderer.process.pid)
        if not render_during:  # paused: the plain loop renders nothing beside it either
            os.kill(renderer.process.pid, signal.SIGSTOP)

        envelopes = await slots.commands(redis, commands, f"replies:bench-{uuid.uuid4().hex[:6]}")
        replies = Replies(redis, envelopes[0].reply_to)
        sent: dict[str, float] = {}
        pids = [p.process.pid for p in procs if p.process is not None]
        profiler = start_profile(pids[0], profile) if profile else None
        if profiler is not None:
            await asyncio.sleep(1.0)  # attached
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        began = time.perf_counter()
        await asyncio.gather(publish_all(redis, envelopes, sent), wait_all(replies, envelopes, 120))
        elapsed = max(replies.seen.values()) - began
        cpu_us = (sum(cpu_seconds(pid) for pid in pids) - cpu_before) / len(replies.seen) * 1e6
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        if not render_during:
            os.kill(renderer.process.pid, signal.SIGCONT)
        await invitations_settled(redis, 120)
        invitation_cpu_us = (cpu_seconds(renderer.process.pid) - renderer_before) / len(replies.seen) * 1e6

        paced_envelopes = await slots.commands(redis, int(rate * 5), f"replies:bench-lat-{uuid.uuid4().hex[:6]}")
        paced_replies = Replies(redis, paced_envelopes[0].reply_to)
        paced_sent: dict[str, float] = {}
        await asyncio.gather(
            paced(redis, paced_envelopes, paced_sent, rate), wait_all(paced_replies, paced_envelopes, 60)
        )
        latencies = [(paced_replies.seen[m] - t) * 1000 for m, t in paced_sent.items() if m in paced_replies.seen]
        errors = errors_of(replies)
        for code, n in errors_of(paced_replies).items():
            errors[code] = errors.get(code, 0) + n
        return Row(
            workers,
            len(replies.seen),
            len(replies.seen) / elapsed,
            cpu_us,
            pct(latencies, 0.5),
            pct(latencies, 0.99),
            errors,
            invitation_cpu_us=invitation_cpu_us,
        )
    finally:
        WorkerProcess.stop_all([*procs, renderer])
        await redis.aclose()


async def main_async(url: str, args: argparse.Namespace) -> int:
    redis = Redis.from_url(url)
    if await redis.dbsize():
        print(f"{url} is not empty; give an empty database", file=sys.stderr)
        return 2
    load_start = os.getloadavg()[0]
    await ensure_groups(redis)
    slots = Slots(await put_rooms(redis, ROOMS, prefix="bench"))
    rows = []
    try:
        for n in (int(w) for w in args.workers.split(",")):
            profile = f"{args.profile}.{n}w.txt" if args.profile else None
            row = await run(url, n, args.commands, args.rate, slots, profile, args.render_during)
            row.plain_per_s, row.plain_cpu_us = await run_plain(url, n, args.commands, slots)
            rows.append(row)
    finally:
        await redis.flushdb()
        await redis.aclose()
    load = os.getloadavg()[0]
    persistence = f"appendfsync {args.appendfsync}" if args.appendfsync else "no persistence"
    print(
        f"\nbook_meeting, {args.commands} per run; latency at {args.rate:.0f}/s; Redis: {persistence}; "
        f"1-min load {load_start:.1f} at start, {load:.1f} at end"
    )
    header = ("workers", "replies", "commands/s", "CPU/cmd", "p50 ms", "p99 ms")
    header += ("plain/s", "plain CPU", "vs plain", "CPU vs", ".ics CPU")
    widths = (7, 7, 10, 8, 7, 7, 8, 9, 8, 6, 8)
    print(" | ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)) + " | errors")
    print("-+-".join("-" * w for w in widths) + "-+-------")
    for row in rows:
        cells = (
            row.workers,
            row.replies,
            f"{row.per_s:.0f}",
            f"{row.cpu_us:.0f} us",
            f"{row.p50_ms:.1f}",
            f"{row.p99_ms:.1f}",
            f"{row.plain_per_s:.0f}",
            f"{row.plain_cpu_us:.0f} us",
            f"{row.per_s / row.plain_per_s:.2f}",
            f"{row.cpu_us / row.plain_cpu_us:.2f}",
            f"{row.invitation_cpu_us:.0f} us",
        )
        print(" | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)) + f" | {row.errors or '-'}")
    print("vs plain: our commands/s over the plain loop's (as many processes); CPU vs: our CPU per command over its;")
    print(".ics CPU: the invitations process (python -m services.booking.invitations) per booking, off the reply path")
    two = [r.per_s for r in rows if r.workers == 2]
    if two:
        verdict = "met" if max(two) >= GOAL_PER_S else "NOT met"
        print(f"goal >= {GOAL_PER_S}/s with 2 workers: {verdict} ({max(two):.0f}/s)")
    for row in rows:
        cpu = "met" if row.cpu_us <= GOAL_CPU_US else "NOT met"
        print(f"goal CPU <= {GOAL_CPU_US} us per command with {row.workers}: {cpu} ({row.cpu_us:.0f} us)")
        if row.workers == 1:
            share = row.per_s / row.plain_per_s
            verdict = "met" if share >= GOAL_SHARE_OF_PLAIN else "NOT met"
            print(f"goal 1 worker >= {GOAL_SHARE_OF_PLAIN:.0%} of the plain loop: {verdict} ({share:.0%})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=None, help="an empty database to use instead of a private server")
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1_000, help="commands/s for the latency run")
    parser.add_argument(
        "--profile", metavar="PATH", help="py-spy raw profile of the first worker per run (PATH.<n>w.txt)"
    )
    parser.add_argument("--workers", default="1,2", help="worker process counts to run, comma-separated")
    parser.add_argument(
        "--render-during",
        action="store_true",
        help="keep the .ics invitations process running during the throughput run (by default it is "
        "paused then, as the plain loop renders nothing, and catches up after; its CPU is counted either way)",
    )
    parser.add_argument(
        "--appendfsync", choices=("everysec", "always", "no"), help="private server with an append-only file"
    )
    args = parser.parse_args()
    with private_redis(args.redis_url, args.appendfsync) as url:
        return asyncio.run(main_async(url, args))


if __name__ == "__main__":
    raise SystemExit(main())
