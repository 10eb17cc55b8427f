"""The consuming side of a stream, shared by the calendar and booking workers.

One FastStream batch subscriber reads new entries of a consumer group; a second one on the
same group reclaims entries a dead consumer left pending (XAUTOCLAIM after the visibility
timeout). Acks are manual and come only after the effect and the reply are stored, so
delivery is at-least-once; the handlers are idempotent, so effects are exactly-once.

Poison never blocks the group:
* an entry that is not an envelope (no `__data__`, not JSON, not UTF-8, wrong fields) goes to
  the dead-letter stream at once: decoding it again cannot succeed;
* an envelope whose handler keeps failing (or whose reply cannot be stored) is retried by the
  reclaimer and goes to the dead-letter stream once its delivery count (from XPENDING) passes
  `max_delivery_attempts`; its caller then gets a typed `internal` error reply, where possible,
  instead of waiting for ever.
Entries are decoded here, one by one, not by FastStream's parser: an entry that parser cannot
read would fail its whole batch before any handler ran, and could never be dead-lettered.

Observability: every line logged while an envelope is handled carries its request, conversation,
correlation and tenant ids (`shared.logs.log_context`); `booking_stream_messages_total` counts
each handled entry by outcome ("ok", the error code of a typed error reply, "retry" when it stays
pending, "dead_letter"). With METRICS_PORT set, `observe` serves the process's metrics there and
keeps the group's pending and lag gauges current.

Graceful stop (SIGTERM): FastStream stops reading, waits up to the broker's `graceful_timeout`
for the batch in hand (handled, replied, acked), then exits; anything read but not acked stays
pending and is reclaimed by another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

from faststream import AckPolicy, Context, FastStream
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.parser import BinaryMessageFormatV1
from prometheus_client import start_http_server
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import metrics, streams
from shared.logs import log_context
from shared.messages import DomainError, Envelope, ErrorCode, Reply, ToolError
from shared.redis import as_text
from shared.settings import Settings

log = logging.getLogger(__name__)

REPLY_MAXLEN = 10_000
EVENTS_MAXLEN = 100_000
DEAD_LETTER_MAXLEN = 100_000
MAX_DEAD_BODY_CHARS = 10_000
GROUP_STATS_INTERVAL_S = 5.0
_DATA: Final = streams.DATA_FIELD.encode()

Entry = tuple[bytes, Mapping[bytes, bytes]]
"""(entry id, fields) as read from the stream."""


@dataclass(frozen=True, slots=True)
class Handled:
    """What a handler produced: the reply, and events to publish with it."""

    reply: Reply
    events: Sequence[tuple[str, str]] = field(default_factory=tuple)


Handler = Callable[[Envelope, bool], Awaitable[Handled]]
"""(envelope, redelivered) -> Handled. Raise DomainError for a typed failure."""


def error_reply(envelope: Envelope, code: ErrorCode, message: str) -> Reply:
    return Reply(
        correlation_id=envelope.correlation_id,
        message_id=envelope.message_id,
        type=envelope.type,
        error=ToolError(code=code, message=message),
    )


def envelope_log_context(envelope: Envelope) -> contextlib.AbstractContextManager[None]:
    """Log lines written inside the block carry the envelope's ids."""
    return log_context(
        request_id=envelope.request_id,
        conversation_id=envelope.conversation_id,
        correlation_id=envelope.correlation_id,
        tenant_id=envelope.tenant_id,
    )


def outcome_label(reply: Reply) -> str:
    """The `outcome` label of a handled entry: "ok" or the error code of its reply."""
    return "ok" if reply.error is None else reply.error.code.value


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


async def _keep_raw(message: Any) -> StreamMessage[Any]:
    """FastStream parser that keeps the entries as read (see the module doc)."""
    return StreamMessage(raw_message=message, body=b"")


