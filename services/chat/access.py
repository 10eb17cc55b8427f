"""Who is calling, and whether they may: tenant API keys (hashed at rest), the caller, and
per-tenant / per-user rate limits (a Redis token bucket). The HTTP side (headers, status
codes) is in deps.py."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from runtime.redis import as_text
from runtime.scripts import Direct, Key, Script, ScriptRequest
from shared.domain import Identifier
from shared.keys import TenantKeys, api_key

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
