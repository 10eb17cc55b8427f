"""The server decides from state, the model fills in: which tools each model call is offered,
their enums, forced calls, and writes that wait as pending actions for the user's approval
(over HTTP, SSE, a typed answer, another chat instance). Scripted model, real Redis, real workers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from shared.keys import TenantKeys
from shared.settings import Settings
from testkit.calendar_days import BERLIN, next_weekday
from testkit.scripted_model import call
from testkit.system import launch
from tests.conftest import System
from tests.e2e.flows import (
    answer,
    book,
    booked_by_conversation,
    cancel,
    decide,
    enum_of,
    fetch,
    offered_tools,
    reschedule,
    stored_bookings,
    tool_errors,
)

ISO = re.compile(r"\d{4}-\d{2}-\d{2}T|[+-]\d{2}:\d{2}\b|UTC")


async def _propose(system: System, hhmm: str = "10:00") -> dict[str, object]:
    day = next_weekday()
    system.model.script(fetch(day), book(hhmm))
    await system.say(f"Is Dr. Lee free on {day.isoformat()}?")
    body = (await system.say(f"{hhmm} please, I'm Alice Smith")).json()
    assert body["pending_action"] is not None, body
    return dict(body)


@asynccontextmanager
async def second_chat(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another chat replica on the same Redis (its own instance id and reply stream)."""
    other = settings.model_copy(update={"instance_id": settings.instance_id + "-b"})
    async with launch(other, workers=()) as chat, httpx.AsyncClient(base_url=chat.url, timeout=30) as http:
        yield http


async def test_a_booking_is_asked_checked_proposed_and_written_only_after_the_users_yes(system: System) -> None:
    day = next_weekday()
    system.model.script(fetch(day), book("10:00"))
    first = (await system.say(f"Is Dr. Lee free on {day.isoformat()}?")).json()
    assert "Dr. Lee is free on" in first["reply"] and "at 09:00, 09:30, 10:00" in first["reply"]
    assert not ISO.search(first["reply"]), first["reply"]
    assert first["suggested_slots"] and first["pending_action"] is None
    opening = system.model.requests[0]
    # nothing offered yet: no tool that books, cancels or moves; calendars are an enum
    assert opening["tool_choice"] == "required"
    assert sorted(offered_tools(opening)) == ["answer", "fetch_free_slots", "list_my_bookings"]
    assert "dr-lee" in enum_of(opening, "fetch_free_slots", "calendar_ids")

    second = (await system.say("10:00 please, I'm Alice Smith")).json()
    picking = system.model.requests[1]
    assert "book_meeting" in offered_tools(picking)
    assert any(label.endswith("10:00") for label in enum_of(picking, "book_meeting", "slot"))
    action = second["pending_action"]
    assert second["reply"] == action["question"]
    assert (
        action["question"].startswith("Shall I book Dr. Lee on ") and "at 10:00 for Alice Smith?" in action["question"]
    )
    assert await stored_bookings(system) == []

    third = (await system.say("Yes!")).json()
    assert len(system.model.requests) == 2, "an obvious yes needs no model call"
    [booking] = await stored_bookings(system)
    assert third["reply"].startswith("Done: you're booked with Dr. Lee on ") and third["reply"].endswith("at 10:00.")
    assert [b["booking_id"] for b in third["bookings"]] == [booking.booking_id]
    assert booking.attendee_name == "Alice Smith" and third["pending_action"] is None


