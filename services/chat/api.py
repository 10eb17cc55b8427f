"""The chat service's app: start-up builds the services the routes depend on (deps.py), the
routes live in routes/, and no error reaches a client as a bare 500."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from openai import AsyncOpenAI
from redis.exceptions import RedisError

from runtime.logs import log_context
from runtime.redis import connect
from services.chat.access import ApiKeys, RateLimiter
from services.chat.conversations import ConversationStore
from services.chat.deps import ChatServices
from services.chat.loop import Assistant
from services.chat.replay import ResponseCache
from services.chat.routes import actions, admin, messages, ops
from services.chat.toolbus import ToolBus
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings.redis_url, cluster=settings.redis_cluster)
        bus = ToolBus(redis, settings.instance_id, block_ms=settings.block_ms, partitions=settings.stream_partitions)
        await bus.start()
        client = AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key or "not-needed",
            timeout=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )
        conversations = ConversationStore(redis, settings.conversation_ttl_s, settings.max_history_turns)
        services = ChatServices(
            settings=settings,
            redis=redis,
            client=client,
            assistant=Assistant(settings, client, bus, conversations),
            replays=ResponseCache(redis, settings.idempotency_ttl_s, settings.idempotency_lease_s),
            api_keys=ApiKeys(redis),
            limiter=RateLimiter(redis),
            warm=asyncio.Event(),
        )
        app.state.services = services
        warming = asyncio.create_task(_warm(services))
        try:
            yield
        finally:
            warming.cancel()
            await bus.stop()
            await client.close()
            await redis.aclose()

    app = FastAPI(title="Booking assistant", version="1.0.0", lifespan=lifespan)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID", "X-User-Id"],
            expose_headers=["X-Request-ID"],
        )

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Accept the gateway's X-Request-ID (or make one) and hand it back."""
        rid = request.headers.get("x-request-id", "")[:100] or uuid.uuid4().hex
        request.state.request_id = rid
        with log_context(request_id=rid):
            response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """A bug must not surface as a bare 500: log it with the request id, answer 503."""
        log.exception("unhandled error")
        rid = getattr(request.state, "request_id", "")
        return JSONResponse(
            status_code=503,
            content={"detail": f"Temporarily unable to answer; reference {rid}."},
            headers={"X-Request-ID": rid},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with the reasons. The offending input is echoed with what UTF-8 cannot carry (a
        lone surrogate such as \\ud800) replaced, so the client's mistake never becomes a 503."""
        return JSONResponse(status_code=422, content={"detail": _encodable(jsonable_encoder(exc.errors()))})

    @app.exception_handler(RedisError)
    async def storage_unavailable(request: Request, exc: RedisError) -> JSONResponse:
        log.error("redis unavailable: %s", exc)
        return JSONResponse(status_code=503, content={"detail": "Storage is unavailable; try again shortly."})

    for module in (messages, actions, admin, ops):
        app.include_router(module.router)
    return app


async def _warm(services: ChatServices) -> None:
    """The local model's prompt prefix evaluated before the first user (settings.model_warmup)."""
    if services.settings.model_warmup:
        try:
            await services.assistant.warm_up(services.settings.default_tenant)
        except Exception:  # a cold cache costs time, not correctness
            log.exception("warming the model's prompt failed")
    services.warm.set()


def _encodable(value: Any) -> Any:
    """The JSON value with every string made encodable as UTF-8 (lone surrogates become '?')."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    return value
