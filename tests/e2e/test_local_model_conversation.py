"""A real booking conversation with the real local model, end to end: HTTP -> chat service (tools
from state, pending action, replies from facts, leak guard) -> openai SDK -> local model server
(Qwen2.5-Coder-1.5B, temperature 0) -> streams -> calendar and booking workers -> Redis.

The conversation is the one `make run` shows (devtools/demo.py): ask for Dr. Lee's free times on
the next weekday, pick an offered slot, answer the confirmation question with yes. Slow (seconds
per model call on 2 cores); skipped only when the llama-cpp-python wheel or the weights are absent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from devtools.demo import run_demo
from services.chat.guards import find_leaks
from services.model.settings import MODEL_ID
from shared.settings import Settings
from testkit.system import launch, make_settings
from tests.model.conftest import shared_local_model

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(900)]  # loading the model alone can take minutes under load

MARKERS = ("BOOKING_CONFIRMATION", "{", "}", "fetch_free_slots", "book_meeting", "calendar_id", "dr-lee", "<", "`")


@pytest.fixture
async def settings(redis_url: str) -> Settings:
    """The system of this module talks to the real local model."""
    return make_settings(
        redis_url,
        f"{shared_local_model()}/v1",
        openai_model=MODEL_ID,
        openai_api_key=None,
        openai_temperature=0.0,
        openai_timeout_s=300.0,
        tool_timeout_s=10.0,
        model_allowed_tools=True,
    )


@pytest.fixture
async def chat(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with launch(settings) as system, httpx.AsyncClient(base_url=system.url, timeout=600) as http:
        yield http


async def test_a_user_books_an_offered_slot_with_the_local_model_and_sees_only_natural_replies(
    chat: httpx.AsyncClient, settings: Settings
) -> None:
    result = await run_demo(chat, settings.redis_url, tenant=settings.default_tenant, echo=print)

    assert result.problem is None, result.problem
    assert result.chosen is not None and result.stored is not None
    booking = result.stored
    # what is stored is the slot the user picked, which the calendar offered in this conversation
    assert booking.start == result.chosen
    assert booking.start in result.offered
    assert booking.calendar_id == "dr-lee" and booking.user_id == "alice"
    assert booking.attendee_name.strip()
    # ... and it was booked in the turn where the user said yes to the pending action for that very slot
    index, confirming = next((i, t) for i, t in enumerate(result.turns) if t.reply.bookings)
    assert [b.booking_id for b in confirming.reply.bookings] == [booking.booking_id]
    asked = result.turns[index - 1].reply.pending_action
    assert asked is not None and asked.start == booking.start and confirming.user == "Yes, please."
    assert all(not t.reply.bookings for t in result.turns if t is not confirming)
    # every reply the user saw is plain language
    for turn in result.turns:
        reply = turn.reply.reply
        assert reply.strip()
        assert find_leaks(reply) == [], reply
        assert not any(marker in reply for marker in MARKERS), reply