async def test_an_answer_in_other_words_is_read_by_a_structured_output_call(system: System) -> None:
    await _propose(system)
    system.model.script(decide("yes"))
    body = (await system.say("No problem, go ahead")).json()
    classify = system.model.requests[-1]
    schema = classify["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == ["yes", "no", "something_else"]
    assert schema["required"] == ["time_named", "emails_named", "name_given", "answer"]
    assert len(await stored_bookings(system)) == 1, body


async def test_a_spanish_yes_books_and_a_french_no_does_not(system: System) -> None:
    await _propose(system)
    system.model.script(decide("yes"))
    await system.say("sí, resérvalo")
    assert len(await stored_bookings(system)) == 1
    day = next_weekday(after_days=3)
    system.model.script(fetch(day), book("11:00"), decide("no"))
    await system.say(f"Et le {day.isoformat()} ?", conversation="fr")
    await system.say("11:00 s'il vous plaît, Alice Smith", conversation="fr")
    body = (await system.say("non, finalement pas", conversation="fr")).json()
    assert body["reply"].startswith("All right, nothing was booked")
    assert len(await stored_bookings(system)) == 1


async def test_a_change_of_mind_drops_the_pending_action_and_the_model_picks_again(system: System) -> None:
    first = await _propose(system, "10:00")
    system.model.script(decide("something_else"), book("11:00"))
    body = (await system.say("Actually, make it 11:00 instead.")).json()
    assert body["pending_action"]["question"].endswith("at 11:00 for Alice Smith?")
    old = first["pending_action"]["action_id"]  # type: ignore[index]
    late = await system.http.post(f"/v1/conversations/c1/actions/{old}/approve", headers={"X-User-Id": "alice"})
    assert late.status_code == 409 and "replaced" in late.json()["detail"]
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert f"{booking.start.astimezone(BERLIN):%H:%M}" == "11:00"


async def test_approving_twice_at_once_books_once_and_the_second_gets_409(system: System) -> None:
    body = await _propose(system)
    action_id = body["pending_action"]["action_id"]  # type: ignore[index]
    url = f"/v1/conversations/c1/actions/{action_id}/approve"
    first, second = await asyncio.gather(
        system.http.post(url, headers={"X-User-Id": "alice"}), system.http.post(url, headers={"X-User-Id": "alice"})
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    assert len(await stored_bookings(system)) == 1
    again = await system.say("yes")  # a typed yes after the button: nothing pending any more
    assert again.status_code == 200
    assert len(await stored_bookings(system)) == 1


async def test_declining_writes_nothing_and_a_declined_action_cannot_be_approved(system: System) -> None:
    body = await _propose(system)
    action_id = body["pending_action"]["action_id"]  # type: ignore[index]
    base = f"/v1/conversations/c1/actions/{action_id}"
    declined = await system.http.post(f"{base}/decline", headers={"X-User-Id": "alice"})
    assert declined.status_code == 200 and declined.json()["reply"].startswith("All right, nothing was booked")
    approve = await system.http.post(f"{base}/approve", headers={"X-User-Id": "alice"})
    assert approve.status_code == 409 and "declined" in approve.json()["detail"]
    assert await stored_bookings(system) == []


async def test_another_users_or_an_unknown_action_is_404_and_writes_nothing(system: System) -> None:
    body = await _propose(system)
    action_id = body["pending_action"]["action_id"]  # type: ignore[index]
    theirs = await system.http.post(f"/v1/conversations/c1/actions/{action_id}/approve", headers={"X-User-Id": "bob"})
    assert theirs.status_code == 404
    unknown = await system.http.post(f"/v1/conversations/c1/actions/{'0' * 32}/approve", headers={"X-User-Id": "alice"})
    assert unknown.status_code == 404
    malformed = await system.http.post("/v1/conversations/c1/actions/nope/approve", headers={"X-User-Id": "alice"})
    assert malformed.status_code == 422
    assert await stored_bookings(system) == []


async def test_an_expired_action_is_409_and_writes_nothing(system: System) -> None:
    body = await _propose(system)
    action_id = body["pending_action"]["action_id"]  # type: ignore[index]
    await system.redis.hset(TenantKeys("demo").action(action_id), "expires", 1)
    response = await system.http.post(
        f"/v1/conversations/c1/actions/{action_id}/approve", headers={"X-User-Id": "alice"}
    )
    assert response.status_code == 409 and "expired" in response.json()["detail"]
    assert await stored_bookings(system) == []


async def test_a_pending_action_is_approved_through_another_chat_instance(system: System) -> None:
    body = await _propose(system)
    action_id = body["pending_action"]["action_id"]  # type: ignore[index]
    async with second_chat(system.settings) as other:
        response = await other.post(f"/v1/conversations/c1/actions/{action_id}/approve", headers={"X-User-Id": "alice"})
        assert response.status_code == 200, response.text
        assert response.json()["reply"].startswith("Done: you're booked")
    assert len(await stored_bookings(system)) == 1


async def test_a_typed_yes_after_a_chat_restart_runs_the_stored_action(system: System) -> None:
    await _propose(system)
    async with second_chat(system.settings) as restarted:  # the first replica's state is in Redis only
        response = await restarted.post(
            "/v1/conversations/c1/messages", json={"text": "yes please"}, headers={"X-User-Id": "alice"}
        )
    assert response.json()["reply"].startswith("Done: you're booked")
    assert len(await stored_bookings(system)) == 1


async def test_the_sse_done_event_carries_the_pending_action(system: System) -> None:
    day = next_weekday()
    system.model.script(fetch(day), book("10:00"))
    await system.say(f"Is Dr. Lee free on {day.isoformat()}?")
    response = await system.http.post(
        "/v1/conversations/c1/messages?stream=true", json={"text": "10:00, Alice Smith"}, headers={"X-User-Id": "alice"}
    )
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    done = json.loads(events[-1].removeprefix("data: "))
    assert done["pending_action"]["question"].startswith("Shall I book Dr. Lee")


async def test_an_approval_after_the_slot_was_taken_offers_other_times_and_books_nothing_twice(system: System) -> None:
    day = next_weekday()
    system.model.script(fetch(day), book("10:00"))
    await system.say(f"Is Dr. Lee free on {day.isoformat()}?")
    await system.say("10:00 please, I'm Alice Smith")
    await booked_by_conversation(system, day, "10:00", user="bob", conversation="b")
    body = (await system.say("yes")).json()
    assert "is no longer free" in body["reply"] and "Dr. Lee is free on" in body["reply"]
    [booking] = await stored_bookings(system)
    assert booking.user_id == "bob"


async def test_a_cancellation_always_waits_for_the_users_yes(system: System) -> None:
    day = next_weekday()
    await booked_by_conversation(system, day, "10:00")
    # asked about free times, the model cancels instead: nothing happens without a yes
    system.model.script(cancel(0), decide("no"))
    body = (await system.say("When is Dr. Lee free next week?", conversation="c2")).json()
    assert body["pending_action"]["kind"] == "cancel"
    assert body["reply"].startswith("Shall I cancel your appointment with Dr. Lee on ")
    await system.say("no, I asked about free times", conversation="c2")
    [booking] = await stored_bookings(system)
    assert booking.status == "confirmed"
    system.model.script(cancel(0))
    await system.say("Please cancel my appointment.", conversation="c2")
    await system.say("yes", conversation="c2")
    [booking] = await stored_bookings(system)
    assert booking.status == "cancelled"


async def test_the_users_bookings_are_the_enum_of_cancel_and_are_listed_from_facts(system: System) -> None:
    day = next_weekday()
    await booked_by_conversation(system, day, "10:00")
    system.model.script(call("list_my_bookings", {"include_past": False}))
    body = (await system.say("Which appointments do I have?", conversation="c2")).json()
    assert body["reply"].startswith("You have one appointment: Dr. Lee on ") and "at 10:00" in body["reply"]
    [label] = enum_of(system.model.requests[-1], "cancel_booking", "booking")
    assert label.startswith("Dr. Lee, ") and label.endswith("10:00")


async def test_a_reply_naming_a_time_no_tool_offered_forces_fetch_free_slots(system: System) -> None:
    day = next_weekday()
    system.model.script(answer("Dr. Lee is free on Tuesday at 10:00."), fetch(day))
    body = (await system.say("Can I see Dr. Lee on Tuesday?")).json()
    forced = system.model.requests[1]
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "fetch_free_slots"}}
    assert body["reply"].startswith("Dr. Lee is free on")


