"""The consuming side of a stream, shared by the calendar and booking workers.

One FastStream batch subscriber reads new entries of a consumer group; a second one on the
same group reclaims entries a dead consumer left pending (XAUTOCLAIM after the visibility
timeout). Acks are manual and come only after the effect and the reply are stored, so
delivery is at-least-once; the handlers are idempotent, so effects are exactly-once.
An entry delivered more than `max_delivery_attempts` times goes to the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream import AckPolicy, Context
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.message import RedisBatchStreamMessage, RedisStreamMessage
from pydantic import ValidationError
from redis.asyncio import Redis

from shared import streams
from shared.messages import DomainError, Envelope, ErrorCode, Reply, ToolError
from shared.settings import Settings

log = logging.getLogger(__name__)

REPLY_MAXLEN = 10_000
DEAD_LETTER_MAXLEN = 100_000


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


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the field: written for a model to correct its call."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class StreamWorker:
    """Consumes one stream as one consumer of one group, with reclaim and dead-lettering."""

    def __init__(self, settings: Settings, redis: Redis, stream: str, group: str, handle: Handler) -> None:
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
        )
        async def read_new(body: list[Any], message: RedisBatchStreamMessage = Context("message")) -> None:
            await self.process(list(zip(message.raw_message["message_ids"], body, strict=True)), redelivered=False)

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
        )
        async def reclaim(body: Any, message: RedisStreamMessage = Context("message")) -> None:
            (entry_id,) = message.raw_message["message_ids"]
            attempts = await message.get_delivery_count()
            if attempts > settings.max_delivery_attempts:
                await self.dead_letter(entry_id, body, f"gave up after {attempts - 1} deliveries")
                return
            await self.process([(entry_id, body)], redelivered=True)

    async def process(self, entries: list[tuple[bytes, Any]], *, redelivered: bool) -> None:
        """Handle entries concurrently; store replies and events, then ack what succeeded."""
        parsed: list[tuple[bytes, Envelope]] = []
        for entry_id, body in entries:
            try:
                parsed.append((entry_id, Envelope.model_validate(_as_json(body))))
            except (ValidationError, ValueError) as exc:
                await self.dead_letter(entry_id, body, f"not an envelope: {exc}")
        outcomes = await asyncio.gather(*(self._handle_one(env, redelivered) for _, env in parsed))
        pipe = self.redis.pipeline(transaction=False)
        done: list[bytes] = []
        for (entry_id, envelope), outcome in zip(parsed, outcomes, strict=True):
            if outcome is None:
                continue  # infrastructure failure: stays pending, reclaimed later
            done.append(entry_id)
            for stream, data in outcome.events:
                pipe.xadd(stream, {streams.DATA_FIELD: data}, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            pipe.xadd(
                envelope.reply_to,
                {streams.DATA_FIELD: outcome.reply.model_dump_json()},
                maxlen=REPLY_MAXLEN,
                approximate=True,
            )
        if done:
            pipe.xack(self.stream, self.group, *done)
            await pipe.execute()

    async def _handle_one(self, envelope: Envelope, redelivered: bool) -> Handled | None:
        try:
            return await self.handle(envelope, redelivered)
        except DomainError as exc:
            return Handled(reply=error_reply(envelope, exc.error.code, exc.error.message))
        except ValidationError as exc:
            return Handled(reply=error_reply(envelope, ErrorCode.invalid_arguments, describe_validation_error(exc)))
        except Exception:
            log.exception(
                "handler failed; entry left pending for retry",
                extra={"correlation_id": envelope.correlation_id, "type": envelope.type},
            )
            return None

    async def dead_letter(self, entry_id: bytes, body: Any, reason: str) -> None:
        """Move a poison entry aside with its reason, so it never blocks the group."""
        log.error("dead-lettering %s from %s: %s", entry_id, self.stream, reason)
        record = {
            "stream": self.stream,
            "group": self.group,
            "entry_id": entry_id.decode(),
            "reason": reason,
            "body": body if isinstance(body, (dict, list, str)) else repr(body),
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(
            streams.DEAD_LETTERS,
            {streams.DATA_FIELD: json.dumps(record, default=str)},
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        pipe.xack(self.stream, self.group, entry_id)
        await pipe.execute()


def _as_json(body: Any) -> Any:
    if isinstance(body, bytes | str):
        return json.loads(body)
    return body
