"""With no worker answering, a tool call times out into an error the model can explain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.conftest import System, make_settings
from tests.e2e.flows import fetch, tool_errors
from tests.support.calendar_days import next_weekday
from tests.support.scripted_model import ScriptedModel, say


@pytest.fixture
async def settings(redis_url: str, model: ScriptedModel) -> Settings:
    return make_settings(redis_url, model.base_url, tool_timeout_s=0.5)


@pytest.fixture
async def workers() -> AsyncIterator[None]:
    """No workers at all: every command waits in its stream."""
    yield


async def test_a_slow_calendar_becomes_a_timeout_tool_error_and_a_polite_reply(system: System) -> None:
    system.model.script(fetch(next_weekday()), say("The calendar is slow right now; shall I try again?"))
    response = await system.say("Is Dr. Lee free?")
    assert response.status_code == 200
    assert tool_errors(system.model.requests[-1]) == ["timeout"]
    assert response.json()["reply"] == "The calendar is slow right now; shall I try again?"
    # the command is not lost: it waits in the stream for a worker
    assert await system.redis.xlen("calendar.requests") >= 1
