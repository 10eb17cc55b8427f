"""The whole system in this process, from one `Settings`: a calendar and a booking worker and the
chat API on a loopback port. The tests' fixtures, the eval harness and the benches start it here
and nowhere else.

    async with launch(settings) as system:   # system.url, system.redis, system.app, system.stop()
        ...

`running_workers` is the workers' half alone (integration tests that talk to the streams
directly); `launch(settings, workers=())` is a chat replica beside workers started elsewhere.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from redis.asyncio import Redis

from services.booking.app import build as build_booking
from services.calendar.app import build as build_calendar
from services.chat.api import create_app
from shared.settings import Settings
from testkit.redis_cluster import is_cluster_url, redis_client
from testkit.scripted_model import ScriptedModel
from testkit.serving import serving

WORKERS = ("calendar", "booking")
_BUILD = {"calendar": build_calendar, "booking": build_booking}


def make_settings(redis_url: str, model_url: str, **overrides: object) -> Settings:
    """Settings for a system under test: short blocking reads and timeouts, a fresh instance id,
    no retries against the model; `overrides` win."""
    values: dict[str, object] = {
        "redis_url": redis_url,
        "openai_base_url": model_url,
        "openai_api_key": "test",
        "openai_model": "scripted",
        "openai_max_retries": 0,
        "instance_id": f"test-{uuid.uuid4().hex[:8]}",
        "block_ms": 100,
        "tool_timeout_s": 5.0,
        "visibility_timeout_ms": 2_000,
        "ics_organizer": "appointments@clinic.test",
        "redis_cluster": is_cluster_url(redis_url),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class RunningSystem:
    """Handles on a launched system."""

    settings: Settings
    app: FastAPI
    """The chat API's app (its `state` holds the chat's runtime objects)."""
    url: str
    """The chat API's base URL, http://127.0.0.1:<port>."""
    redis: Redis
    """A client on `settings.redis_url`, closed with the system."""
    stop: Callable[[], Awaitable[None]]
    """Stops the chat, then the workers (early; leaving the `async with` does it too)."""


@asynccontextmanager
async def running_workers(settings: Settings, workers: Iterable[str] = WORKERS) -> AsyncIterator[None]:
    """The named workers (calendar, booking) as in production but in this process."""
    async with AsyncExitStack() as stack:
        for name in workers:
            _, app = _BUILD[name](settings)
            await stack.enter_async_context(app)
        yield


@asynccontextmanager
async def launch(settings: Settings, workers: Iterable[str] = WORKERS) -> AsyncIterator[RunningSystem]:
    """The workers named, then the chat API on a free loopback port; stopped in reverse order."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running_workers(settings, workers))
        app = create_app(settings)
        url = await stack.enter_async_context(serving(app))
        redis = await redis_client(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        yield RunningSystem(settings, app, url, redis, stack.aclose)


@contextmanager
def launched_in_thread(redis_url: str, **overrides: object) -> Iterator[str]:
    """The system with a scripted model, on its own event loop in a background thread (for
    synchronous tools such as schemathesis), on a flushed database; yields the chat's URL."""
    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()
    url: list[str] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        redis = await redis_client(redis_url)
        await redis.flushdb()
        model = ScriptedModel()
        await model.start()
        async with launch(make_settings(redis_url, model.base_url, **overrides)) as system:
            url.append(system.url)
            ready.set()
            await stop.wait()
        await model.stop()
        await redis.flushdb()
        await redis.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the system did not start")
    try:
        yield url[0]
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
