"""Automatic pipelining: the commands that concurrent coroutines issue in one event-loop turn
travel to Redis as one pipeline, in one round trip.

The worker handles a batch of stream entries concurrently, so the 100 handlers of a batch each
reach their first command in the same loop turn, then their Lua write in a later one: a batch
costs a few round trips instead of a few per entry. Each caller still gets its own result or
its own error (a failing command, or one the pipeline refuses to queue, fails only its caller);
a lost connection fails every caller of that round trip, and their entries stay pending for a
retry. On a Redis Cluster the pipeline is split by node (one round trip per node, concurrently).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from runtime.scripts import Queue, ScriptRequest, run_script


class AutoPipeline:
    """Coalesces commands issued in the same loop turn into one non-transactional pipeline
    (a `runtime.scripts.Runner`)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queue: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, queue: Queue) -> asyncio.Future[Any]:
        """Queue one command for the next round trip; await the returned future for its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:  # the round trip starts once the coroutines ready now have queued theirs
            task = loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._queue.append((queue, future))
        return future

    async def script(self, request: ScriptRequest) -> Any:
        """The request's script in the shared round trip (loaded again on NOSCRIPT)."""
        return await run_script(lambda r: self.call(r.queue), self.redis, request)

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        queued: list[tuple[Queue, asyncio.Future[Any]]] = []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for queue, future in batch:
                try:
                    queue(pipe)
                except Exception as exc:  # a command this pipeline refuses fails its own caller only
                    if not future.done():
                        future.set_exception(exc)
                    continue
                queued.append((queue, future))
            results = await pipe.execute(raise_on_error=False) if queued else []
        except BaseException as exc:  # the connection failed: every caller of this round trip fails
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(queued, results, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
