"""One booking end to end: HTTP -> chat -> real openai SDK -> scripted model server ->
streams -> calendar and booking workers -> replies from facts, on the real Redis server."""

from __future__ import annotations

import json

import pytest

from services.chat.guards import find_leaks
from shared.settings import Settings
from testkit.calendar_days import at, next_weekday
from testkit.scripted_model import ScriptedModel, call, say
from testkit.system import make_settings
from tests.conftest import System
from tests.e2e.flows import answer, book, fetch, stored_bookings, tool_errors

LEAKS = ("BOOKING_CONFIRMATION", "{", "book_meeting", "fetch_free_slots", "calendar_id", "dr-lee")


@pytest.fixture
async def settings(redis_url: str, model: ScriptedModel) -> Settings:
    """Rounds enough for every bad call of one turn and the answer after them."""
    return make_settings(redis_url, model.base_url, max_model_rounds=8)


def assert_clean(reply: str) -> None:
    assert find_leaks(reply) == []
    for marker in LEAKS:
        assert marker not in reply


async def test_user_books_an_offered_slot_after_saying_yes_and_sees_only_natural_replies(system: System) -> None:
    day = next_weekday()
    system.model.script(
        fetch(day), book(2, participants=["alice@example.com"]), call("list_my_bookings", {"include_past": False})
    )
    first = await system.say("Hi, can I see Dr. Lee on " + day.isoformat() + "?")
    assert first.status_code == 200, first.text
    offered = first.json()
    assert offered["reply"].startswith(
        f"Dr. Lee is free on {at(day, 9):%a} {day.day} {at(day, 9):%b} at 09:00, 09:30, 10:00, 10:30, 11:00 or 11:30, "
        "and 8 more from 13:00 to 16:30"
    )
    assert len(offered["suggested_slots"]) > 2 and offered["pending_action"] is None
    assert_clean(offered["reply"])

    second = await system.say("The 10:00 one please, for Alice Smith, and invite alice@example.com")
    asked = second.json()
    assert asked["reply"] == asked["pending_action"]["question"]
    assert asked["reply"].endswith("at 10:00 for Alice Smith and invite alice@example.com?")
    assert await stored_bookings(system) == []

    third = await system.say("Yes please.")
    assert third.status_code == 200, third.text
    body = third.json()
    assert body["reply"] == f"Done: you're booked with Dr. Lee on {at(day, 10):%a} {day.day} {at(day, 10):%b} at 10:00."
    assert_clean(body["reply"])
    [booking] = await stored_bookings(system)
    assert booking.start == at(day, 10) and booking.participants == ["alice@example.com"]
    assert booking.user_id == "alice" and booking.attendee_name == "Alice Smith"
    assert body["bookings"][0]["booking_id"] == booking.booking_id

    listed = (await system.say("What have I booked?")).json()
    assert listed["reply"].startswith("You have one appointment: Dr. Lee on ")
    # the model never saw an internal id, in a tool result or anywhere else
    assert all(booking.booking_id not in json.dumps(r) for r in system.model.requests)


async def test_bad_tool_arguments_go_back_to_the_model_as_errors_and_store_nothing(system: System) -> None:
    day = next_weekday().isoformat()
    good = {
        "calendar_ids": ["dr-lee"],
        "date_from": day,
        "date_to": day,
        "duration_minutes": None,
        "timezone": None,
        "preferred_time": None,
        "move_booking": None,
    }
    system.model.script(
        call("fetch_free_slots", {**good, "calendar_ids": ["nobody"]}),
        call("fetch_free_slots", {**good, "date_from": "next tuesday"}),
        call("fetch_free_slots", {k: v for k, v in good.items() if k != "preferred_time"}),
        call("fetch_free_slots", "{not json"),
        call("teleport", {}),
        call("book_meeting", {"slot": f"Dr. Lee, {day} 10:00", "attendee_name": "Alice", "participants": []}),
        answer("Sorry, I could not book that. Which day and time would you like?"),
    )
    response = await system.say("Yes, book 10:00 please")
    assert response.status_code == 200
    errors = [json.loads(m["content"])["error"] for m in system.model.requests[-1]["messages"] if m["role"] == "tool"]
    assert [e["code"] for e in errors] == [
        "invalid_arguments",
        "invalid_arguments",
        "invalid_arguments",
        "invalid_arguments",
        "unknown_tool",
        "unknown_tool",
    ]
    assert "calendar_ids" in errors[0]["message"] and "date_from" in errors[1]["message"]
    assert "preferred_time" in errors[2]["message"]
    assert "book_meeting" not in errors[4]["message"], "the error names only the tools the state allows"
    assert "book_meeting" in errors[5]["message"], "book_meeting is not offered before any slot is"
    assert response.json()["reply"] == "Sorry, I could not book that. Which day and time would you like?"
    assert response.json()["pending_action"] is None
    assert await stored_bookings(system) == []


async def test_a_model_that_keeps_failing_gets_a_plain_question_and_nothing_is_stored(system: System) -> None:
    rounds = system.settings.max_model_rounds  # each call differs (the same call twice ends the turn sooner)
    system.model.script(*[call(f"teleport_{i}", {}) for i in range(rounds)], say("unused"))
    response = await system.say("Book me in")
    assert response.json()["reply"].startswith("Sorry, I couldn't finish that just now.")
    assert tool_errors(system.model.requests[-1]) == ["unknown_tool"] * (system.settings.max_model_rounds - 1)
    assert await stored_bookings(system) == []
