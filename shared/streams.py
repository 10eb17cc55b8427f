"""Stream and consumer-group names, and the wire encoding of one stream entry.

An entry carries one field, `__data__`, holding the JSON of a message: FastStream subscribers
parse it as raw JSON, and any other client (redis-cli, another language) can read it.

Partitions: one stream lives in one hash slot, so on a Redis Cluster a single
`booking.commands` is one node's work however many nodes there are. With P partitions
(settings.stream_partitions > 1) each command stream is P streams, `booking.commands:{bc0.7}`,
whose hash tags are chosen so that partition i's slot lies in the i-th of P equal slot ranges:
they spread over the masters as evenly as the slots do. A tenant's commands all go to one
partition (a stable hash of the tenant id), so they stay in order; replies still go to the
caller's own stream. P = 1 keeps the plain names.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

CALENDAR_REQUESTS: Final = "calendar.requests"
BOOKING_COMMANDS: Final = "booking.commands"
BOOKING_EVENTS: Final = "booking.events"
DEAD_LETTERS: Final = "dead.letters"
CALENDAR_GROUP: Final = "calendar"
BOOKING_GROUP: Final = "booking"
INVITATIONS_GROUP: Final = "invitations"
"""Renders the .ics invitations of booking.events (services/booking/invitations.py)."""
DATA_FIELD: Final = "__data__"

GROUPS: Final[tuple[tuple[str, str], ...]] = (
    (CALENDAR_REQUESTS, CALENDAR_GROUP),
    (BOOKING_COMMANDS, BOOKING_GROUP),
    (BOOKING_EVENTS, INVITATIONS_GROUP),
)
PARTITIONED: Final = {CALENDAR_REQUESTS: "cr", BOOKING_COMMANDS: "bc"}
"""The streams split into partitions, and the prefix of their partitions' hash tags."""


@lru_cache(maxsize=64)
def partitions(stream: str, count: int) -> tuple[str, ...]:
    """The names of a stream's `count` partitions, in order: the stream itself when `count`
    is 1 or the stream is not partitioned, else for partition i `<stream>:{<prefix><i>.<n>}`
    with the smallest n whose slot lies in the partition's share of the slots."""
    prefix = PARTITIONED.get(stream)
    if count == 1 or prefix is None:
        return (stream,)
    names = []
    for i in range(count):
        lo, hi = i * REDIS_CLUSTER_HASH_SLOTS // count, (i + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        n = 0
        while not lo <= key_slot(f"{prefix}{i}.{n}".encode()) < hi:
            n += 1
        names.append(f"{stream}:{{{prefix}{i}.{n}}}")
    return tuple(names)


def partition_of(stream: str, tenant_id: str, count: int) -> str:
    """The partition of `stream` that carries the tenant's messages (the stream itself when
    `count` is 1): the same one for every message of the tenant, in every process."""
    if count == 1:
        return stream
    names = partitions(stream, count)
    return names[zlib.crc32(tenant_id.encode()) % len(names)]


def groups(count: int) -> tuple[tuple[str, str], ...]:
    """Every (stream, group) pair, each partitioned stream's partitions one by one."""
    return tuple((name, group) for stream, group in GROUPS for name in partitions(stream, count))


def reply_stream(instance_id: str) -> str:
    """The durable reply stream of one chat instance."""
    return f"replies:{instance_id}"