async def test_an_answer_about_something_else_gets_the_policy_reply(system: System) -> None:
    system.model.script(answer("Take 400 mg of ibuprofen.", topic="other"))
    body = (await system.say("How much ibuprofen can I take?")).json()
    assert body["reply"].startswith("I can only help with appointments here")


async def test_a_preferred_time_that_is_free_becomes_the_pending_action_at_once(system: System) -> None:
    day = next_weekday()
    system.model.script(fetch(day, preferred="10:00"))
    response = await system.say(
        f"Please book me with Dr. Lee on {day.isoformat()} at 10:00.", **{"X-User-Name": "Alice Smith"}
    )
    body = response.json()
    assert body["reply"].startswith("Yes, Dr. Lee is free on ") and body["reply"].endswith("for Alice Smith?")
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert booking.attendee_name == "Alice Smith"
    assert len(system.model.requests) == 1, "one model call for the whole booking"


async def test_an_agreeing_answer_that_names_another_time_is_no_yes_to_the_pending_action(system: System) -> None:
    """'Actually, make it 11:00' read by a small model as agreeing still books nothing at 10:00:
    the server compares the time the reading names with the action's."""
    await _propose(system, "10:00")
    system.model.script(decide("yes", time="11:00"), book("11:00"))
    body = (await system.say("Actually, make it 11:00 instead.")).json()
    assert body["pending_action"]["question"].endswith("at 11:00 for Alice Smith?")
    assert await stored_bookings(system) == []


