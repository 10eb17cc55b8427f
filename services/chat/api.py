"""HTTP API of the chat service. Routes are thin: validate, hand the turn to the assistant."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse
from faststream.redis import RedisBroker
from openai import AsyncOpenAI
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from services.chat.conversations import ConversationStore
from services.chat.loop import Assistant, Turn
from services.chat.toolbus import ToolBus
from shared.domain import Booking, Identifier
from shared.redis import connect
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

ConversationId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="Client-chosen conversation id.")]


class ChatRequest(BaseModel):
    """One user message."""

    text: str = Field(min_length=1, max_length=4000)


class ChatResponse(BaseModel):
    """The natural reply, and beside it the structured outcome for the client app to render."""

    reply: str
    bookings: list[Booking] = Field(description="Bookings created, moved or cancelled in this turn.")
    suggested_slots: list[datetime] = Field(description="Free slots offered in this turn, in the calendar's zone.")


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
        app.state.redis = redis
        try:
            yield
        finally:
            await bus.stop()
            await broker.stop()
            await client.close()
            await redis.aclose()

    app = FastAPI(title="Booking assistant", version="1.0.0", lifespan=lifespan)

    @app.exception_handler(RedisError)
    async def storage_unavailable(request: Request, exc: RedisError) -> JSONResponse:
        log.error("redis unavailable: %s", exc)
        return JSONResponse(status_code=503, content={"detail": "Storage is unavailable; try again shortly."})

    @app.post("/v1/conversations/{conversation_id}/messages", response_model=ChatResponse)
    async def post_message(
        conversation_id: ConversationId,
        body: ChatRequest,
        request: Request,
        x_tenant_id: Annotated[Identifier | None, Header()] = None,
        x_user_id: Annotated[Identifier | None, Header()] = None,
        x_request_id: Annotated[str | None, Header(max_length=100)] = None,
    ) -> ChatResponse:
        turn = Turn(
            tenant_id=x_tenant_id or settings.default_tenant,
            user_id=x_user_id or "guest",
            conversation_id=conversation_id,
            text=body.text,
            request_id=x_request_id,
        )
        result = await request.app.state.assistant.run(turn)
        return ChatResponse(reply=result.reply, bookings=result.bookings, suggested_slots=result.suggested_slots)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
