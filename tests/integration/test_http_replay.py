"""The Idempotency-Key records of the chat API on real Redis: a claim is a lease that ends unless
renewed, a retry takes over an ended lease, and an attempt that lost its lease cannot release
the claim of the attempt that took over."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from services.chat.replay import KeyReusedError, Lease, ResponseCache, fingerprint

FP = fingerprint("alice.c1", "hi")


async def claim(cache: ResponseCache, fp: str = FP) -> Lease:
    claimed = await cache.begin("demo", "alice.c1", "k", fp)
    assert isinstance(claimed, Lease)
    return claimed


async def test_an_unrenewed_claim_ends_with_its_lease_and_a_retry_takes_the_key_over(redis: Redis) -> None:
    cache = ResponseCache(redis, ttl_s=60, lease_s=0.3)
    first = await claim(cache)
    assert 0 < await redis.pttl(first.redis_key) <= 300
    second = await asyncio.wait_for(claim(cache), timeout=3)  # waits out the first lease, then claims
    assert second.record != first.record
    await first.abandon()  # the first attempt comes back and fails: the retry's claim stays
    assert await redis.get(second.redis_key) == second.record.encode()
    await second.finish('{"reply": "Hello"}')
    assert await cache.begin("demo", "alice.c1", "k", FP) == '{"reply": "Hello"}'


async def test_a_kept_lease_outlives_its_duration_and_is_released_on_failure(redis: Redis) -> None:
    cache = ResponseCache(redis, ttl_s=60, lease_s=0.3)
    first = await claim(cache)
    async with first.kept():
        await asyncio.sleep(1.0)  # more than three leases
        assert await redis.get(first.redis_key) == first.record.encode()
    await first.abandon()
    assert await redis.get(first.redis_key) is None
    assert isinstance(await claim(cache), Lease)  # a retry runs again at once


async def test_the_same_key_with_another_body_is_refused_while_running(redis: Redis) -> None:
    cache = ResponseCache(redis, ttl_s=60, lease_s=5)
    await claim(cache)
    with pytest.raises(KeyReusedError):
        await cache.begin("demo", "alice.c1", "k", fingerprint("alice.c1", "something else"))
