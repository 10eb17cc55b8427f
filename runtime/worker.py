"""The consuming side of a stream, shared by the calendar and booking workers.

One module, over 300 lines, because its parts share one consumer group's state and one
contract (ack only after the effect): the reader, the reclaimer, the dead-letter path and the
heartbeat read and change the same pending entries; split apart they would have to agree on it
by convention.

Each worker runs two loops of its own on plain redis-py (no FastStream subscriber: its
per-message wrappers cost more than the Redis work, see docs/performance.md):
* the readers (READERS of them, 2 by default, as one consumer: while one batch waits for
  Redis, another is handled): XREADGROUP a batch of new entries, handle them concurrently, then
  send their replies and events with the next read (one round trip), and XACK the entries whose
  replies are stored with the read after (one XACK per batch);
* the reclaimer, every `reclaim_interval_ms`: the entries of **dead** consumers (whose
  heartbeat key expired: `consumer_dead_ms`, a few seconds, well inside the caller's deadline)
  are claimed at once, so a crash costs a retry, not a failed turn; entries a live consumer
  held past `visibility_timeout_ms` (a stuck handler) are claimed with XAUTOCLAIM; dead
  consumers idle past `consumer_forget_ms` with nothing pending are removed from the group
  (their entries were claimed first).
The heartbeat is a key per consumer (`SET ... PX consumer_dead_ms`) refreshed from a thread, so
a long CPU-bound batch does not make a live worker look dead. Acks are manual and come only
after the effect and the reply are stored: delivery is at-least-once; the handlers are
idempotent, so effects are exactly-once.

Deadlines: an envelope whose `deadline` has passed is answered `expired` without running its
handler (the write scripts check it again against the Redis server's clock, so a late reclaim
can never apply it).

Poison never blocks the group:
* an entry that is not an envelope (no `__data__`, not JSON, not UTF-8, wrong fields) goes to
  the dead-letter stream at once: decoding it again cannot succeed;
* an envelope whose handler keeps failing (or whose reply cannot be stored) is retried by the
  reclaimer and goes to the dead-letter stream once its delivery count (from XPENDING) passes
  `max_delivery_attempts`; its caller then gets a typed `internal` error reply, where possible,
  instead of waiting for ever. An entry is acked only once its dead letter is stored (Redis out
  of memory: it stays pending and is dead-lettered later).

Observability: every line logged while an envelope is handled carries its request, conversation,
correlation and tenant ids (`runtime.logs.log_context`); `booking_stream_messages_total` counts
each handled entry by outcome ("ok", the error code of a typed error reply, "retry" when it stays
pending, "dead_letter"). With METRICS_PORT set, `observe` serves the process's metrics there and
keeps the group's pending and lag gauges current.

Graceful stop (SIGTERM): the reader stops reading, finishes the batch in hand (handled,
replied, acked) within the grace period, the heartbeat key is deleted (so others claim at once
whatever is left), then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast
from wsgiref.simple_server import WSGIServer

import redis as sync_redis
from faststream import FastStream
from faststream.redis.parser import BinaryMessageFormatV1
from prometheus_client import start_http_server
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import RedisError

from runtime import metrics
from runtime.logs import log_context
from runtime.redis import StreamRows, as_text, sync_connect
from shared import streams
from shared.messages import DomainError, Envelope, ErrorCode, Reply, ToolError
from shared.settings import Settings

log = logging.getLogger(__name__)

REPLY_MAXLEN = 10_000
EVENTS_MAXLEN = 100_000
DEAD_LETTER_MAXLEN = 100_000
MAX_DEAD_BODY_CHARS = 10_000
GROUP_STATS_INTERVAL_S = 5.0
FORGET_CHECK_INTERVAL_S = 30.0
STOP_GRACE_S = 10.0
READ_RETRY_S = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Pauses between failed reads (Redis away), the last one repeated."""
_DATA: Final = streams.DATA_FIELD.encode()

Entry = tuple[bytes, Mapping[bytes, bytes]]
"""(entry id, fields) as read from the stream."""


