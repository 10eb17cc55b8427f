"""One booking end to end: HTTP -> chat -> real openai SDK -> scripted model server ->
streams -> calendar and booking workers -> natural reply, on the real Redis server."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from services.chat.guards import find_leaks
from shared.domain import Booking
from shared.keys import TenantKeys
from tests.conftest import System
from tests.support.calendar_days import next_weekday
from tests.support.scripted_model import call, last_tool_result, say


def offered(req: dict[str, Any], index: int = 0) -> str:
    return str(list(last_tool_result(req)["slots"].values())[index])


async def stored_bookings(system: System) -> list[Booking]:
    keys = await system.redis.keys(TenantKeys("demo").booking("*"))
    return [Booking.model_validate_json(await system.redis.get(k)) for k in keys]


def assert_clean(reply: str) -> None:
    assert find_leaks(reply) == []
    for marker in ("BOOKING_CONFIRMATION", "{", "book_meeting", "fetch_free_slots", "calendar_id"):
        assert marker not in reply


async def test_user_books_offered_slot_after_confirming_and_sees_only_a_natural_reply(system: System) -> None:
    day = next_weekday()
    chosen: dict[str, str] = {}

    def propose(req: dict[str, Any]) -> dict[str, Any]:
        chosen["start"] = offered(req, 2)
        local = datetime.fromisoformat(chosen["start"])
        return {
            "role": "assistant",
            "content": f"Dr. Lee is free on {local:%a %d %b} at {local:%H:%M}. Shall I book it and invite "
            "alice@example.com?",
        }

    system.model.script(
        call(
            "fetch_free_slots",
            {
                "calendar_ids": ["dr-lee"],
                "date_from": day.isoformat(),
                "date_to": day.isoformat(),
                "duration_minutes": None,
                "timezone": None,
            },
        ),
        propose,
        call(
            "book_meeting",
            lambda req: {
                "calendar_id": "dr-lee",
                "start": chosen["start"],
                "duration_minutes": None,
                "attendee_name": "Alice Smith",
                "participants": ["alice@example.com"],
            },
        ),
        say("Done — you're booked with Dr. Lee. See you then!"),
    )
    first = await system.say("Hi, can I see Dr. Lee on " + day.isoformat() + "?")
    assert first.status_code == 200, first.text
    assert "Shall I book it and invite alice@example.com?" in first.json()["reply"]
    assert len(first.json()["suggested_slots"]) > 2
    assert await stored_bookings(system) == []

    second = await system.say("Yes please, book it.")
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["reply"] == "Done — you're booked with Dr. Lee. See you then!"
    assert_clean(body["reply"])
    [booking] = await stored_bookings(system)
    assert booking.start == datetime.fromisoformat(chosen["start"])
    assert booking.user_id == "alice" and booking.attendee_name == "Alice Smith"
    assert body["bookings"][0]["booking_id"] == booking.booking_id
    # the model never saw an internal id in a tool result
    tool_results = [m["content"] for m in system.model.requests[-1]["messages"] if m["role"] == "tool"]
    assert tool_results and all(booking.booking_id not in r for r in tool_results)
    assert json.loads(tool_results[-1])["status"] == "confirmed"


async def test_bad_tool_arguments_go_back_to_the_model_as_errors_and_store_nothing(system: System) -> None:
    day = next_weekday()
    naive = f"{day.isoformat()}T10:00:00"
    system.model.script(
        call(
            "book_meeting",
            {
                "calendar_id": "dr-lee",
                "start": naive,
                "duration_minutes": None,
                "attendee_name": "Alice",
                "participants": [],
            },
        ),
        call(
            "book_meeting",
            {
                "calendar_id": "nobody",
                "start": naive + "+01:00",
                "duration_minutes": None,
                "attendee_name": "Alice",
                "participants": [],
            },
        ),
        call("book_meeting", {"calendar_id": "dr-lee", "start": naive + "+01:00"}),
        call("book_meeting", "{not json"),
        call("teleport", {}),
        say("Sorry, I could not book that. Which time would you like?"),
    )
    response = await system.say("Yes, book 10:00 please")
    assert response.status_code == 200
    assert response.json()["reply"] == "Sorry, I could not book that. Which time would you like?"
    errors = [json.loads(m["content"])["error"] for m in system.model.requests[-1]["messages"] if m["role"] == "tool"]
    assert [e["code"] for e in errors] == [
        "invalid_arguments",
        "unknown_calendar",
        "invalid_arguments",
        "invalid_arguments",
        "unknown_tool",
    ]
    assert "timezone" in errors[0]["message"]
    assert "attendee_name" in errors[2]["message"]
    assert await stored_bookings(system) == []
