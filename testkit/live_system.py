"""The whole system (scripted model, both workers, chat API on loopback) running in a
background thread with its own event loop, for synchronous test tools such as schemathesis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from redis.asyncio import Redis

from services.booking.app import build as build_booking
from services.calendar.app import build as build_calendar
from services.chat.api import create_app
from testkit.scripted_model import ScriptedModel


@contextmanager
def live_system(redis_url: str, **overrides: object) -> Iterator[str]:
    """Yield the chat API's base URL; everything stops when the block ends."""
    from tests.conftest import make_settings

    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()
    url: list[str] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        redis = Redis.from_url(redis_url)
        await redis.flushdb()
        model = ScriptedModel()
        await model.start()
        settings = make_settings(redis_url, model.base_url, **overrides)
        _, calendar_app = build_calendar(settings)
        _, booking_app = build_booking(settings)
        async with calendar_app, booking_app:
            server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
            task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.01)
            url.append(f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}")
            ready.set()
            await stop.wait()
            server.should_exit = True
            await task
        await model.stop()
        await redis.flushdb()
        await redis.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the live system did not start")
    try:
        yield url[0]
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
