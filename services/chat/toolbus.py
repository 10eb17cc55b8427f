"""Publishes envelopes on their streams and awaits the correlated replies.

Replies come back on one durable stream per chat instance (`replies:<instance>`), read by a
single task that resolves a dict of futures. Unlike FastStream's request(), a waiting request
holds no connection of its own, and a reply is never lost to a missed Pub/Sub message.

Every envelope carries the caller's deadline (now + its timeout). A worker that gets it later
answers `expired` and changes nothing (the write scripts check it against the Redis server's
clock). When the wait for a write's reply times out, its idempotency record is final, so the
bus reads it (runtime/outcomes.py): a write that ran in time, whose reply was late or lost,
is answered with its result; otherwise the caller gets `timeout` and nothing was, or ever will
be, written. A user told "failed" finds nothing booked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import cast

from redis.asyncio import Redis

from runtime.outcomes import final_outcome
from runtime.redis import StreamRows, ensure_groups
from shared import streams
from shared.messages import Envelope, ErrorCode, Reply, ToolError, utcnow
from shared.tools import TOOLS

log = logging.getLogger(__name__)
REPLY_STREAM_TTL_S = 24 * 3600
TTL_REFRESH_S = 60.0
"""The reply stream's TTL is pushed forward at most this often (not after every read: one round
trip less between a reply and the next read)."""


class ToolBus:
    def __init__(self, redis: Redis, instance_id: str, *, block_ms: int = 1000, partitions: int = 1) -> None:
        """`redis`: a client from runtime.redis.connect (it retries through a Redis restart); it
        also publishes (raw JSON entries), each on its tenant's partition of the tool's stream
        (`partitions`: settings.stream_partitions)."""
        self.redis = redis
        self.partitions = partitions
        self.reply_to = streams.reply_stream(instance_id)
        self.block_ms = block_ms
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._last_id = "$"
        self._stopping = asyncio.Event()
        self._ttl_refreshed = float("-inf")

    async def start(self) -> None:
        await ensure_groups(self.redis, self.partitions)
        info = await self.redis.xinfo_stream(self.reply_to) if await self.redis.exists(self.reply_to) else None
        self._last_id = info["last-generated-id"].decode() if info else "0-0"
        self._reader = asyncio.create_task(self._read_replies(), name="toolbus-replies")

    async def stop(self) -> None:
        """Let the reader finish its current blocking read rather than cancel it mid-read
        (cancelling redis-py inside a blocking XREAD can hang on the connection)."""
        self._stopping.set()
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), self.block_ms / 1000 + 2)
            except TimeoutError:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
        for future in self._pending.values():
            future.cancel()

    async def request(self, envelope: Envelope, timeout_s: float) -> Reply:
        """Publish with a deadline (now + `timeout_s`, unless the envelope has one) and wait for
        the reply; a timeout becomes the write's stored result, if it ran in time, or a typed
        `timeout` error reply (and then nothing was written)."""
        if envelope.deadline is None:
            envelope = envelope.model_copy(update={"deadline": utcnow() + timedelta(seconds=timeout_s)})
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[envelope.message_id] = future
        stream = TOOLS[envelope.type].stream
        try:
            await self.redis.xadd(
                streams.partition_of(stream, envelope.tenant_id, self.partitions),
                {streams.DATA_FIELD: envelope.model_dump_json()},
            )
            async with asyncio.timeout(timeout_s):  # no task or future of its own, unlike wait_for
                return await future
        except TimeoutError:
            try:
                result = await final_outcome(self.redis, envelope)
            except Exception:  # Redis away: the outcome is unknown; say what the user can do
                log.exception("reading the outcome of %s after its deadline failed", envelope.message_id)
                result = None
            if result is not None:
                log.warning("%s answered from its stored result after its reply timed out", envelope.message_id)
                return Reply(
                    correlation_id=envelope.correlation_id,
                    message_id=envelope.message_id,
                    type=envelope.type,
                    result=result,
                )
            service = "calendar" if stream == streams.CALENDAR_REQUESTS else "booking system"
            return Reply(
                correlation_id=envelope.correlation_id,
                message_id=envelope.message_id,
                type=envelope.type,
                error=ToolError(code=ErrorCode.timeout, message=f"The {service} is slow to answer; try again shortly."),
            )
        finally:
            self._pending.pop(envelope.message_id, None)

    async def _read_replies(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = cast(
                    StreamRows,
                    await self.redis.xread({self.reply_to: self._last_id}, block=self.block_ms, count=500),
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading replies failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for _, entries in batches:
                for entry_id, fields in entries:
                    self._last_id = entry_id.decode()
                    self._resolve(fields.get(streams.DATA_FIELD.encode()))
            if batches and time.monotonic() - self._ttl_refreshed > TTL_REFRESH_S:
                self._ttl_refreshed = time.monotonic()
                await self.redis.expire(self.reply_to, REPLY_STREAM_TTL_S)

    def _resolve(self, raw: bytes | None) -> None:
        try:
            reply = Reply.model_validate_json(raw or b"null")
        except ValueError:
            log.error("unreadable reply on %s: %r", self.reply_to, raw)
            return
        future = self._pending.get(reply.message_id)
        if future is not None and not future.done():
            future.set_result(reply)