@dataclass(frozen=True, slots=True)
class Handled:
    """What a handler produced: the reply (a Reply, or the JSON of a successful one, see
    `Reply.ok_json`), and events to publish with it."""

    reply: Reply | str
    events: Sequence[tuple[str, str]] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A handled entry whose reply and events are still to be stored."""

    entry_id: bytes
    envelope: Envelope
    handled: Handled


Handler = Callable[[Envelope, bool], Awaitable[Handled]]
"""(envelope, redelivered) -> Handled. Raise DomainError for a typed failure."""


def error_reply(envelope: Envelope, code: ErrorCode, message: str) -> Reply:
    return Reply(
        correlation_id=envelope.correlation_id,
        message_id=envelope.message_id,
        type=envelope.type,
        error=ToolError(code=code, message=message),
    )


def expired_reply(envelope: Envelope) -> Reply:
    """The answer to a command that arrived after its caller's deadline: nothing was changed."""
    return error_reply(
        envelope, ErrorCode.expired, "This request arrived after its deadline and changed nothing; try again."
    )


def envelope_log_context(envelope: Envelope) -> contextlib.AbstractContextManager[None]:
    """Log lines written inside the block carry the envelope's ids."""
    return log_context(
        request_id=envelope.request_id,
        conversation_id=envelope.conversation_id,
        correlation_id=envelope.correlation_id,
        tenant_id=envelope.tenant_id,
    )


def outcome_label(reply: Reply | str) -> str:
    """The `outcome` label of a handled entry: "ok" or the error code of its reply."""
    return "ok" if isinstance(reply, str) or reply.error is None else reply.error.code.value


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the field: written for a model to correct its call."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def decode_entry(fields: Mapping[bytes, bytes]) -> Envelope:
    """The envelope in an entry's `__data__` field: raw JSON, or FastStream's binary framing
    (what `broker.publish` writes). Raises ValueError (ValidationError) for anything else."""
    data = fields.get(_DATA)
    if data is None:
        raise ValueError(f"no {streams.DATA_FIELD} field")
    if data.startswith(BinaryMessageFormatV1.IDENTITY_HEADER):
        data, _ = BinaryMessageFormatV1.parse(data)
    return Envelope.model_validate_json(data)


def heartbeat_key(stream: str, group: str, consumer: str) -> str:
    """The key whose presence says a consumer of a group is alive (a partition's hash tag, in
    its name, keeps it beside its stream on a cluster)."""
    return f"consumer:alive:{stream}:{group}:{consumer}"


