"""Who is calling, and whether they may: tenant API keys (hashed at rest), the user id the
gateway vouches for, and per-tenant / per-user rate limits (a Redis token bucket)."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

from fastapi import Header, HTTPException, Request
from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from shared.domain import Identifier
from shared.keys import TenantKeys, api_key
from shared.logs import bind_log_context
from shared.redis import as_text
from shared.scripts import Direct, Key, Script, ScriptRequest
from shared.settings import Settings

KEY_PREFIX = "bk_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


TENANT_ID = TypeAdapter(Identifier)


def checked_tenant_id(tenant_id: str) -> str:
    """The tenant id if requests can carry it (shared.domain.Identifier), else ValueError
    saying how to write one: a key for any other id would fail every request it is sent with."""
    try:
        return TENANT_ID.validate_python(tenant_id)
    except ValidationError:
        raise ValueError(
            f"invalid tenant id {tenant_id!r}: use 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit (e.g. 'acme-corp')"
        ) from None


class ApiKeys:
    """Tenant API keys. Only their sha256 is stored; the key itself is shown once, at creation."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, tenant_id: str) -> str:
        """A new key for the tenant (ValueError for a tenant id no request could use)."""
        tenant_id = checked_tenant_id(tenant_id)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        await self.redis.set(api_key(digest(key)), tenant_id)
        return key

    async def tenant_of(self, key: str) -> str | None:
        raw = await self.redis.get(api_key(digest(key)))
        return None if raw is None else as_text(raw)

    async def revoke(self, key: str) -> bool:
        return bool(await self.redis.delete(api_key(digest(key))))


@dataclass(frozen=True, slots=True)
class Limit:
    per_minute: int

    @property
    def capacity(self) -> int:
        return max(1, self.per_minute)

    @property
    def refill_per_s(self) -> float:
        return max(1, self.per_minute) / 60


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeToken(ScriptRequest):
    """lua/token_bucket.lua: one token taken from a bucket, if it has one."""

    SCRIPT: ClassVar[Script] = Script.from_file(Path(__file__).with_name("lua") / "token_bucket.lua")
    bucket: Key
    capacity: int
    refill_per_s: float


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.run = Direct(redis)

    async def retry_after_s(self, key: str, limit: Limit) -> int:
        """0 when a token was taken; otherwise whole seconds until one is free."""
        allowed, wait_ms = await self.run.script(
            TakeToken(bucket=key, capacity=limit.capacity, refill_per_s=limit.refill_per_s)
        )
        return 0 if int(allowed) else max(1, math.ceil(int(wait_ms) / 1000))


def tenant_bucket(tenant_id: str) -> str:
    return TenantKeys(tenant_id).rate_bucket("tenant")


def user_bucket(tenant_id: str, user_id: str) -> str:
    return TenantKeys(tenant_id).rate_bucket(f"user:{user_id}")


@dataclass(frozen=True, slots=True)
class Caller:
    tenant_id: str
    user_id: str


GUEST = "guest"
"""The one user of the local demo mode (REQUIRE_API_KEY=false, no key): whoever reaches the
port. Never used when keys are required or a tenant's key was sent."""
OPERATOR = "operator"
"""The user of calendar admin commands sent without X-User-Id (they touch no user's data)."""


async def _tenant(request: Request, authorization: str | None) -> tuple[str, bool]:
    """The tenant of this request and whether it came from an API key."""
    settings: Settings = request.app.state.settings
    if authorization:
        scheme, _, key = authorization.partition(" ")
        found = await request.app.state.api_keys.tenant_of(key.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise HTTPException(401, "Unknown API key.", headers={"WWW-Authenticate": "Bearer"})
        return found, True
    if settings.require_api_key:
        raise HTTPException(
            401, "An API key is required: Authorization: Bearer <key>.", headers={"WWW-Authenticate": "Bearer"}
        )
    return settings.default_tenant, False


async def _within_limits(request: Request, who: Caller) -> Caller:
    settings: Settings = request.app.state.settings
    limiter: RateLimiter = request.app.state.limiter
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
        settings: Settings = request.app.state.settings
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
