"""A counting pass-through for an OpenAI-compatible endpoint, on loopback.

The chat service does not expose the model's `usage`, so the harness points the chat at this
proxy: every request to `/r/<run id>/v1/<path>` is forwarded unchanged (body and auth header)
to `<upstream>/<path>`, and the answer is returned unchanged, after its `usage` and the round
trip are added to that run's counter. Streaming requests are refused (the chat never streams
from the model).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FORWARDED_HEADERS = ("authorization", "content-type", "accept", "openai-organization", "openai-project", "api-key")


@dataclass
class Usage:
    """What one run cost at the model."""

    round_trips: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: int = 0
    """Requests the upstream answered with an error status (or not at all)."""
    model_s: float = 0.0
    """Time spent waiting for the upstream."""
    without_usage: int = 0
    """Successful answers that reported no usage (their tokens are missing from the sums)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, body: Any) -> None:
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            self.without_usage += 1
            return
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)


class CountingProxy:
    def __init__(self, upstream: str, timeout_s: float = 600.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.runs: dict[str, Usage] = {}
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        self.app = Starlette(routes=[Route("/r/{run}/v1/{path:path}", self._forward, methods=["GET", "POST"])])

    def base_url(self, run: str) -> str:
        """The OpenAI base URL whose traffic is counted under `run`."""
        return f"http://127.0.0.1:{self.port}/r/{run}/v1"

    def usage(self, run: str) -> Usage:
        return self.runs.setdefault(run, Usage())

    async def _forward(self, request: Request) -> Response:
        run, path = request.path_params["run"], request.path_params["path"]
        body = await request.body()
        if body and b'"stream"' in body:
            try:
                if json.loads(body).get("stream"):
                    error = {"message": "the eval proxy does not relay streams", "type": "invalid_request_error"}
                    return JSONResponse({"error": error}, status_code=400)
            except ValueError:
                pass
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        usage = self.usage(run)
        started = time.perf_counter()
        try:
            upstream = await self._client.request(
                request.method, f"{self.upstream}/{path}", content=body, headers=headers, params=request.query_params
            )
        except httpx.HTTPError as exc:
            usage.failed += 1
            return JSONResponse({"error": {"message": f"upstream unreachable: {exc}", "type": "proxy"}}, 502)
        finally:
            usage.model_s += time.perf_counter() - started
        if path.endswith("chat/completions"):
            usage.round_trips += 1
            if upstream.status_code >= 400:
                usage.failed += 1
            else:
                try:
                    usage.add(upstream.json())
                except ValueError:
                    usage.without_usage += 1
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "application/json"),
        )

    async def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the counting proxy did not start")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        await self._client.aclose()
