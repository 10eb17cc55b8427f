"""Automatic pipelining: the commands that concurrent coroutines issue in one event-loop turn
travel to Redis as one pipeline, in one round trip.

The worker handles a batch of stream entries concurrently, so the 100 handlers of a batch each
reach their first command in the same loop turn, then their Lua write in a later one: a batch
costs a few round trips instead of a few per entry. Each caller still gets its own result or
its own error (a failing command fails only its caller); a lost connection fails every caller
of that round trip, and their entries stay pending for a retry.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

Queue = Callable[[Pipeline], object]
"""Adds one command to a pipeline (e.g. `lambda p: p.get(key)`)."""


class LuaScript:
    """A Lua script run by its SHA; loaded on first use and again after a server restart."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class AutoPipeline:
    """Coalesces commands issued in the same loop turn into one non-transactional pipeline."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queue: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, queue: Queue) -> asyncio.Future[Any]:
        """Queue one command for the next round trip; await the returned future for its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((queue, future))
        return future

    async def script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """EVALSHA in the shared round trip; on NOSCRIPT (never loaded, or the server lost its
        script cache) load it and run it again: a NOSCRIPT reply means it did not run."""
        try:
            return await self.call(lambda p: p.evalsha(script.sha, len(keys), *keys, *args))
        except NoScriptError:
            await self.redis.script_load(script.source)
            return await self.call(lambda p: p.evalsha(script.sha, len(keys), *keys, *args))

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.create_task(self._execute(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[tuple[Queue, asyncio.Future[Any]]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for queue, _ in batch:
            queue(pipe)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller of this round trip fails
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
