"""Server-Sent Events for one chat turn: tool activity as typed events (no data), then the
reply's words, then the structured outcome. The reply is streamed only after it passed the
guards: no unchecked token reaches the user."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response

from services.chat.schemas import ChatResponse

log = logging.getLogger(__name__)


def event(kind: str, data: str) -> str:
    """One SSE event."""
    return f"event: {kind}\ndata: {data}\n\n"


def respond(response: ChatResponse, stream: bool) -> Response:
    """A stored response, as JSON or as a one-event stream."""
    if not stream:
        return JSONResponse(content=response.model_dump(mode="json"))

    async def replay() -> AsyncIterator[str]:
        yield event("done", response.model_dump_json())

    return StreamingResponse(replay(), media_type="text/event-stream")


def failed(reference: str) -> str:
    """The event that ends a stream whose turn failed (the status line said 200 long before)."""
    return event("error", json.dumps({"detail": f"Temporarily unable to answer; reference {reference}."}))


async def stream_turn(
    run: Callable[[Callable[[str], Awaitable[None]]], Awaitable[ChatResponse]], reference: str = ""
) -> AsyncIterator[str]:
    """Activity events while tools run, then the reply's words, then the structured outcome.

    Every stream ends with `done` or, whatever failed during the turn, with an `error` event
    carrying the request's reference: a client never waits on a stream that stopped silently."""
    events: asyncio.Queue[str | None] = asyncio.Queue()

    async def on_activity(kind: str) -> None:
        await events.put(event("activity", json.dumps({"activity": kind})))

    async def produce() -> ChatResponse:
        try:
            return await run(on_activity)
        finally:
            await events.put(None)

    task = asyncio.create_task(produce())
    try:
        while (item := await events.get()) is not None:
            yield item
        response = await task
        done = event("done", response.model_dump_json())
    except Exception:
        log.exception("turn failed while streaming")
        yield failed(reference)
        return
    for piece in re.split(r"(?<= )", response.reply):
        yield event("token", json.dumps({"text": piece}))
    yield done
