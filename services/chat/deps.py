"""What the chat's routes depend on: the services built at start-up (one object on the app),
the caller (API key, user, rate limits), and the path and header types the routes share."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Annotated

from annotated_types import MaxLen
from fastapi import Depends, Header, HTTPException, Path, Request
from openai import AsyncOpenAI
from redis.asyncio import Redis

from runtime.logs import bind_log_context
from services.chat.access import ApiKeys, Caller, Limit, RateLimiter, tenant_bucket, user_bucket
from services.chat.loop import Assistant
from services.chat.replay import ResponseCache
from shared.domain import Identifier
from shared.messages import Envelope
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class ChatServices:
    """Built once per app at start-up (api.py), shared by every request."""

    settings: Settings
    redis: Redis
    client: AsyncOpenAI
    assistant: Assistant
    replays: ResponseCache
    api_keys: ApiKeys
    limiter: RateLimiter
    warm: asyncio.Event
    """Set once the model's prompt prefix is warm (or warming is off)."""


def services(request: Request) -> ChatServices:
    found: ChatServices = request.app.state.services
    return found


Services = Annotated[ChatServices, Depends(services)]

ConversationId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Client-chosen conversation id.")]
IdempotencyKey = Annotated[
    str | None, Header(min_length=1, max_length=200, description="Retries with one key run once.")
]
SCOPED_ID_MAX = next(
    (m.max_length for m in Envelope.model_fields["conversation_id"].metadata if isinstance(m, MaxLen)), 100
)
"""The longest conversation id an envelope carries."""


def scope_conversation(user_id: str, conversation_id: str) -> str:
    """The conversation as stored and sent: scoped to its user, so that another user's id names
    another conversation. `user.conversation` when it fits the envelope; else the user and a
    stable digest of the client's id (`user.~<32 hex>`: '~' never occurs in a client's id, so a
    digest never equals one). The longest user (63) and conversation (64) ids both fit."""
    scoped = f"{user_id}.{conversation_id}"
    if len(scoped) <= SCOPED_ID_MAX:
        return scoped
    return f"{user_id}.~{hashlib.sha256(conversation_id.encode()).hexdigest()[:32]}"


GUEST = "guest"
"""The one user of the local demo mode (REQUIRE_API_KEY=false, no key): whoever reaches the
port. Never used when keys are required or a tenant's key was sent."""
OPERATOR = "operator"
"""The user of calendar admin commands sent without X-User-Id (they touch no user's data)."""


async def _tenant(request: Request, authorization: str | None) -> tuple[str, bool]:
    """The tenant of this request and whether it came from an API key."""
    settings = services(request).settings
    if authorization:
        scheme, _, key = authorization.partition(" ")
        keys = services(request).api_keys
        found = await keys.tenant_of(key.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise HTTPException(401, "Unknown API key.", headers={"WWW-Authenticate": "Bearer"})
        return found, True
    if settings.require_api_key:
        raise HTTPException(
            401, "An API key is required: Authorization: Bearer <key>.", headers={"WWW-Authenticate": "Bearer"}
        )
    return settings.default_tenant, False


async def _within_limits(request: Request, who: Caller) -> Caller:
    settings = services(request).settings
    limiter = services(request).limiter
    for bucket, limit in (
        (tenant_bucket(who.tenant_id), Limit(settings.rate_tenant_per_minute)),
        (user_bucket(who.tenant_id, who.user_id), Limit(settings.rate_user_per_minute)),
    ):
        wait = await limiter.retry_after_s(bucket, limit)
        if wait:
            raise HTTPException(429, "Too many requests; slow down.", headers={"Retry-After": str(wait)})
    bind_log_context(tenant_id=who.tenant_id)
    return who


UserHeader = Annotated[
    Identifier | None,
    Header(
        description="End user, as vouched for by the gateway. Required when API keys are required or a key "
        "is sent; only the local demo mode (REQUIRE_API_KEY=false, no key) serves header-less requests "
        "as one shared guest."
    ),
]


async def caller(
    request: Request,
    authorization: Annotated[str | None, Header(max_length=300)] = None,
    x_user_id: UserHeader = None,
) -> Caller:
    """The tenant (from its API key) and user of this request, within their rate limits.

    A request without X-User-Id is refused (400) unless this is the local demo mode and no key
    was sent: a shared "guest" would let one header-less caller read another's bookings."""
    tenant, keyed = await _tenant(request, authorization)
    if x_user_id is None:
        settings = services(request).settings
        if settings.require_api_key or keyed:
            raise HTTPException(400, "X-User-Id is required: the gateway must name the end user of every request.")
        x_user_id = GUEST
    return await _within_limits(request, Caller(tenant, x_user_id))


async def operator(
    request: Request,
    authorization: Annotated[str | None, Header(max_length=300)] = None,
    x_user_id: Annotated[Identifier | None, Header(description="Who made the change, if known.")] = None,
) -> Caller:
    """The tenant of a calendar admin request (the route also demands a key); its user is
    X-User-Id when sent, else OPERATOR: admin commands read and change no user's data."""
    tenant, _ = await _tenant(request, authorization)
    return await _within_limits(request, Caller(tenant, x_user_id or OPERATOR))
