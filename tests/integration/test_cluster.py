"""The system on a real 3-master Redis Cluster (private, started for this module) with
partitioned command streams: partitions on every master, the calendar and booking paths, a
booking conversation end to end, and a master restarted mid-load (nothing lost, nothing doubled).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import cast

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from runtime.redis import connect, ensure_groups
from services.chat.toolbus import ToolBus
from shared import streams
from shared.domain import BookingOutcome, FreeSlots
from shared.keys import TenantKeys
from shared.messages import Envelope, Reply
from testkit.booking_data import (
    Replies,
    book_payload,
    command,
    offer,
    put_rooms,
    settle,
    slot_at,
    stream_entries,
)
from testkit.calendar_days import next_weekday
from testkit.redis_cluster import RedisClusterServers, flush_all, private_cluster, redis_client, register_cluster_url
from testkit.scripted_model import ScriptedModel
from testkit.system import launch, make_settings, running_workers
from testkit.worker_processes import WorkerProcess
from tests.conftest import System
from tests.e2e.flows import booked_by_conversation, stored_bookings

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None, reason="needs redis-server and redis-cli"
)

P = 3
TENANTS = [f"tenant-{i:02d}" for i in range(12)]
NO_MODEL = "http://127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    """Three masters with AOF (the restart test needs it), for the whole module."""
    with private_cluster(3, appendonly=True) as servers:
        register_cluster_url(servers.url)
        yield servers


@pytest.fixture
async def cluster_redis(cluster: RedisClusterServers) -> AsyncIterator[Redis]:
    """A client on the cluster, every master flushed before and after the test."""
    await flush_all(cluster.url)
    client = await redis_client(cluster.url)
    yield client
    await client.aclose()
    await flush_all(cluster.url)


def masters_of(cluster: RedisClusterServers, names: tuple[str, ...]) -> set[int]:
    """The masters (ports) serving the slots of `names`, asked of the cluster (CLUSTER KEYSLOT)."""
    node = sync_redis.Redis(port=cluster.ports[0])
    try:
        return {cluster.master_of_slot(int(node.cluster("keyslot", name))) for name in names}
    finally:
        node.close()


def outcome(reply: Reply) -> BookingOutcome:
    assert reply.error is None, reply.error
    return BookingOutcome.model_validate(reply.result)


async def held_by(redis: Redis, consumer: str) -> int:
    """How many entries `consumer` holds unacked on all partitions of booking.commands."""
    held = 0
    for name in streams.partitions(streams.BOOKING_COMMANDS, P):
        summary = await redis.xpending(name, streams.BOOKING_GROUP)
        held += sum(int(c["pending"]) for c in summary["consumers"] if c["name"].decode() == consumer)
    return held


async def offered_booking(
    redis: Redis, tenant: str, conversation: str, user: str, slot: int, reply_to: str
) -> Envelope:
    """A book_meeting command for the `slot`-th slot of the tenant's two rooms, offered in its
    own conversation first (as a fetch would offer it)."""
    calendar_id, start = slot_at(slot, ["room-00", "room-01"])
    await offer(redis, conversation, [(calendar_id, start)], tenant_id=tenant)
    return command(
        "book_meeting",
        book_payload(calendar_id, start, "Guest"),
        user=user,
        conversation=conversation,
        reply_to=reply_to,
        tenant_id=tenant,
    )


@pytest.mark.parametrize("count", [3, 4, 8, 16])
def test_the_partitions_of_each_command_stream_land_on_every_master(cluster: RedisClusterServers, count: int) -> None:
    for stream in streams.PARTITIONED:
        names = streams.partitions(stream, count)
        assert len(set(names)) == count
        assert masters_of(cluster, names) == set(cluster.ports), stream


def test_a_tenant_always_maps_to_one_partition_and_the_tenants_cover_them_all() -> None:
    chosen = {t: streams.partition_of(streams.BOOKING_COMMANDS, t, P) for t in TENANTS}
    assert chosen == {t: streams.partition_of(streams.BOOKING_COMMANDS, t, P) for t in TENANTS}
    assert set(chosen.values()) == set(streams.partitions(streams.BOOKING_COMMANDS, P))
    assert streams.partition_of(streams.BOOKING_COMMANDS, "any", 1) == streams.BOOKING_COMMANDS


async def test_calendar_and_booking_commands_of_many_tenants_are_answered_through_every_partition(
    cluster: RedisClusterServers, cluster_redis: Redis
) -> None:
    settings = make_settings(cluster.url, NO_MODEL, stream_partitions=P, seed_calendars_file="")
    assert settings.redis_cluster
    for tenant in TENANTS:
        await put_rooms(cluster_redis, 2, tenant_id=tenant)
    chat = connect(cluster.url, cluster=True)
    bus = ToolBus(chat, f"chat-{uuid.uuid4().hex[:6]}", block_ms=100, partitions=P)
    try:
        async with running_workers(settings):
            await bus.start()
            day = slot_at(0, ["room-00"])[1]
            fetches = [
                command(
                    "fetch_free_slots",
                    {
                        "calendar_ids": ["room-00"],
                        "date_from": day.date().isoformat(),
                        "date_to": day.date().isoformat(),
                        "duration_minutes": None,
                        "timezone": None,
                    },
                    user="u",
                    conversation=f"c-{tenant}",
                    reply_to=bus.reply_to,
                    tenant_id=tenant,
                )
                for tenant in TENANTS
            ]
            free = await asyncio.gather(*(bus.request(e, 10) for e in fetches))
            for reply in free:
                assert reply.error is None, reply.error
                assert FreeSlots.model_validate(reply.result).slots

            books: list[Envelope] = []
            for tenant in TENANTS:
                for i in range(4):
                    books.append(
                        await offered_booking(cluster_redis, tenant, f"conv-{tenant}-{i}", f"user-{i}", i, bus.reply_to)
                    )
            booked = await asyncio.gather(*(bus.request(e, 10) for e in books))
            ids = [outcome(r).booking.booking_id for r in booked]
            assert len(set(ids)) == len(books)
            for name in streams.partitions(streams.BOOKING_COMMANDS, P):
                assert await cluster_redis.xlen(name) > 0, f"{name} carried nothing"
            assert await settle(cluster_redis, partitions=P) == 0
    finally:
        await bus.stop()
        await chat.aclose()
    for tenant in TENANTS:
        stored = await cluster_redis.keys(TenantKeys(tenant).booking("*"))
        assert len(stored) == 4, tenant


async def test_a_booking_conversation_books_on_the_cluster_with_partitioned_streams(
    cluster: RedisClusterServers, cluster_redis: Redis, model: ScriptedModel
) -> None:
    settings = make_settings(cluster.url, model.base_url, stream_partitions=P)
    async with launch(settings) as running, httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        system = System(settings, http, model, running.redis)
        day = next_weekday()
        body = await booked_by_conversation(system, day, "10:00")
        [booking] = await stored_bookings(system)
        assert body["bookings"][0]["booking_id"] == booking.booking_id
        partition = streams.partition_of(streams.BOOKING_COMMANDS, settings.default_tenant, P)
        assert await running.redis.xlen(partition) >= 1  # the book command went to the tenant's partition
        others = set(streams.partitions(streams.BOOKING_COMMANDS, P)) - {partition}
        assert [await running.redis.xlen(name) for name in others] == [0] * len(others)
        ready = await http.get("/readyz")
        assert ready.json()["checks"]["groups"] is True  # every partition's group
        page = (await http.get("/metrics")).text
        for name in streams.partitions(streams.BOOKING_COMMANDS, P):  # pending and lag of each partition
            assert f'booking_stream_pending{{group="booking",stream="{name}"}} 0.0' in page


async def test_poison_on_every_partition_is_dead_lettered_and_acked(
    cluster: RedisClusterServers, cluster_redis: Redis
) -> None:
    settings = make_settings(cluster.url, NO_MODEL, stream_partitions=P, seed_calendars_file="")
    names = streams.partitions(streams.BOOKING_COMMANDS, P)
    async with running_workers(settings, ["booking"]):
        for name in names:
            await cluster_redis.xadd(name, {streams.DATA_FIELD: "not json"})
        for _ in range(100):
            if len(await stream_entries(cluster_redis, streams.DEAD_LETTERS)) >= P:
                break
            await asyncio.sleep(0.1)
        assert await settle(cluster_redis, partitions=P) == 0
    letters = await stream_entries(cluster_redis, streams.DEAD_LETTERS)
    assert sorted(letter["stream"] for letter in letters) == sorted(names)


async def booking_load_through(
    cluster: RedisClusterServers, cluster_redis: Redis, fault: Callable[[list[WorkerProcess]], Awaitable[None]]
) -> None:
    """480 bookings of 12 tenants published one by one (as the chat's ToolBus does) to 2 worker
    processes; `fault` strikes mid-load. Then: every command answered, every answer of one
    command the same booking, one stored booking each, no dead letter."""
    for tenant in TENANTS:
        await put_rooms(cluster_redis, 2, tenant_id=tenant)
    await ensure_groups(cluster_redis, P)
    reply_to = f"replies:fault-{uuid.uuid4().hex[:6]}"
    commands: list[Envelope] = []
    for i in range(480):
        tenant = TENANTS[i % len(TENANTS)]
        commands.append(
            await offered_booking(cluster_redis, tenant, f"conv-{i}", f"user-{i}", i // len(TENANTS), reply_to)
        )
    env: dict[str, str | int] = {"BLOCK_MS": 100, "STREAM_PARTITIONS": P, "MAX_DELIVERY_ATTEMPTS": 20}
    workers = [
        WorkerProcess("services.booking", cluster.url, f"cl-{uuid.uuid4().hex[:8]}", **env).start() for _ in range(2)
    ]
    publisher = connect(cluster.url, cluster=True)  # retries through the fault, like the chat
    try:
        await ensure_groups(publisher, P)  # as the chat's ToolBus starts
        for proc in workers:
            await proc.ready()

        async def load() -> None:
            """Each command on its own, as the chat's ToolBus publishes (retried through the fault)."""
            for i in range(0, len(commands), 20):
                await asyncio.gather(
                    *(
                        publisher.xadd(
                            streams.partition_of(streams.BOOKING_COMMANDS, e.tenant_id, P),
                            {streams.DATA_FIELD: e.model_dump_json()},
                        )
                        for e in commands[i : i + 20]
                    )
                )
                await asyncio.sleep(0.05)

        loading = asyncio.create_task(load())
        await asyncio.sleep(0.4)
        assert not loading.done(), "the load ended before the fault"
        await fault(workers)
        faulted_mid_load = not loading.done()
        await loading
        assert faulted_mid_load, "the load ended while the fault lasted: make it longer"

        replies = Replies(cluster_redis, reply_to)
        missing = await replies.wait_for([e.message_id for e in commands], 60)
        assert not missing, f"{len(missing)} of {len(commands)} commands never answered"
        assert await settle(cluster_redis, timeout_s=30, partitions=P) == 0
    finally:
        WorkerProcess.stop_all(workers)
        await publisher.aclose()
    # every command answered, every answer of one command the same booking, one booking each
    said = {e.message_id: {outcome(r).booking.booking_id for r in replies.by_message[e.message_id]} for e in commands}
    assert all(len(ids) == 1 for ids in said.values())
    stored = Counter[str]()
    for tenant in TENANTS:
        keys = TenantKeys(tenant)
        for calendar_id in ("room-00", "room-01"):
            members = cast(list[bytes], await cluster_redis.zrange(keys.calendar_bookings(calendar_id), 0, -1))
            stored.update(m.split(b"|")[1].decode() for m in members)
    assert sorted(stored) == sorted(ids.pop() for ids in said.values())
    assert set(stored.values()) == {1}
    assert await stream_entries(cluster_redis, streams.DEAD_LETTERS) == []


@pytest.mark.parametrize("fault", ["master restarted", "worker killed"])
async def test_a_fault_mid_load_loses_no_command_and_doubles_none(
    cluster: RedisClusterServers, cluster_redis: Redis, fault: str
) -> None:
    """A master restarted with AOF (its partitions and tenants' keys away for seconds), or a
    worker killed mid-batch (the other reclaims its entries on every partition)."""

    async def strike(workers: list[WorkerProcess]) -> None:
        if fault == "master restarted":
            await asyncio.to_thread(cluster.restart, 1)  # every master serves partitions (first test)
            return
        held = 0  # killed while it holds entries (unacked, mid-batch), so the other must reclaim them
        for _ in range(200):
            held = await held_by(cluster_redis, workers[0].instance_id)
            if held:
                break
            await asyncio.sleep(0.005)
        workers[0].kill()
        assert held, "the worker held nothing when it was killed"

    await booking_load_through(cluster, cluster_redis, strike)


@pytest.fixture(scope="module")
def replicated() -> Iterator[RedisClusterServers]:
    """Three masters with one replica each (no AOF: in a failover the replica holds the data)."""
    with private_cluster(3, replicas=1) as servers:
        register_cluster_url(servers.url)
        yield servers


async def test_a_failover_to_a_replica_mid_load_loses_no_command_and_doubles_none(
    replicated: RedisClusterServers,
) -> None:
    """CLUSTER FAILOVER on the replica of a master that serves partitions and tenants' keys,
    while 480 bookings are published: the clients follow the slots to the new master."""
    await flush_all(replicated.url)
    client = await redis_client(replicated.url)
    old_master = replicated.ports[1]
    promoted: list[int] = []
    # before the load: a fresh cluster's replica syncs a few seconds after it formed, and the
    # fault must be the failover itself, not that wait
    await asyncio.to_thread(replicated.replica_ready, 1)

    async def strike(workers: list[WorkerProcess]) -> None:
        promoted.append(await asyncio.to_thread(replicated.failover, 1))

    try:
        await booking_load_through(replicated, client, strike)
    finally:
        await client.aclose()
        await flush_all(replicated.url)
    assert promoted and promoted[0] != old_master
    assert old_master not in masters_of(replicated, streams.partitions(streams.BOOKING_COMMANDS, P))
