"""An ASGI app served by uvicorn on a free loopback port for the length of a `with` block."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

SHUTDOWN_GRACE_S = 5
"""A test server stops within this even while a request still runs (a failed test can leave
one waiting): uvicorn's default is to wait for it for ever, which hung a whole CI run."""


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Yields the app's base URL (http://127.0.0.1:<port>); stops it (and its lifespan) after."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the app did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def free_port() -> int:
    """A loopback port free right now (for a child process that needs its port before it starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
