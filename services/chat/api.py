"""HTTP API of the chat service. Routes are thin: validate, hand the turn to the assistant."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any

from annotated_types import MaxLen
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from faststream.redis import RedisBroker
from openai import AsyncOpenAI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.asyncapi import document as asyncapi_document
from services.chat.access import ApiKeys, Caller, RateLimiter, caller
from services.chat.actions import router as actions_router
from services.chat.admin import router as admin_router
from services.chat.conversations import ConversationStore
from services.chat.extract import ExtractRequest, ExtractResponse, extract
from services.chat.loop import Assistant
from services.chat.replay import KeyReusedError, Lease, ResponseCache, StillRunningError, fingerprint
from services.chat.schemas import ChatRequest, ChatResponse
from services.chat.sse import respond, stream_turn
from services.chat.toolbus import ToolBus
from services.chat.turn import Turn
from shared import metrics, streams
from shared.logs import bind_log_context, log_context
from shared.messages import Envelope
from shared.redis import as_text, connect
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)
PAGE = FilePath(__file__).with_name("web") / "index.html"

ConversationId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Client-chosen conversation id.")]
UserName = Annotated[
    str | None, Header(max_length=100, description="The user's display name, from the gateway (used for bookings).")
]
SCOPED_ID_MAX = next(
    (m.max_length for m in Envelope.model_fields["conversation_id"].metadata if isinstance(m, MaxLen)), 100
)
"""The longest conversation id an envelope carries."""

IdempotencyKey = Annotated[
    str | None, Header(min_length=1, max_length=200, description="Retries with one key run once.")
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings.redis_url)
        broker = RedisBroker(settings.redis_url)
        await broker.connect()
        bus = ToolBus(redis, broker, settings.instance_id, block_ms=settings.block_ms)
        await bus.start()
        client = AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key or "not-needed",
            timeout=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )
        conversations = ConversationStore(redis, settings.conversation_ttl_s, settings.max_history_turns)
        app.state.assistant = Assistant(settings, client, bus, conversations)
        app.state.replays = ResponseCache(redis, settings.idempotency_ttl_s, settings.idempotency_lease_s)
        app.state.client = client
        app.state.redis = redis
        app.state.settings = settings
        app.state.api_keys = ApiKeys(redis)
        app.state.limiter = RateLimiter(redis)
        app.state.scope_conversation = scope_conversation
        app.state.warm = asyncio.Event()
        warming = asyncio.create_task(_warm(app.state.assistant, settings, app.state.warm))
        try:
            yield
        finally:
            warming.cancel()
            await bus.stop()
            await broker.stop()
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

    @app.post(
        "/v1/conversations/{conversation_id}/messages",
        response_model=ChatResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 400: {}, 401: {}, 409: {}, 422: {}, 429: {}},
    )
    async def post_message(
        conversation_id: ConversationId,
        body: ChatRequest,
        request: Request,
        who: Annotated[Caller, Depends(caller)],
        stream: Annotated[bool, Query(description="Answer as Server-Sent Events.")] = False,
        idempotency_key: IdempotencyKey = None,
        x_user_name: UserName = None,
    ) -> Response:
        """Send the user's message; the assistant answers after any tool work it needs."""
        tenant, user = who.tenant_id, who.user_id
        turn = Turn(
            tenant_id=tenant,
            user_id=user,
            # conversations are scoped to their user: another user's id names another conversation
            conversation_id=scope_conversation(user, conversation_id),
            text=body.text,
            request_id=request.state.request_id,
            user_name=(x_user_name or "").strip() or None,
        )
        bind_log_context(conversation_id=turn.conversation_id, tenant_id=tenant)
        replays: ResponseCache = request.app.state.replays
        assistant: Assistant = request.app.state.assistant
        if await assistant.conversations.turns(tenant, turn.conversation_id) >= settings.max_conversation_turns:
            raise HTTPException(422, "This conversation is too long; please start a new one.")
        body_fp = fingerprint(turn.conversation_id, body.text)
        lease: Lease | None = None
        if idempotency_key is not None:
            turn.turn_id = fingerprint(turn.conversation_id, idempotency_key)[:32]
            try:
                claimed = await replays.begin(tenant, turn.conversation_id, idempotency_key, body_fp)
            except KeyReusedError:
                raise HTTPException(422, "This Idempotency-Key was used with a different request.") from None
            except StillRunningError:
                raise HTTPException(409, "A request with this Idempotency-Key is still running.") from None
            if isinstance(claimed, str):
                return respond(ChatResponse.model_validate_json(claimed), stream)
            lease = claimed

        async def run(on_activity: Callable[[str], Awaitable[None]] | None = None) -> ChatResponse:
            if lease is None:
                return ChatResponse.of(await assistant.run(turn, on_activity))
            try:
                async with lease.kept():  # renewed while the turn runs; a retry takes over if we die
                    response = ChatResponse.of(await assistant.run(turn, on_activity))
            except BaseException:
                await lease.abandon()
                raise
            await lease.finish(response.model_dump_json())
            return response

        if not stream:
            return JSONResponse(content=(await run()).model_dump(mode="json"))
        return StreamingResponse(stream_turn(run, request.state.request_id), media_type="text/event-stream")

    @app.post("/v1/extract", response_model=ExtractResponse)
    async def post_extract(
        body: ExtractRequest, request: Request, who: Annotated[Caller, Depends(caller)]
    ) -> ExtractResponse:
        """Read a booking request out of free text (structured outputs; no booking is made)."""
        return await extract(request.app.state.client, settings, body.text)

    app.include_router(admin_router)
    app.include_router(actions_router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: Redis answers, the consumer groups exist, a model endpoint is configured."""
        checks = {
            "redis": False,
            "groups": False,
            "model": bool(settings.openai_base_url or settings.openai_api_key),
            "model_warm": request.app.state.warm.is_set(),
        }
        redis: Redis = request.app.state.redis
        try:
            checks["redis"] = bool(await redis.ping())
            checks["groups"] = all([await _has_group(redis, s, g) for s, g in streams.GROUPS])
        except RedisError as exc:
            log.warning("readiness check failed: %s", exc)
        ready = all(checks.values())
        return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, "checks": checks})

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page(request: Request) -> Response:
        """Prometheus metrics, with stream lag and pending counts read from Redis now."""
        redis: Redis = request.app.state.redis
        for stream, group in streams.GROUPS:
            for info in await _groups(redis, stream):
                if as_text(info["name"]) == group:
                    metrics.STREAM_PENDING.labels(stream, group).set(int(info["pending"]))
                    metrics.STREAM_LAG.labels(stream, group).set(int(info.get("lag") or 0))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> dict[str, object]:
        """The streams' AsyncAPI document (generated by FastStream from the message models)."""
        return asyncapi_document()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    return app


async def _warm(assistant: Assistant, settings: Settings, done: asyncio.Event) -> None:
    """The local model's prompt prefix evaluated before the first user (settings.model_warmup)."""
    if settings.model_warmup:
        try:
            await assistant.warm_up(settings.default_tenant)
        except Exception:  # a cold cache costs time, not correctness
            log.exception("warming the model's prompt failed")
    done.set()


def scope_conversation(user_id: str, conversation_id: str) -> str:
    """The conversation as stored and sent: scoped to its user, so that another user's id names
    another conversation. `user.conversation` when it fits the envelope; else the user and a
    stable digest of the client's id (`user.~<32 hex>`: '~' never occurs in a client's id, so a
    digest never equals one). The longest user (63) and conversation (64) ids both fit."""
    scoped = f"{user_id}.{conversation_id}"
    if len(scoped) <= SCOPED_ID_MAX:
        return scoped
    return f"{user_id}.~{hashlib.sha256(conversation_id.encode()).hexdigest()[:32]}"


def _encodable(value: Any) -> Any:
    """The JSON value with every string made encodable as UTF-8 (lone surrogates become '?')."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    return value


async def _groups(redis: Redis, stream: str) -> list[dict[str, Any]]:
    try:
        return await redis.xinfo_groups(stream)
    except ResponseError:  # the stream does not exist yet
        return []


async def _has_group(redis: Redis, stream: str, group: str) -> bool:
    return any(as_text(g["name"]) == group for g in await _groups(redis, stream))
