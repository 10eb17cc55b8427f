"""The booking assistant end to end: every tool through chat, streaming, extraction, failures."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from services.chat.loop import UNAVAILABLE
from shared.settings import Settings
from tests.conftest import System, make_settings
from tests.e2e.flows import Offer, fetch, stored_bookings, tool_errors
from tests.support.calendar_days import next_weekday
from tests.support.scripted_model import ScriptedModel, call, calls, last_tool_result, say


async def book_one(system: System, index: int = 0, user: str = "alice") -> Offer:
    offer = Offer(index)
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?", user=user)
    system.model.script(offer.book(), say("Done — you're booked with Dr. Lee."))
    response = await system.say("Yes please", user=user)
    assert response.json()["bookings"], response.text
    return offer


async def test_user_lists_their_bookings_and_sees_only_their_own(system: System) -> None:
    mine = await book_one(system, 0, user="alice")
    await book_one(system, 1, user="bob")
    system.model.script(call("list_my_bookings", {"include_past": False}), say("You have one appointment."))
    response = await system.say("What have I booked?", user="alice")
    listed = last_tool_result(system.model.requests[-1])["bookings"]
    assert [b["start"] for b in listed] == [datetime.fromisoformat(mine.start).isoformat(timespec="minutes")]
    assert response.json()["reply"] == "You have one appointment."


async def test_user_cancels_their_booking(system: System) -> None:
    offer = await book_one(system)
    system.model.script(
        call("cancel_booking", lambda _r: {"calendar_id": "dr-lee", "start": offer.start}),
        say("Your appointment is cancelled."),
    )
    response = await system.say(f"Please cancel my {offer.hhmm} appointment")
    assert response.json()["bookings"][0]["status"] == "cancelled"
    [booking] = await stored_bookings(system)
    assert booking.status == "cancelled"
    assert await system.redis.zcard("t:{demo}:cal:dr-lee:busy") == 0


async def test_user_reschedules_to_another_offered_slot_after_confirming(system: System) -> None:
    old = await book_one(system, 0)
    new = Offer(2)
    system.model.script(fetch(next_weekday()), new.propose)
    await system.say("Can I move it to later?")
    system.model.script(
        call("reschedule_booking", lambda _r: {"calendar_id": "dr-lee", "start": old.start, "new_start": new.start}),
        say("Your appointment has been moved."),
    )
    response = await system.say("Yes, move it please")
    moved = response.json()["bookings"][0]
    assert moved["status"] == "confirmed"
    assert datetime.fromisoformat(moved["start"]) == datetime.fromisoformat(new.start)
    [booking] = await stored_bookings(system)
    assert booking.start == datetime.fromisoformat(new.start)
    assert response.json()["reply"] == "Your appointment has been moved."


async def test_slot_taken_between_suggestion_and_booking_reaches_the_model_as_slot_taken(system: System) -> None:
    offer = Offer(0)
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    # bob takes the very slot alice was offered
    bob = Offer(0)
    system.model.script(fetch(next_weekday()), bob.propose, bob.book("Bob"), say("Booked."))
    await system.say("Is Dr. Lee free?", user="bob")
    await system.say("Yes please", user="bob")
    system.model.script(offer.book(), say("Sorry, that slot was just taken. Shall I look for another?"))
    response = await system.say("Yes please")
    assert tool_errors(system.model.requests[-1]) == ["slot_taken"]
    assert response.json()["reply"] == "Sorry, that slot was just taken. Shall I look for another?"
    assert [b.user_id for b in await stored_bookings(system)] == ["bob"]


async def test_model_server_errors_become_a_polite_reply_not_a_500(system: System) -> None:
    system.model.fail_with = 503
    response = await system.say("Hello")
    assert response.status_code == 200
    assert response.json()["reply"] == UNAVAILABLE


@pytest.fixture
async def settings(redis_url: str, model: ScriptedModel, request: pytest.FixtureRequest) -> Settings:
    """Short model timeout for the timeout test (this module); a test may add overrides."""
    return make_settings(redis_url, model.base_url, openai_timeout_s=1.0, **getattr(request, "param", {}))


async def test_model_timeout_becomes_a_polite_reply(system: System) -> None:
    system.model.delay_s = 2.0
    system.model.script(say("too late"))
    response = await system.say("Hello")
    assert response.status_code == 200
    assert response.json()["reply"] == UNAVAILABLE


async def test_streaming_sends_activity_then_reply_tokens_then_the_outcome(system: System) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    async with system.http.stream(
        "POST",
        "/v1/conversations/c1/messages?stream=true",
        json={"text": "Is Dr. Lee free?"},
        headers={"X-User-Id": "alice"},
    ) as response:
        body = "".join([chunk async for chunk in response.aiter_text()])
    events = [(b.split("\n")[0][7:], json.loads(b.split("\n")[1][6:])) for b in body.strip().split("\n\n")]
    kinds = [k for k, _ in events]
    assert kinds[0] == "activity" and events[0][1] == {"activity": "checking_availability"}
    assert kinds[-1] == "done" and set(kinds[1:-1]) == {"token"}
    assert "".join(d["text"] for k, d in events if k == "token") == events[-1][1]["reply"]
    assert events[-1][1]["suggested_slots"]
    assert "fetch_free_slots" not in body


async def test_extract_turns_an_email_into_a_booking_request(system: System) -> None:
    system.model.script(
        say(
            json.dumps(
                {
                    "attendee_name": "Jane Roe",
                    "attendee_email": "jane@example.com",
                    "calendar_hint": "Dr. Lee",
                    "preferred_dates": ["2026-12-01"],
                    "time_of_day": "morning",
                    "duration_minutes": 30,
                    "participants": [],
                    "notes": None,
                }
            )
        )
    )
    response = await system.http.post("/v1/extract", json={"text": "Hi, Jane Roe here, Dr. Lee on Dec 1 morning?"})
    assert response.status_code == 200
    assert response.json()["request"]["attendee_name"] == "Jane Roe"
    sent = system.model.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True


async def test_extract_reports_an_unusable_model_answer_without_failing(system: System) -> None:
    system.model.script(say('{"attendee_name": 5}'))
    response = await system.http.post("/v1/extract", json={"text": "hello"})
    assert response.status_code == 200
    assert response.json()["request"] is None and response.json()["problem"]


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/conversations/c1/messages", {"text": ""}, {}),
        ("/v1/conversations/c1/messages", {"txt": "hi"}, {}),
        ("/v1/conversations/c1/messages", {"text": "x" * 5000}, {}),
        ("/v1/conversations/bad%20id/messages", {"text": "hi"}, {}),
        ("/v1/conversations/c1/messages", {"text": "hi"}, {"X-User-Id": "Not Valid!"}),
        ("/v1/extract", {"text": ""}, {}),
    ],
)
async def test_bad_requests_get_a_4xx_with_a_reason(system: System, path: str, body: dict, headers: dict) -> None:
    response = await system.http.post(path, json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert system.model.requests == []


async def test_web_page_is_served_at_the_root(system: System) -> None:
    response = await system.http.get("/")
    assert response.status_code == 200 and "<form" in response.text


async def test_readiness_reports_redis_groups_and_model(system: System) -> None:
    response = await system.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"redis": True, "groups": True, "model": True}}


async def test_metrics_count_tool_calls_and_bookings_and_show_stream_lag(system: System) -> None:
    before = (await system.http.get("/metrics")).text
    await book_one(system)
    text = (await system.http.get("/metrics")).text
    assert 'booking_tool_calls_total{outcome="ok",tool="book_meeting"}' in text
    assert 'booking_stream_pending{group="booking",stream="booking.commands"} 0.0' in text
    assert (
        _value(text, 'booking_effects_total{status="confirmed"}')
        == _value(before, 'booking_effects_total{status="confirmed"}') + 1
    )


def _value(metrics_text: str, series: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_request_id_is_accepted_and_returned(system: System) -> None:
    system.model.script(say("Hello! How can I help?"))
    response = await system.say("Hi", **{"X-Request-ID": "gw-123"})
    assert response.headers["X-Request-ID"] == "gw-123"
    generated = await system.http.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32


async def test_parallel_tool_calls_in_one_model_message_are_all_answered(system: System) -> None:
    day = next_weekday(weekdays=(0, 2))  # Mon or Wed: both demo calendars work
    system.model.script(calls(fetch(day, "dr-lee"), fetch(day, "dr-patel")), say("Both are free that day."))
    response = await system.say("When are Dr. Lee and Dr. Patel free?")
    results = [json.loads(m["content"]) for m in system.model.requests[-1]["messages"] if m["role"] == "tool"]
    assert len(results) == 2 and all(r["slots"] for r in results)
    assert {r["timezone"] for r in results} == {"Europe/Berlin", "America/New_York"}
    assert response.json()["reply"] == "Both are free that day."


@pytest.mark.parametrize("settings", [{"write_reply_from_model": False}], indirect=True)
async def test_a_committed_booking_can_be_announced_from_the_facts_without_another_model_call(
    system: System,
) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    system.model.script(offer.book())
    calls_before = len(system.model.requests)
    response = await system.say("Yes please")
    local = datetime.fromisoformat(offer.start)
    assert response.json()["reply"] == f"Your appointment with Dr. Lee on {local:%a %d %b at %H:%M} is booked."
    assert len(system.model.requests) - calls_before == 1
