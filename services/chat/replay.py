"""HTTP idempotency: a retried request with the same `Idempotency-Key` gets the stored response
without running the model again; the same key with another body is refused."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from redis.asyncio import Redis

from shared.keys import TenantKeys

RUNNING_TTL_S = 300
WAIT_FOR_RUNNING_S = 60.0


class KeyReusedError(Exception):
    """The key was used before with a different request body."""


class StillRunningError(Exception):
    """The first request with this key has not finished yet."""


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class ResponseCache:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def begin(self, tenant_id: str, scope: str, key: str, body_fingerprint: str) -> str | None:
        """Claim the key; return the stored response JSON when it was already answered."""
        redis_key = TenantKeys(tenant_id).http_request(f"{scope}:{key}")
        claim = json.dumps({"fp": body_fingerprint, "response": None})
        deadline = time.monotonic() + WAIT_FOR_RUNNING_S
        while True:
            if await self.redis.set(redis_key, claim, nx=True, ex=RUNNING_TTL_S):
                return None
            raw = await self.redis.get(redis_key)
            if raw is None:
                continue  # the first attempt gave up meanwhile: claim again
            stored = json.loads(raw)
            if stored["fp"] != body_fingerprint:
                raise KeyReusedError
            if stored["response"] is not None:
                return str(stored["response"])
            if time.monotonic() > deadline:
                raise StillRunningError
            await asyncio.sleep(0.2)

    async def finish(self, tenant_id: str, scope: str, key: str, body_fingerprint: str, response: str) -> None:
        redis_key = TenantKeys(tenant_id).http_request(f"{scope}:{key}")
        await self.redis.set(redis_key, json.dumps({"fp": body_fingerprint, "response": response}), ex=self.ttl_s)

    async def abandon(self, tenant_id: str, scope: str, key: str) -> None:
        """Release the key after a failure, so a retry runs again."""
        await self.redis.delete(TenantKeys(tenant_id).http_request(f"{scope}:{key}"))