async def test_an_agreeing_answer_that_names_a_new_invitee_is_no_yes_to_the_pending_action(system: System) -> None:
    await _propose(system, "10:00")
    system.model.script(
        decide("yes", time="10:00", emails=("bob@example.com",)), book("10:00", participants=["bob@example.com"])
    )
    body = (await system.say("Yes, 10:00, and invite bob@example.com")).json()
    assert "invite bob@example.com" in body["pending_action"]["question"]
    assert await stored_bookings(system) == []
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert booking.participants == ["bob@example.com"]


async def test_an_address_the_reading_invents_is_not_taken_for_a_new_invitee(system: System) -> None:
    """The 1.5B model reads 'Yes, please book it.' from Alice Smith as naming alice.smith@example.com."""
    await _propose(system, "10:00")
    system.model.script(decide("yes", time="10:00", emails=("alice.smith@example.com",)))
    body = (await system.say("Yes, please book it.")).json()
    assert body["reply"].startswith("Done: you're booked")
    [booking] = await stored_bookings(system)
    assert booking.participants == []


async def test_a_button_racing_a_typed_yes_books_once(system: System) -> None:
    body = await _propose(system)
    action_id = body["pending_action"]["action_id"]  # type: ignore[index]
    url = f"/v1/conversations/c1/actions/{action_id}/approve"
    button, typed = await asyncio.gather(system.http.post(url, headers={"X-User-Id": "alice"}), system.say("yes"))
    assert button.status_code in (200, 409) and typed.status_code == 200
    replies = [typed.json()["reply"]] + ([button.json()["reply"]] if button.status_code == 200 else [])
    assert sum(r.startswith("Done: you're booked") for r in replies) == 1
    assert len(await stored_bookings(system)) == 1


async def test_a_yes_that_gives_another_name_is_no_yes_to_the_pending_action(system: System) -> None:
    await _propose(system, "10:00")  # proposed for Alice Smith
    system.model.script(decide("yes", time="10:00", name="Alice Schmidt"), book("10:00", name="Alice Schmidt"))
    body = (await system.say("Ja, bitte. Ich heiße Alice Schmidt.")).json()
    assert body["pending_action"]["question"].endswith("for Alice Schmidt?")
    assert await stored_bookings(system) == []


async def test_a_name_the_reading_invents_changes_nothing(system: System) -> None:
    await _propose(system, "10:00")
    system.model.script(decide("yes", time="10:00", name="Bob"))
    await system.say("Yes, please go ahead.")
    [booking] = await stored_bookings(system)
    assert booking.attendee_name == "Alice Smith"


async def test_asking_again_for_times_already_listed_sends_the_model_to_book_one(system: System) -> None:
    """'The earliest, please' after a list: the 1.5B model fetched the same day again."""
    day = next_weekday()
    system.model.script(fetch(day), fetch(day), book(0))
    await system.say(f"What times does Dr. Lee have on {day.isoformat()}?")
    body = (await system.say("The earliest, please.")).json()
    assert system.model.requests[2]["tool_choice"] == {"type": "function", "function": {"name": "book_meeting"}}
    assert body["pending_action"]["question"].endswith("at 09:00 for Alice Smith?")


