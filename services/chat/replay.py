"""HTTP idempotency: a retried request with the same `Idempotency-Key` gets the stored response
without running the model again; the same key with another body is refused.

While the first attempt runs, its record is a short lease that the attempt renews: a retry
waits for the answer as long as the owner is alive, and takes the key over once the owner
stopped renewing (its chat process died mid-turn), instead of being locked out."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from runtime.scripts import Direct, Key, Script, ScriptRequest
from shared.keys import TenantKeys

log = logging.getLogger(__name__)
LUA = Path(__file__).with_name("lua")
WAIT_FOR_RUNNING_S = 60.0
"""How long a retry waits for a live first attempt before it answers 409."""
POLL_S = 0.2


class KeyReusedError(Exception):
    """The key was used before with a different request body."""


class StillRunningError(Exception):
    """The first request with this key has not finished yet (and its owner is alive)."""


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Lease:
    """One attempt's claim on an Idempotency-Key: a record that expires after `lease_s` unless
    renewed. `kept()` renews it every third of that while the turn runs."""

    def __init__(self, cache: ResponseCache, redis_key: str, record: str, body_fingerprint: str) -> None:
        self.cache = cache
        self.redis_key = redis_key
        self.record = record
        self.body_fingerprint = body_fingerprint

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        renewal = asyncio.create_task(self._renew())
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _renew(self) -> None:
        lease_ms = int(self.cache.lease_s * 1000)
        while True:
            await asyncio.sleep(self.cache.lease_s / 3)
            try:
                if not await self.cache.run.script(
                    RenewLease(record=self.redis_key, owned=self.record, lease_ms=lease_ms)
                ):
                    log.warning("idempotency lease lost: a retry took the key over")
                    return
            except RedisError as exc:  # the next renewal may get through before the lease ends
                log.warning("idempotency lease not renewed: %s", exc)

    async def finish(self, response: str) -> None:
        """Store the answer: every retry with this key gets it from now on."""
        record = json.dumps({"fp": self.body_fingerprint, "response": response})
        await self.cache.redis.set(self.redis_key, record, ex=self.cache.ttl_s)

    async def abandon(self) -> None:
        """Release the key after a failure, so a retry runs again."""
        await self.cache.run.script(ReleaseLease(record=self.redis_key, owned=self.record))


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewLease(ScriptRequest):
    """lua/lease_renew.lua: a running request's lease extended while it still holds it."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "lease_renew.lua")
    record: Key
    owned: str
    lease_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseLease(ScriptRequest):
    """lua/lease_release.lua: a running request's claim given up, if still its own."""

    SCRIPT: ClassVar[Script] = Script.from_file(LUA / "lease_release.lua")
    record: Key
    owned: str


class ResponseCache:
    def __init__(self, redis: Redis, ttl_s: int, lease_s: float) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        self.run = Direct(redis)

    async def begin(self, tenant_id: str, scope: str, key: str, body_fingerprint: str) -> str | Lease:
        """The stored response JSON when this key was answered; else the key claimed for this
        attempt. Waits while a live attempt runs (StillRunningError after WAIT_FOR_RUNNING_S);
        takes the key over when that attempt's lease ran out."""
        redis_key = TenantKeys(tenant_id).http_request(f"{scope}:{key}")
        record = json.dumps({"fp": body_fingerprint, "response": None, "owner": uuid.uuid4().hex})
        deadline = time.monotonic() + WAIT_FOR_RUNNING_S
        while True:
            if await self.redis.set(redis_key, record, nx=True, px=int(self.lease_s * 1000)):
                return Lease(self, redis_key, record, body_fingerprint)
            raw = await self.redis.get(redis_key)
            if raw is None:
                continue  # the running attempt gave up or its lease ran out meanwhile: claim again
            stored = json.loads(raw)
            if stored["fp"] != body_fingerprint:
                raise KeyReusedError
            if stored["response"] is not None:
                return str(stored["response"])
            if time.monotonic() > deadline:
                raise StillRunningError
            await asyncio.sleep(POLL_S)
