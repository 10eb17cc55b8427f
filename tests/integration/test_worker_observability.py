"""What a worker tells about its work: every handled entry counted by outcome, each applied
booking counted once, its own metrics port, and log lines that carry the envelope's ids.

Real Redis, the real booking worker (in this process) and the real StreamWorker; the counters
are this process's registry, so each test compares before and after.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from runtime.logs import JsonFormatter
from runtime.worker import Handled, StreamWorker
from shared import streams
from shared.messages import Envelope, Reply
from shared.settings import Settings
from testkit.booking_data import Replies, book_payload, command, offer, publish, put_rooms, slot_at
from testkit.serving import free_port
from testkit.system import make_settings, running_workers

log = logging.getLogger(__name__)
NO_MODEL = "http://127.0.0.1:9/v1"  # workers never call the model
IDS = ("request_id", "conversation_id", "correlation_id", "tenant_id")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def handled(stream: str, outcome: str) -> float:
    return sample("booking_stream_messages_total", stream=stream, outcome=outcome)


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Wait until `check` holds (counters move just after the reply is stored and acked)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


class JsonLines:
    """Records as the JSON formatter writes them, at the moment they are logged (the ids come
    from the context in force then)."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]

    def containing(self, text: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if text in line["message"]]


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    capture = JsonLines()
    handler = logging.StreamHandler(capture.buffer)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger("runtime.worker"), log]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield capture
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def assert_ids_of(envelope: Envelope, line: dict[str, Any]) -> None:
    assert {k: line.get(k) for k in IDS} == {k: getattr(envelope, k) for k in IDS}, line


async def test_the_booking_worker_counts_entries_by_outcome_and_each_applied_booking_once(
    redis_url: str, redis: Redis
) -> None:
    port = free_port()
    settings = make_settings(redis_url, NO_MODEL, metrics_port=port)
    stream = streams.BOOKING_COMMANDS
    [room] = await put_rooms(redis, 1)
    await offer(redis, "conv-obs", [slot_at(0, [room])])
    reply_to = f"replies:obs-{uuid.uuid4().hex[:8]}"
    book = command(
        "book_meeting", book_payload(*slot_at(0, [room])), user="alice", conversation="conv-obs", reply_to=reply_to
    )
    refused = command(
        "book_meeting", book_payload(*slot_at(1, [room])), user="alice", conversation="conv-obs", reply_to=reply_to
    )
    outcomes = ("ok", "slot_not_offered", "dead_letter")
    before = {outcome: handled(stream, outcome) for outcome in outcomes}
    confirmed = sample("booking_effects_total", status="confirmed")
    replies = Replies(redis, reply_to)

    def moved() -> dict[str, float]:
        return {outcome: handled(stream, outcome) - before[outcome] for outcome in outcomes}

    async with running_workers(settings, ["booking"]):
        await publish(redis, [book])
        assert not await replies.wait_for([book.message_id], 10)
        await eventually(lambda: moved()["ok"] == 1)
        # the same command again (a redelivered duplicate), a refused one, and an entry that is no envelope
        await publish(redis, [book, refused])
        await redis.xadd(stream, {"junk": "not an envelope"})
        await eventually(lambda: moved() == {"ok": 2, "slot_not_offered": 1, "dead_letter": 1})
        assert len(replies.by_message[book.message_id]) >= 1
        assert sample("booking_effects_total", status="confirmed") - confirmed == 1  # the replay wrote nothing

        # the worker's own metrics port serves this registry, with its group's gauges
        async with httpx.AsyncClient() as http:
            page = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page)
            for s in family.samples
        }
        assert samples[("booking_stream_messages_total", (("outcome", "ok"), ("stream", stream)))] == handled(
            stream, "ok"
        )
        assert ("booking_effects_total", (("status", "confirmed"),)) in samples
        group = (("group", streams.BOOKING_GROUP), ("stream", stream))
        assert samples[("booking_stream_pending", group)] >= 0
        assert ("booking_stream_lag", group) in samples
    with pytest.raises(httpx.TransportError):  # stopped with the worker
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/metrics")


async def test_an_entry_whose_reply_cannot_be_stored_counts_a_retry_then_a_dead_letter_and_logs_its_ids(
    redis_url: str, redis: Redis, json_logs: JsonLines
) -> None:
    settings = make_settings(redis_url, NO_MODEL, max_delivery_attempts=1)
    stream = streams.BOOKING_COMMANDS
    [room] = await put_rooms(redis, 1)
    await offer(redis, "conv-obs", [slot_at(0, [room])])
    reply_to = f"replies:obs-{uuid.uuid4().hex[:8]}"
    await redis.set(reply_to, "a string, so XADD to it fails")
    envelope = command(
        "book_meeting", book_payload(*slot_at(0, [room])), user="alice", conversation="conv-obs", reply_to=reply_to
    ).model_copy(update={"request_id": "req-obs-1"})
    retries, dead = handled(stream, "retry"), handled(stream, "dead_letter")
    async with running_workers(settings, ["booking"]):
        await publish(redis, [envelope])
        await eventually(lambda: handled(stream, "dead_letter") - dead == 1)
    assert handled(stream, "retry") - retries == 1
    [stored] = json_logs.containing("storing the reply of")
    [dead_lettered] = json_logs.containing("dead-lettering")
    for line in (stored, dead_lettered):
        assert_ids_of(envelope, line)


async def test_every_line_logged_while_handling_an_envelope_carries_its_ids(
    redis_url: str, redis: Redis, json_logs: JsonLines
) -> None:
    settings: Settings = make_settings(redis_url, NO_MODEL)
    stream, group = f"obs.{uuid.uuid4().hex[:8]}", "obs"
    await redis.xgroup_create(stream, group, id="0", mkstream=True)

    async def handle(envelope: Envelope, redelivered: bool) -> Handled:
        log.info("handling %s", envelope.message_id)
        await asyncio.sleep(0.01)  # the two envelopes' handlers interleave
        log.info("still handling %s", envelope.message_id)
        if envelope.payload.get("fail"):
            raise RuntimeError("the store is away")
        return Handled(
            reply=Reply(
                correlation_id=envelope.correlation_id, message_id=envelope.message_id, type=envelope.type, result={}
            )
        )

    def envelope(n: int, fail: bool) -> Envelope:
        base = command("list_my_bookings", {"fail": fail}, user="alice", conversation=f"conv-{n}", reply_to=f"r:{n}")
        return base.model_copy(update={"request_id": f"req-{n}"})

    good, bad = envelope(1, False), envelope(2, True)
    for each in (good, bad):
        await redis.xadd(stream, {streams.DATA_FIELD: each.model_dump_json()})
    rows = cast(list[Any], await redis.xreadgroup(group, "c1", {stream: ">"}))
    ok, retries = handled(stream, "ok"), handled(stream, "retry")

    await StreamWorker(settings, redis, stream, group, handle).process(rows[0][1], redelivered=False)
    log.info("after the batch")

    for each in (good, bad):
        mine = json_logs.containing(each.message_id)
        assert len(mine) == 2
        for line in mine:
            assert_ids_of(each, line)
    [failed] = json_logs.containing("handler failed")
    assert_ids_of(bad, failed)
    assert "the store is away" in failed["exc"]
    [after] = json_logs.containing("after the batch")
    assert not any(k in after for k in IDS)  # the ids do not outlive the handling
    assert (handled(stream, "ok") - ok, handled(stream, "retry") - retries) == (1, 1)
    assert int((await redis.xpending(stream, group))["pending"]) == 1  # the failed one stays for a retry