class Heartbeat:
    """Keeps a consumer's heartbeat key alive from a thread of its own (a long CPU-bound batch
    on the event loop must not make a live worker look dead)."""

    def __init__(self, url: str, key: str, ttl_ms: int, *, cluster: bool = False) -> None:
        self.url = url
        self.cluster = cluster
        self.key = key
        self.ttl_ms = ttl_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat_once(self, client: sync_redis.Redis | SyncRedisCluster) -> None:
        client.set(self.key, b"1", px=self.ttl_ms)

    def start(self) -> None:
        client = sync_connect(self.url, cluster=self.cluster)
        self.beat_once(client)  # alive before the first read

        def run() -> None:
            every = self.ttl_ms / 3000
            while not self._stop.wait(every):
                try:
                    self.beat_once(client)
                except RedisError as exc:  # Redis away: the key expires, others claim; we retry
                    log.warning("heartbeat %s failed: %s", self.key, exc)
            with contextlib.suppress(RedisError):
                client.delete(self.key)  # stopped: others may claim whatever is left at once
            client.close()

        self._thread = threading.Thread(target=run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class StreamWorker:
    """Consumes one stream as one consumer of one group, with reclaim and dead-lettering."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        stream: str,
        group: str,
        handle: Handler,
        *,
        forget: frozenset[str] = frozenset(),
    ) -> None:
        """`forget`: message types whose entries are deleted from the stream once handled and
        acked, so their payload (e.g. an imported calendar's text) does not outlive its use."""
        self.forget = forget
        self.settings = settings
        self.redis = redis
        self.stream = stream
        self.group = group
        self.handle = handle
        self.consumer = settings.instance_id
        self.heartbeat = Heartbeat(
            settings.redis_url,
            heartbeat_key(stream, group, self.consumer),
            settings.consumer_dead_ms,
            cluster=settings.redis_cluster,
        )
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._autoclaim_cursor = "0-0"
        self._acks: list[bytes] = []
        self._forgotten: list[bytes] = []
        self._forget_checked = 0.0

    def attach(self, app: FastStream) -> None:
        """Run the reader and the reclaimer from the app's start to its shutdown."""
        app.after_startup(self.start)
        app.on_shutdown(self.stop)

    async def start(self) -> None:
        self._stopping.clear()
        await asyncio.to_thread(self.heartbeat.start)
        self._tasks = [
            *(
                asyncio.create_task(self._read_loop(), name=f"read-{self.stream}-{i}")
                for i in range(self.settings.readers)
            ),
            asyncio.create_task(self._reclaim_loop(), name=f"reclaim-{self.stream}"),
        ]
        log.info("consuming %s as %s of group %s", self.stream, self.consumer, self.group)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Finish the batch in hand (within `grace_s`), then stop; what is left stays pending."""
        self._stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace_s + self.settings.block_ms / 1000)
            for task in late:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        await asyncio.to_thread(self.heartbeat.stop)

    async def _exchange(self, outgoing: Sequence[Outgoing], *, read: bool) -> StreamRows:
        """One round trip: the acks (and deletions) of entries whose replies are stored, the
        replies and events of a handled batch, and (with `read`) the read of the next batch, in
        that order. Each entry's reply and events are checked when the round trip returns; its
        ack then travels with a later one (a lost ack costs only a harmless redelivery). A
        failed round trip leaves its entries pending and gives their acks back."""
        pipe = self.redis.pipeline(transaction=False)
        acks, forgotten = self._queue_acks(pipe)
        written = self._queue_replies(pipe, outgoing)
        if read:  # blocking only with no replies aboard: their acks must not wait for new entries
            pipe.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self.settings.batch_size,
                block=None if written else self.settings.block_ms,
            )
        if not len(pipe):
            return []
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException:
            self._acks.extend(acks)
            self._forgotten.extend(forgotten)
            for _ in written:
                self._count("retry")
            raise
        self._settle(written, results)
        if not read:
            return []
        rows = results[-1]
        if isinstance(rows, Exception):
            raise rows
        return cast(StreamRows, rows or [])

    def _queue_acks(self, pipe: Any) -> tuple[list[bytes], list[bytes]]:
        """Move the pending acks (and deletions) onto `pipe`; returns them."""
        acks, self._acks = self._acks, []
        forgotten, self._forgotten = self._forgotten, []
        if acks:
            pipe.xack(self.stream, self.group, *acks)
        if forgotten:
            pipe.xdel(self.stream, *forgotten)
        return acks, forgotten

    async def _store(self, outgoing: Sequence[Outgoing]) -> None:
        """Store replies and events, then send the acks of the entries whose replies are stored."""
        await self._exchange(outgoing, read=False)
        await self._exchange((), read=False)

    async def _read_loop(self) -> None:
        """Read a batch, handle it, and send its replies with the next read: a batch costs the
        worker one round trip of its own beside its handlers' (the plain loop's count)."""
        failures = 0
        outgoing: list[Outgoing] = []
        while not self._stopping.is_set():
            try:
                rows = await self._exchange(outgoing, read=True)
                outgoing = []
                failures = 0
                for _, entries in rows:
                    outgoing.extend(await self._handle_batch(entries, redelivered=False))
            except RedisError as exc:
                pause = READ_RETRY_S[min(failures, len(READ_RETRY_S) - 1)]
                failures += 1
                log.warning("reading %s failed (%s); retrying in %.1f s", self.stream, exc, pause)
                await asyncio.sleep(pause)
            except Exception:  # a bug must not end the loop; the entries stay pending
                log.exception("handling a batch of %s failed", self.stream)
                outgoing = []
                await asyncio.sleep(0.5)
        try:  # the batch in hand: its replies, then every ack
            await self._store(outgoing)
        except RedisError as exc:  # they stay pending: another worker redelivers them
            log.warning("replying to or acking the last batch of %s failed: %s", self.stream, exc)

    async def _reclaim_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.reclaim_once()
            except RedisError as exc:
                log.warning("reclaiming on %s failed: %s", self.stream, exc)
            except Exception:
                log.exception("reclaiming on %s failed", self.stream)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.reclaim_interval_ms / 1000)

    async def reclaim_once(self) -> None:
        """One pass: claim dead consumers' entries, then entries stuck past the visibility
        timeout, then (now and then) remove long-dead consumers from the group."""
        summary = await self.redis.xpending(self.stream, self.group)
        holders = [as_text(c["name"]) for c in summary["consumers"] if int(c["pending"])]
        holders = [c for c in holders if c != self.consumer]
        if holders:
            alive = await self._alive(holders)
            for consumer in (c for c in holders if not alive[c]):
                await self._claim_from_dead(consumer)
        await self._autoclaim()
        every_s = min(FORGET_CHECK_INTERVAL_S, self.settings.consumer_forget_ms / 2000)
        if time.monotonic() - self._forget_checked > every_s:
            self._forget_checked = time.monotonic()
            await self.forget_dead_consumers()

    async def _alive(self, consumers: Sequence[str]) -> dict[str, bool]:
        pipe = self.redis.pipeline(transaction=False)
        for consumer in consumers:
            pipe.exists(heartbeat_key(self.stream, self.group, consumer))
        return {c: bool(n) for c, n in zip(consumers, await pipe.execute(), strict=True)}

    async def _claim_from_dead(self, consumer: str) -> None:
        """Claim (and handle) everything a dead consumer left pending, a batch at a time."""
        while not self._stopping.is_set():
            rows = await self.redis.xpending_range(
                self.stream, self.group, min="-", max="+", count=self.settings.batch_size, consumername=consumer
            )
            if not rows:
                return
            counts: dict[bytes, int] = {cast(bytes, r["message_id"]): int(r["times_delivered"]) + 1 for r in rows}
            # min idle: the dead consumer's own last delivery, not a live one's brand-new claim
            claimed = cast(
                list[tuple[bytes, dict[bytes, bytes]] | None],
                await self.redis.xclaim(self.stream, self.group, self.consumer, 100, list(counts)),
            )
            entries = [e for e in claimed if e is not None]
            if not entries:
                return  # delivered to it a moment ago, or deleted meanwhile: the next pass
            log.warning("claimed %d entries of dead consumer %s on %s", len(entries), consumer, self.stream)
            await self._retry(entries, counts)
            if len(rows) < self.settings.batch_size:
                return

    async def _autoclaim(self) -> None:
        """Entries a live consumer has held past the visibility timeout (a stuck handler)."""
        cursor, claimed, *_ = await self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            self.settings.visibility_timeout_ms,
            start_id=self._autoclaim_cursor,
            count=self.settings.batch_size,
        )
        self._autoclaim_cursor = as_text(cursor)
        entries = [e for e in cast(list[tuple[bytes, dict[bytes, bytes]] | None], claimed) if e is not None]
        if not entries:
            return
        counts = {}
        for entry_id, _ in entries:
            counts[entry_id] = await self.delivery_count(entry_id)
        await self._retry(entries, counts)

    async def _retry(self, entries: Sequence[Entry], attempts: Mapping[bytes, int]) -> None:
        """Handle claimed entries again, dead-lettering those past max_delivery_attempts."""
        again: list[Entry] = []
        for entry_id, fields in entries:
            tries = attempts.get(entry_id, 0)
            if tries > self.settings.max_delivery_attempts:
                envelope: Envelope | None
                try:
                    envelope = decode_entry(fields)
                except ValueError:
                    envelope = None
                reason = f"gave up after {tries - 1} failed deliveries (max_delivery_attempts)"
                await self.dead_letter(entry_id, fields, reason, envelope)
            else:
                again.append((entry_id, fields))
        if again:
            await self.process(again, redelivered=True)

    async def forget_dead_consumers(self) -> list[str]:
        """Remove consumers with nothing pending whose heartbeat is gone and that have been idle
        past `consumer_forget_ms` (their pending entries were claimed first, by reclaim_once)."""
        infos = await self.redis.xinfo_consumers(self.stream, self.group)
        idle = [
            as_text(i["name"])
            for i in infos
            if int(i["pending"]) == 0
            and int(i["idle"]) > self.settings.consumer_forget_ms
            and as_text(i["name"]) != self.consumer
        ]
        if not idle:
            return []
        alive = await self._alive(idle)
        removed = []
        for consumer in (c for c in idle if not alive[c]):
            dropped = await self.redis.xgroup_delconsumer(self.stream, self.group, consumer)
            if int(dropped):  # it was handed entries meanwhile: cannot happen to a dead consumer
                log.error("removed consumer %s of %s dropped %s pending entries", consumer, self.group, dropped)
            log.info("removed dead consumer %s from group %s of %s", consumer, self.group, self.stream)
            removed.append(consumer)
        return removed

    async def delivery_count(self, entry_id: bytes) -> int:
        """How often the group delivered the entry (XPENDING); 0 when it is no longer pending."""
        rows = await self.redis.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 0

    async def reclaimed(self, entry_id: bytes, fields: Mapping[bytes, bytes]) -> None:
        """Retry one entry another consumer left pending, or dead-letter it after too many tries."""
        attempts = await self.delivery_count(entry_id)
        if attempts == 0:
            return  # acked meanwhile by the consumer that was slow, not dead
        await self._retry([(entry_id, fields)], {entry_id: attempts})

    async def process(self, entries: Sequence[Entry], *, redelivered: bool) -> None:
        """Handle entries concurrently, store their replies and events, then ack what succeeded."""
        await self._store(await self._handle_batch(entries, redelivered=redelivered))

    async def _handle_batch(self, entries: Sequence[Entry], *, redelivered: bool) -> list[Outgoing]:
        """Decode (dead-lettering what is not an envelope) and handle entries concurrently; what
        each produced, to be stored (`_exchange`)."""
        parsed: list[tuple[bytes, Envelope]] = []
        for entry_id, fields in entries:
            try:
                parsed.append((entry_id, decode_entry(fields)))
            except ValidationError as exc:
                await self.dead_letter(entry_id, fields, f"not an envelope: {describe_validation_error(exc)}")
            except ValueError as exc:
                await self.dead_letter(entry_id, fields, f"not an envelope: {exc}")
        now = datetime.now(UTC)
        if len(parsed) == 1:  # a lone entry (a quiet stream) is handled in this task: no task to wait for
            outcomes = [await self._handle_one(parsed[0][1], redelivered, now)]
        else:
            outcomes = await asyncio.gather(*(self._handle_one(env, redelivered, now) for _, env in parsed))
        outgoing: list[Outgoing] = []
        for (entry_id, envelope), outcome in zip(parsed, outcomes, strict=True):
            if outcome is None:
                self._count("retry")  # infrastructure failure: stays pending, reclaimed later
            else:
                outgoing.append(Outgoing(entry_id, envelope, outcome))
        return outgoing

    def _queue_replies(self, pipe: Any, outgoing: Sequence[Outgoing]) -> list[tuple[Outgoing, int, int]]:
        """Each entry's events and reply on `pipe`, with their span in it."""
        written: list[tuple[Outgoing, int, int]] = []
        for out in outgoing:
            first = len(pipe)
            for stream, data in out.handled.events:
                pipe.xadd(stream, {streams.DATA_FIELD: data}, maxlen=EVENTS_MAXLEN, approximate=True)
            reply = out.handled.reply
            data = reply if isinstance(reply, str) else reply.model_dump_json()
            pipe.xadd(out.envelope.reply_to, {streams.DATA_FIELD: data}, maxlen=REPLY_MAXLEN, approximate=True)
            written.append((out, first, len(pipe)))
        return written

    def _settle(self, written: Sequence[tuple[Outgoing, int, int]], results: Sequence[Any]) -> None:
        """Queue the ack of every entry whose reply and events are stored. One whose reply cannot
        be written (e.g. its reply_to names a key of another type) stays pending and is
        dead-lettered after max_delivery_attempts, without holding back the acks of its batch."""
        for out, first, end in written:
            errors = [r for r in results[first:end] if isinstance(r, Exception)]
            if errors:
                with envelope_log_context(out.envelope):
                    log.error("storing the reply of %s failed: %s; left pending", out.entry_id, errors[0])
                self._count("retry")
                continue
            self._acks.append(out.entry_id)
            if out.envelope.type in self.forget:
                self._forgotten.append(out.entry_id)
            self._count(outcome_label(out.handled.reply))

    def _count(self, outcome: str) -> None:
        metrics.MESSAGES.labels(self.stream, outcome).inc()

    async def _handle_one(self, envelope: Envelope, redelivered: bool, now: datetime) -> Handled | None:
        with envelope_log_context(envelope):
            if envelope.deadline is not None and envelope.deadline <= now:
                return Handled(reply=expired_reply(envelope))
            try:
                return await self.handle(envelope, redelivered)
            except DomainError as exc:
                return Handled(reply=error_reply(envelope, exc.error.code, exc.error.message))
            except ValidationError as exc:
                return Handled(reply=error_reply(envelope, ErrorCode.invalid_arguments, describe_validation_error(exc)))
            except Exception:
                log.exception("%s handler failed; entry left pending for retry", envelope.type)
                return None

    async def dead_letter(
        self, entry_id: bytes, fields: Mapping[bytes, bytes], reason: str, envelope: Envelope | None = None
    ) -> bool:
        """Move a poison entry aside with its reason, so it never blocks the group, and ack it
        once (and only once) its dead letter is stored; returns whether it was.

        When the entry is an envelope its caller gets an `internal` error reply with it."""
        with envelope_log_context(envelope) if envelope is not None else contextlib.nullcontext():
            log.error("dead-lettering %s from %s: %s", entry_id, self.stream, reason)
        record: dict[str, Any] = {
            "stream": self.stream,
            "group": self.group,
            "entry_id": entry_id.decode(),
            "reason": reason,
            "fields": {
                k.decode(errors="replace"): v.decode(errors="replace")[:MAX_DEAD_BODY_CHARS] for k, v in fields.items()
            },
        }
        pipe = self.redis.pipeline(transaction=False)
        if envelope is not None:
            record["message_id"] = envelope.message_id
            record["correlation_id"] = envelope.correlation_id
            record["tenant_id"] = envelope.tenant_id
            record["type"] = envelope.type
            reply = error_reply(envelope, ErrorCode.internal, "This request could not be processed; try again later.")
            pipe.xadd(
                envelope.reply_to,
                {streams.DATA_FIELD: reply.model_dump_json()},
                maxlen=REPLY_MAXLEN,
                approximate=True,
            )
        pipe.xadd(
            streams.DEAD_LETTERS,
            {streams.DATA_FIELD: json.dumps(record, default=str)},
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        # an unwritable reply_to must not keep it pending; an unstored dead letter must
        stored = (await pipe.execute(raise_on_error=False))[-1]
        if isinstance(stored, Exception):
            log.error("storing the dead letter of %s failed (%s); left pending", entry_id, stored)
            self._count("retry")
            return False
        await self.redis.xack(self.stream, self.group, entry_id)
        self._count("dead_letter")
        return True

    async def refresh_group_gauges(self) -> None:
        """Set `booking_stream_pending` and `booking_stream_lag` of this group from XINFO GROUPS."""
        for info in await self.redis.xinfo_groups(self.stream):
            if as_text(info["name"]) == self.group:
                metrics.STREAM_PENDING.labels(self.stream, self.group).set(int(info["pending"]))
                metrics.STREAM_LAG.labels(self.stream, self.group).set(int(info.get("lag") or 0))

    async def watch_group(self, every_s: float = GROUP_STATS_INTERVAL_S) -> None:
        """Refresh the group's gauges every `every_s` until cancelled."""
        while True:
            try:
                await self.refresh_group_gauges()
            except RedisError as exc:  # Redis away: the subscribers say so; the gauges just go stale
                log.debug("reading the stats of group %s failed: %s", self.group, exc)
            await asyncio.sleep(every_s)


def partition_workers(
    settings: Settings, redis: Redis, stream: str, group: str, handle: Handler, *, forget: frozenset[str] = frozenset()
) -> list[StreamWorker]:
    """One StreamWorker per partition of `stream` (settings.stream_partitions; one worker on the
    stream itself when it is 1): each reads, reclaims, dead-letters, heartbeats and reports its
    own partition, so a worker covers every partition of its group, and a dead worker's entries
    are reclaimed on every partition. On a cluster each partition is read on its own (one
    XREADGROUP over streams of several slots is refused: CROSSSLOT)."""
    return [
        StreamWorker(settings, redis, name, group, handle, forget=forget)
        for name in streams.partitions(stream, settings.stream_partitions)
    ]


EventHandler = Callable[[bytes], Awaitable[None]]
"""Applies one entry's `__data__` (JSON); raises ValueError for an entry it can never apply."""


async def _no_envelopes(envelope: Envelope, redelivered: bool) -> Handled:
    raise RuntimeError("an event consumer handles events, not envelopes")


class EventConsumer(StreamWorker):
    """Consumes a stream of facts (e.g. booking.events) in a group of its own: same reading,
    reclaim, heartbeat and dead letters as StreamWorker, but no replies; an entry is acked once
    `apply` stored its effect, and `apply` must be idempotent (entries arrive at least once)."""

    def __init__(self, settings: Settings, redis: Redis, stream: str, group: str, apply: EventHandler) -> None:
        super().__init__(settings, redis, stream, group, _no_envelopes)
        self.apply = apply

    async def _apply_one(self, fields: Mapping[bytes, bytes]) -> None:
        data = fields.get(_DATA)
        if data is None:
            raise ValueError(f"no {streams.DATA_FIELD} field")
        await self.apply(data)

    async def _handle_batch(self, entries: Sequence[Entry], *, redelivered: bool) -> list[Outgoing]:
        """Apply every entry concurrently; queue the acks of those applied (no replies)."""
        results = await asyncio.gather(*(self._apply_one(f) for _, f in entries), return_exceptions=True)
        for (entry_id, fields), result in zip(entries, results, strict=True):
            if isinstance(result, ValidationError):
                await self.dead_letter(entry_id, fields, f"not an event: {describe_validation_error(result)}")
            elif isinstance(result, ValueError):
                await self.dead_letter(entry_id, fields, f"not an event: {result}")
            elif isinstance(result, BaseException):
                log.error("applying %s from %s failed: %s; left pending", entry_id, self.stream, result)
                self._count("retry")
            else:
                self._acks.append(entry_id)
                self._count("ok")
        return []


def observe(app: FastStream, settings: Settings, *workers: StreamWorker) -> None:
    """With METRICS_PORT set: serve this process's Prometheus metrics on
    http://METRICS_HOST:METRICS_PORT/metrics from startup to shutdown, and keep the workers'
    group gauges current (one per partition). Unset: nothing (the counters still count, unserved).

    A port that cannot be bound fails the start, like any other misconfiguration."""
    port = settings.metrics_port
    if port is None:
        return
    server: WSGIServer | None = None
    watches: list[asyncio.Task[None]] = []

    @app.on_startup
    async def serve_metrics() -> None:
        nonlocal server
        server, _ = start_http_server(port, addr=settings.metrics_host)
        watches.extend(asyncio.create_task(worker.watch_group()) for worker in workers)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)

    @app.on_shutdown
    async def stop_watching() -> None:
        for watch in watches:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        watches.clear()

    @app.after_shutdown
    async def stop_serving() -> None:
        nonlocal server
        if server is not None:
            await asyncio.to_thread(server.shutdown)  # waits for its serving loop's next poll
            server.server_close()
            server = None
