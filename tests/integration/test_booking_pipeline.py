"""The booking store's automatic pipelining on the real server: results reach their own callers,
an error fails only its caller, and a script the server forgot is loaded again."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from redis.asyncio import Redis
from redis.exceptions import DataError, ResponseError

from runtime.scripts import Direct, Key, Queue, Runner, Script, ScriptRequest
from services.booking.pipeline import AutoPipeline


async def test_concurrent_callers_each_get_their_own_reply(redis: Redis) -> None:
    pipe = redis.pipeline(transaction=False)  # not MSET: on a cluster the keys span every node
    for i in range(200):
        pipe.set(f"k{i}", f"v{i}")
    await pipe.execute()
    auto = AutoPipeline(redis)

    def get(key: str) -> Queue:
        return lambda pipe: pipe.get(key)

    values = await asyncio.gather(*(auto.call(get(f"k{i}")) for i in range(200)))

    assert values == [f"v{i}".encode() for i in range(200)]


async def test_commands_issued_in_one_loop_turn_share_one_round_trip(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 handlers that each reach a command in the same turn cost one pipeline; one issued
    after that round trip returned goes in a round trip of its own."""
    pipelines = 0
    make_pipeline = redis.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal pipelines
        pipelines += 1
        return make_pipeline(*args, **kwargs)

    monkeypatch.setattr(redis, "pipeline", counted)
    auto = AutoPipeline(redis)

    async def handler(i: int) -> object:
        return await auto.call(lambda pipe: pipe.set(f"turn:{i}", i))

    assert await asyncio.gather(*(handler(i) for i in range(200))) == [True] * 200
    assert pipelines == 1
    assert await auto.call(lambda pipe: pipe.get("turn:7")) == b"7"
    assert pipelines == 2


async def test_a_failing_command_fails_only_its_caller(redis: Redis) -> None:
    await redis.set("text", "not a hash")
    await redis.hset("hash", "f", "1")
    auto = AutoPipeline(redis)

    bad = auto.call(lambda p: p.hget("text", "f"))
    good = auto.call(lambda p: p.hget("hash", "f"))

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await bad
    assert await good == b"1"


async def test_a_command_the_pipeline_refuses_to_queue_fails_only_its_caller(redis: Redis) -> None:
    """redis-py refuses some commands while a pipeline is built (XADD without fields here; on a
    cluster also a pipelined `evalsha`): that caller gets the error, the others their replies,
    nobody waits for ever."""
    await redis.set("k", "v")
    auto = AutoPipeline(redis)

    refused = auto.call(lambda p: p.xadd("s", {}))
    good = auto.call(lambda p: p.get("k"))

    assert await asyncio.wait_for(good, 5) == b"v"
    with pytest.raises(DataError):
        await asyncio.wait_for(refused, 5)


@pytest.mark.parametrize("runner", [AutoPipeline, Direct])
async def test_a_script_the_server_does_not_know_is_loaded_and_run(
    redis: Redis, tmp_path: Path, runner: type[AutoPipeline | Direct]
) -> None:
    """As after a Redis restart: EVALSHA answers NOSCRIPT, the script is loaded and run once."""
    unique = uuid.uuid4().hex  # a script text no server has seen (no global SCRIPT FLUSH needed)
    path = tmp_path / "incr.lua"
    path.write_text(
        f"-- {unique}\n-- KEYS[1] counter: a counter\n-- ARGV[1] by: added to its value\n"
        "return redis.call('INCR', K.counter) + tonumber(A.by)"
    )

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Incr(ScriptRequest):
        SCRIPT: ClassVar[Script] = Script.from_file(path)
        counter: Key
        by: int

    run: Runner = runner(redis)
    assert await redis.script_exists(Incr.SCRIPT.sha) == [False]

    first = await run.script(Incr(counter="counter", by=10))
    second = await run.script(Incr(counter="counter", by=10))

    assert (first, second) == (11, 12)
