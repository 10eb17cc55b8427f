"""Booking throughput on one Redis node and on a local 3-master Redis Cluster, side by side, in
one run on one machine.

Run: .venv/bin/python -m bench.cluster_throughput [--commands 6000] [--workers 2] [--partitions 3]

For each setup it starts a private Redis (one `redis-server`, or three cluster masters joined by
`redis-cli --cluster create`), `--workers` real `python -m services.booking` processes (cluster
mode and STREAM_PARTITIONS on the cluster; one stream on one node), stores two rooms for each of
12 tenants (so their commands spread over the partitions), offers `--commands` distinct slots,
publishes one book_meeting command per slot as fast as it goes and times the last reply; it
also reads each redis-server's CPU time over that span: Redis CPU per booking, and how the load
spreads over the masters.

Read the figures for what they are: on one small machine the cluster's masters, the workers and
this publisher share the same cores, so the cluster cannot add capacity here; it shows what the
cluster path costs. Capacity adds up across shards only when each master has cores of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from redis.asyncio import Redis

from runtime.redis import connect, ensure_groups
from shared.messages import Envelope
from testkit.booking_data import Replies, book_payload, command, offer, publish, put_rooms, slot_at
from testkit.redis_cluster import private_cluster, register_cluster_url
from testkit.redis_server import RedisServer
from testkit.worker_processes import WorkerProcess

TENANTS = [f"tenant-{i:02d}" for i in range(12)]
ROOMS = ["room-00", "room-01"]


@dataclass(frozen=True)
class Row:
    setup: str
    workers: int
    partitions: int
    commands: int
    seconds: float
    redis_cpu_s: list[float]
    """CPU time of each redis-server (each master) while the commands ran."""

    @property
    def per_s(self) -> float:
        return self.commands / self.seconds

    @property
    def redis_us(self) -> float:
        """Redis CPU per booking, all servers together (microseconds)."""
        return sum(self.redis_cpu_s) / self.commands * 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def redis_servers(cluster: bool) -> Iterator[tuple[str, list[int]]]:
    """The URL and the redis-server pids of a private node or 3-master cluster."""
    if cluster:
        with private_cluster(3) as servers:
            register_cluster_url(servers.url)
            yield servers.url, [n.process.pid for n in servers.nodes if n.process is not None]
    else:
        with tempfile.TemporaryDirectory() as workdir:
            server = RedisServer(workdir, appendonly=False).start()
            try:
                assert server.process is not None
                yield server.url, [server.process.pid]
            finally:
                server.stop()


def commands_for(count: int, reply_to: str) -> list[Envelope]:
    out = []
    for i in range(count):
        tenant = TENANTS[i % len(TENANTS)]
        calendar_id, start = slot_at(i // len(TENANTS), ROOMS)
        out.append(
            command(
                "book_meeting",
                book_payload(calendar_id, start, "Guest"),
                user=f"user-{i}",
                conversation=f"conv-{i}",
                reply_to=reply_to,
                tenant_id=tenant,
            )
        )
    return out


@contextlib.asynccontextmanager
async def workers_on(url: str, count: int, partitions: int) -> AsyncIterator[None]:
    procs = [
        WorkerProcess(
            "services.booking",
            url,
            f"bench-{uuid.uuid4().hex[:8]}",
            STREAM_PARTITIONS=partitions,
            BOOKING_INVITATIONS="false",
        ).start()
        for _ in range(count)
    ]
    try:
        for proc in procs:
            await proc.ready()
        yield
    finally:
        WorkerProcess.stop_all(procs)


async def run(cluster: bool, workers: int, partitions: int, count: int) -> Row:
    p = partitions if cluster else 1
    with redis_servers(cluster) as (url, pids):
        redis: Redis = connect(url, cluster=cluster)
        try:
            await ensure_groups(redis, p)
            for tenant in TENANTS:
                await put_rooms(redis, len(ROOMS), tenant_id=tenant)
            reply_to = f"replies:bench-{uuid.uuid4().hex[:6]}"
            envelopes = commands_for(count, reply_to)
            for e in envelopes:
                start = datetime.fromisoformat(e.payload["start"])
                await offer(redis, e.conversation_id, [(e.payload["calendar_id"], start)], tenant_id=e.tenant_id)
            replies = Replies(redis, reply_to)
            async with workers_on(url, workers, p):
                cpu_before = [cpu_seconds(pid) for pid in pids]
                started = time.perf_counter()
                for i in range(0, len(envelopes), 500):
                    await publish(redis, envelopes[i : i + 500], partitions=p)
                missing = await replies.wait_for([e.message_id for e in envelopes], 120)
                seconds = time.perf_counter() - started
                cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
            if missing:
                raise SystemExit(f"{len(missing)} commands unanswered")
            failed = [m for m, rs in replies.by_message.items() if rs[0].error is not None]
            if failed:
                raise SystemExit(f"{len(failed)} commands failed, e.g. {replies.by_message[failed[0]][0].error}")
        finally:
            await redis.aclose()
    return Row("3-master cluster" if cluster else "one node", workers, p, count, seconds, cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=6_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    rows = [asyncio.run(run(cluster, args.workers, args.partitions, args.commands)) for cluster in (False, True)]
    header = f"{'setup':<18} {'workers':>7} {'partitions':>10} {'commands':>8} {'seconds':>8} {'bookings/s':>10}"
    print(f"{header} {'Redis CPU/booking':>17}  Redis CPU share per server")
    for row in rows:
        counts = f"{row.workers:>7} {row.partitions:>10} {row.commands:>8}"
        shares = " / ".join(f"{c / sum(row.redis_cpu_s):.0%}" for c in row.redis_cpu_s)
        print(f"{row.setup:<18} {counts} {row.seconds:>8.2f} {row.per_s:>10,.0f} {row.redis_us:>14.0f} us  {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
