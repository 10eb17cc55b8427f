"""A real HTTP server that speaks the OpenAI chat-completions protocol and answers from a script.

Each step is a function of the request body (so it can read the tool results it was sent) that
returns an assistant message. Every request is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.chat.conversations import Message
from testkit.serving import SHUTDOWN_GRACE_S

Step = Callable[[dict[str, Any]], Message]
"""One answer of the model: from the request body to an assistant message."""


def say(text: str) -> Step:
    return lambda _req: {"role": "assistant", "content": text}


def call(
    name: str, args: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]], call_id: str | None = None
) -> Step:
    """A tool call; `args` may be computed from the request (e.g. from a previous tool result)."""

    def step(req: dict[str, Any]) -> Message:
        arguments = args(req) if callable(args) else args
        return {"role": "assistant", "content": None, "tool_calls": [tool_call(name, arguments, call_id)]}

    return step


def tool_call(name: str, arguments: Any, call_id: str | None = None) -> dict[str, Any]:
    """One entry of an assistant message's `tool_calls` (arguments as JSON text)."""
    return {
        "id": call_id or f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
    }


def calls(*steps: Step) -> Step:
    """Several tool calls in one assistant message (parallel tool calls)."""

    def step(req: dict[str, Any]) -> Message:
        merged = [s(req)["tool_calls"][0] for s in steps]
        return {"role": "assistant", "content": None, "tool_calls": merged}

    return step


def last_tool_result(req: dict[str, Any]) -> dict[str, Any]:
    """The JSON of the latest tool message the model was sent."""
    for message in reversed(req["messages"]):
        if message["role"] == "tool":
            return dict(json.loads(message["content"]))
    raise AssertionError("no tool result in the request")


class ScriptedModel:
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.requests: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self.fail_with: int | None = None
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_url = ""

    def script(self, *steps: Step) -> None:
        self.steps.extend(steps)

    async def _complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with is not None:
            return JSONResponse(
                status_code=self.fail_with, content={"error": {"message": "scripted failure", "type": "server_error"}}
            )
        if not self.steps:
            return JSONResponse(
                status_code=500, content={"error": {"message": "script exhausted", "type": "server_error"}}
            )
        message = self.steps.pop(0)(body)
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:10]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "scripted"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def __aenter__(self) -> ScriptedModel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
