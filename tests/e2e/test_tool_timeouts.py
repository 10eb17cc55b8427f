"""With a worker not answering, a tool call times out into an error the model can explain, or,
for an approved write, a plain reply; the command is not lost: it waits in its stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from testkit.calendar_days import next_weekday
from testkit.scripted_model import ScriptedModel, call
from testkit.system import make_settings, running_workers
from tests.conftest import System
from tests.e2e.flows import book, fetch, offered_tools, stored_bookings


@pytest.fixture
async def settings(redis_url: str, model: ScriptedModel) -> Settings:
    return make_settings(redis_url, model.base_url, tool_timeout_s=0.5)


@pytest.fixture
async def workers(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Only the workers the test names (by default none): every other command waits in its stream."""
    async with running_workers(settings, getattr(request, "param", ())):
        yield


async def test_a_slow_booking_service_ends_the_turn_with_a_plain_sorry_and_no_second_model_call(
    system: System,
) -> None:
    system.model.script(call("list_my_bookings", {"include_past": False}))
    response = await system.say("Which appointments do I have?")
    assert response.status_code == 200
    assert response.json()["reply"] == "Sorry, I couldn't check your bookings just now. Please try again in a moment."
    assert len(system.model.requests) == 1  # the model cannot fix a slow service: it is not asked again
    # with no calendar directory there is no calendar to check: fetch_free_slots is not offered
    assert "fetch_free_slots" not in offered_tools(system.model.requests[0])
    # the commands are not lost: they wait in their streams for a worker
    assert await system.redis.xlen("booking.commands") >= 1
    assert await system.redis.xlen("calendar.requests") >= 1


@pytest.mark.parametrize("workers", [("calendar",)], indirect=True)
async def test_an_approved_booking_that_timed_out_is_told_unchanged_and_a_late_worker_writes_nothing(
    system: System,
) -> None:
    system.model.script(fetch(next_weekday()), book("10:00"))
    await system.say("Is Dr. Lee free?")
    asked = (await system.say("10:00 please, I'm Alice Smith")).json()
    assert asked["pending_action"] is not None
    body = (await system.say("yes")).json()
    assert body["reply"].startswith("Sorry, the booking system did not answer in time, so nothing was changed.")
    assert "booked with" not in body["reply"]
    assert body["bookings"] == [] and await stored_bookings(system) == []
    # the command waits in its stream, past its deadline: a booking worker that starts later
    # answers it `expired` and writes nothing, ever (issue 19, defect 2)
    assert await system.redis.xlen("booking.commands") >= 1
    async with running_workers(system.settings, ["booking"]), asyncio.timeout(10):
        while not await booking_group_drained(system):
            await asyncio.sleep(0.05)
    assert await stored_bookings(system) == []


async def booking_group_drained(system: System) -> bool:
    for group in await system.redis.xinfo_groups("booking.commands"):
        if group["name"] == b"booking":
            return not group["pending"] and not group["lag"]
    return False