async def test_a_change_to_a_pending_move_stays_a_move(system: System) -> None:
    """'15:30 please' answering a proposed move: the 1.5B model booked a second appointment."""
    day = next_weekday()
    await booked_by_conversation(system, day, "10:00")
    system.model.script(fetch(day), reschedule("14:00"))
    await system.say(f"When is Dr. Lee free on {day.isoformat()}?", conversation="move")
    asked = (await system.say("Move my appointment to 14:00 please.", conversation="move")).json()
    assert asked["pending_action"]["kind"] == "reschedule"
    system.model.script(decide("something_else", time="15:30"), reschedule("15:30"))
    changed = (await system.say("15:30 please.", conversation="move")).json()
    assert "book_meeting" not in offered_tools(system.model.requests[-1])
    assert changed["pending_action"]["kind"] == "reschedule"
    assert changed["pending_action"]["question"].endswith("at 15:30?")


async def test_a_time_the_user_never_wrote_is_no_wish_and_proposes_nothing(system: System) -> None:
    """The 1.5B model read 'in the afternoon' as preferred_time 14:00 and proposed it."""
    day = next_weekday()
    system.model.script(fetch(day, preferred="14:00"))
    body = (await system.say(f"Can I see Dr. Lee on {day:%A} in the afternoon?")).json()
    assert body["pending_action"] is None and body["reply"].startswith("Dr. Lee is free on")


async def test_picking_a_time_checked_to_move_a_booking_moves_it_and_books_nothing_new(system: System) -> None:
    """'15:30 please' after times fetched to move a booking: the 1.5B model called book_meeting
    (and asked for 60 minutes nobody wanted); the pick moves the booking, at its own length."""
    day = next_weekday()
    await booked_by_conversation(system, day, "10:00")
    [before] = await stored_bookings(system)
    system.model.script(fetch(day, move=0, minutes=60), book("15:30"))
    listed = (await system.say(f"Can I move my appointment on {day:%A} to the afternoon?", conversation="m")).json()
    assert listed["pending_action"] is None and "16:30" in listed["reply"], "30-minute times, the booking's length"
    asked = (await system.say("15:30 please.", conversation="m")).json()
    assert asked["pending_action"]["kind"] == "reschedule"
    assert asked["reply"].startswith("Shall I move your appointment with Dr. Lee from ")
    await system.say("Yes.", conversation="m")
    [after] = await stored_bookings(system)
    assert after.booking_id == before.booking_id and after.start.astimezone(BERLIN).strftime("%H:%M") == "15:30"
    assert after.end - after.start == before.end - before.start


async def test_a_later_check_without_a_move_books_a_second_appointment(system: System) -> None:
    day = next_weekday()
    await booked_by_conversation(system, day, "10:00")
    system.model.script(fetch(day, move=0), fetch(day, to=next_weekday(after_days=3)), book("15:30"))
    await system.say(f"Can I move my appointment on {day:%A}?", conversation="m")
    await system.say("Actually I'd rather keep it and book another one. What's free?", conversation="m")
    asked = (await system.say("15:30 please.", conversation="m")).json()
    assert asked["pending_action"]["kind"] == "book"


async def test_a_length_the_user_never_wrote_is_dropped_and_the_calendar_default_used(system: System) -> None:
    day = next_weekday()
    system.model.script(fetch(day, minutes=45))
    body = (await system.say(f"Is Dr. Lee free on {day.isoformat()}?")).json()
    assert body["reply"].startswith("Dr. Lee is free on") and body["suggested_slots"], body


async def test_a_refused_call_repeated_word_for_word_ends_the_turn_at_once(system: System) -> None:
    """The 1.5B model sent the same invalid fetch six times in one turn (54 s)."""
    day = next_weekday()
    system.model.script(fetch(day, minutes=45), fetch(day, minutes=45), fetch(day, minutes=45))
    body = (await system.say(f"I need 45 minutes with Dr. Lee on {day.isoformat()}.")).json()
    assert len(system.model.requests) == 2
    assert "invalid_arguments" in tool_errors(system.model.requests[1])
    assert body["pending_action"] is None and "Which calendar and day" in body["reply"]
