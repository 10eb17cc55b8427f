"""Consumers that died stay nowhere: their pending entries are claimed by a live worker within
seconds, and once idle past CONSUMER_FORGET_MS with nothing pending they are removed from the
group; a live worker (its heartbeat key alive) is never removed, however long it waited.
Real Redis, real `python -m services.booking` processes."""

from __future__ import annotations

import asyncio
import time
import uuid

from redis.asyncio import Redis

from runtime.redis import ensure_groups
from shared import streams
from testkit.booking_data import Replies, command, publish
from testkit.worker_processes import WorkerProcess


async def consumers(redis: Redis) -> dict[str, int]:
    """The group's consumers and what each holds."""
    infos = await redis.xinfo_consumers(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP)
    return {i["name"].decode(): int(i["pending"]) for i in infos}


async def test_dead_consumers_have_their_entries_claimed_then_are_removed_but_live_ones_stay(
    redis_url: str, redis: Redis
) -> None:
    await ensure_groups(redis)
    reply_to = f"replies:ghosts-{uuid.uuid4().hex[:6]}"
    held = [
        command("list_my_bookings", {"include_past": False}, user=f"u{i}", conversation=f"c{i}", reply_to=reply_to)
        for i in range(5)
    ]
    await publish(redis, held)
    # a consumer that read five entries and died, and one that died with nothing
    assert await redis.xreadgroup(streams.BOOKING_GROUP, "ghost-1", {streams.BOOKING_COMMANDS: ">"}, count=5)
    await redis.xgroup_createconsumer(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP, "ghost-2")
    env: dict[str, str | int] = {
        "BLOCK_MS": 100,
        "CONSUMER_DEAD_MS": 1_000,
        "CONSUMER_FORGET_MS": 1_500,
        "RECLAIM_INTERVAL_MS": 200,
        "VISIBILITY_TIMEOUT_MS": 60_000,  # claimed because their consumer is dead, not because they are old
    }
    live_ids = [f"live-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    workers = [WorkerProcess("services.booking", redis_url, instance, **env).start() for instance in live_ids]
    try:
        for worker in workers:
            await worker.ready()
        for instance in live_ids:  # listed (Redis 7.0 lists a consumer once served), idle from now on
            await redis.xgroup_createconsumer(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP, instance)
        replies = Replies(redis, reply_to)
        began = time.monotonic()
        assert not await replies.wait_for([e.message_id for e in held], 10)
        claimed_within = time.monotonic() - began
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and {"ghost-1", "ghost-2"} & set(await consumers(redis)):
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # well past CONSUMER_FORGET_MS for the live ones too
        left = await consumers(redis)
    finally:
        WorkerProcess.stop_all(workers)

    assert claimed_within < 5
    assert all(r.error is None for e in held for r in replies.by_message[e.message_id])
    assert "ghost-1" not in left and "ghost-2" not in left, left
    assert set(live_ids) <= set(left), left
    assert int((await redis.xpending(streams.BOOKING_COMMANDS, streams.BOOKING_GROUP))["pending"]) == 0