async def _no_body(message: StreamMessage[Any]) -> None:
    """FastStream decoder: the worker reads `raw_message`, not a decoded body."""
    return None


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

    def register(self, broker: RedisBroker) -> None:
        """Attach the reading and the reclaiming subscribers to the broker."""
        settings = self.settings

        @broker.subscriber(
            stream=StreamSub(
                self.stream,
                group=self.group,
                consumer=self.consumer,
                batch=True,
                max_records=settings.batch_size,
                polling_interval=settings.block_ms,
            ),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            parser=_keep_raw,
            decoder=_no_body,
        )
        async def read_new(message: StreamMessage[Any] = Context("message")) -> None:
            raw = message.raw_message
            await self.process(list(zip(raw["message_ids"], raw["data"], strict=True)), redelivered=False)

        # FastStream's reclaimer: XAUTOCLAIM COUNT 1 per poll, entries idle past the visibility
        # timeout (set it above the longest batch), consumer `<instance>-reclaim`
        @broker.subscriber(
            stream=StreamSub(
                self.stream,
                group=self.group,
                consumer=f"{self.consumer}-reclaim",
                min_idle_time=settings.visibility_timeout_ms,
                polling_interval=settings.block_ms,
            ),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            parser=_keep_raw,
            decoder=_no_body,
        )
        async def reclaim(message: StreamMessage[Any] = Context("message")) -> None:
            raw = message.raw_message
            (entry_id,) = raw["message_ids"]
            await self.reclaimed(entry_id, raw["data"])

    async def delivery_count(self, entry_id: bytes) -> int:
        """How often the group delivered the entry (XPENDING); 0 when it is no longer pending."""
        rows = await self.redis.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 0

    async def reclaimed(self, entry_id: bytes, fields: Mapping[bytes, bytes]) -> None:
        """Retry an entry another consumer left pending, or dead-letter it after too many tries."""
        attempts = await self.delivery_count(entry_id)
        if attempts == 0:
            return  # acked meanwhile by the consumer that was slow, not dead
        if attempts > self.settings.max_delivery_attempts:
            envelope: Envelope | None
            try:
                envelope = decode_entry(fields)
            except ValueError:
                envelope = None
            await self.dead_letter(
                entry_id, fields, f"gave up after {attempts - 1} failed deliveries (max_delivery_attempts)", envelope
            )
            return
        await self.process([(entry_id, fields)], redelivered=True)

    async def process(self, entries: Sequence[Entry], *, redelivered: bool) -> None:
        """Handle entries concurrently; store replies and events, then ack what succeeded."""
        parsed: list[tuple[bytes, Envelope]] = []
        for entry_id, fields in entries:
            try:
                parsed.append((entry_id, decode_entry(fields)))
            except ValidationError as exc:
                await self.dead_letter(entry_id, fields, f"not an envelope: {describe_validation_error(exc)}")
            except ValueError as exc:
                await self.dead_letter(entry_id, fields, f"not an envelope: {exc}")
        outcomes = await asyncio.gather(*(self._handle_one(env, redelivered) for _, env in parsed))
        pipe = self.redis.pipeline(transaction=False)
        # entry id, envelope, outcome label and its commands' span in the pipeline
        written: list[tuple[bytes, Envelope, str, int, int]] = []
        for (entry_id, envelope), outcome in zip(parsed, outcomes, strict=True):
            if outcome is None:
                self._count("retry")
                continue  # infrastructure failure: stays pending, reclaimed later
            first = len(pipe)
            for stream, data in outcome.events:
                pipe.xadd(stream, {streams.DATA_FIELD: data}, maxlen=EVENTS_MAXLEN, approximate=True)
            pipe.xadd(
                envelope.reply_to,
                {streams.DATA_FIELD: outcome.reply.model_dump_json()},
                maxlen=REPLY_MAXLEN,
                approximate=True,
            )
            written.append((entry_id, envelope, outcome_label(outcome.reply), first, len(pipe)))
        if not written:
            return
        results = await pipe.execute(raise_on_error=False)
        # ack only what has its reply and events stored; an entry whose reply cannot be written
        # (e.g. its reply_to names a key of another type) stays pending and is dead-lettered
        # after max_delivery_attempts, without holding back the acks of its batch
        done: list[bytes] = []
        labels: list[str] = []
        forgotten: list[bytes] = []
        for entry_id, envelope, label, first, end in written:
            errors = [r for r in results[first:end] if isinstance(r, Exception)]
            if errors:
                with envelope_log_context(envelope):
                    log.error("storing the reply of %s failed: %s; left pending", entry_id, errors[0])
                self._count("retry")
            else:
                done.append(entry_id)
                labels.append(label)
                if envelope.type in self.forget:
                    forgotten.append(entry_id)
        if done:
            await self.redis.xack(self.stream, self.group, *done)
            if forgotten:
                await self.redis.xdel(self.stream, *forgotten)
            for label in labels:
                self._count(label)

    def _count(self, outcome: str) -> None:
        metrics.MESSAGES.labels(self.stream, outcome).inc()

    async def _handle_one(self, envelope: Envelope, redelivered: bool) -> Handled | None:
        with envelope_log_context(envelope):
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
    ) -> None:
        """Move a poison entry aside with its reason (and ack it), so it never blocks the group.

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
        pipe.xack(self.stream, self.group, entry_id)
        await pipe.execute(raise_on_error=False)  # an unwritable reply_to must not keep it pending
        self._count("dead_letter")

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


def observe(app: FastStream, settings: Settings, worker: StreamWorker) -> None:
    """With METRICS_PORT set: serve this process's Prometheus metrics on
    http://METRICS_HOST:METRICS_PORT/metrics from startup to shutdown, and keep the worker's
    group gauges current. Unset: nothing (the counters still count, unserved).

    A port that cannot be bound fails the start, like any other misconfiguration."""
    port = settings.metrics_port
    if port is None:
        return
    server: WSGIServer | None = None
    watch: asyncio.Task[None] | None = None

    @app.on_startup
    async def serve_metrics() -> None:
        nonlocal server, watch
        server, _ = start_http_server(port, addr=settings.metrics_host)
        watch = asyncio.create_task(worker.watch_group())
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)

    @app.on_shutdown
    async def stop_watching() -> None:
        nonlocal watch
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            watch = None

    @app.after_shutdown
    async def stop_serving() -> None:
        nonlocal server
        if server is not None:
            await asyncio.to_thread(server.shutdown)  # waits for its serving loop's next poll
            server.server_close()
            server = None
