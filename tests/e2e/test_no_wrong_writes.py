"""Adversarial scripted models: nothing is written that the user was not offered and did not
approve, and the user is never told something happened that did not (issues 11 and 15).

Under the server-driven protocol the model can only name a slot the conversation was offered
(an enum of labels), every write it asks for on a calendar that requires confirmation becomes a
pending action the user must approve, and the approval runs exactly the stored call."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta

import pytest

from services.calendar.store import CalendarStore
from services.chat.facts import GAVE_UP, HOW_I_HELP, OFF_TOPIC
from services.chat.guards import find_leaks
from shared.domain import REF_IN_TEXT
from shared.keys import TenantKeys
from testkit.calendar_days import BERLIN, at, next_weekday
from testkit.scripted_model import Step, call, say
from tests.conftest import System
from tests.e2e.flows import (
    answer,
    book,
    booked_by_conversation,
    decide,
    enum_of,
    fetch,
    offered_labels,
    offered_tools,
    reschedule,
    stored_bookings,
    tool_errors,
)


def label(day: date, hour: int, minute: int = 0) -> str:
    """The label the state gives Dr. Lee's slot at that Berlin time (what book_meeting takes)."""
    return f"Dr. Lee, {at(day, hour, minute):%a %d %b %H:%M}"


def book_label(slot: str, name: str = "Alice Smith", participants: list[str] | None = None) -> Step:
    """book_meeting naming `slot` as it is, whether the state offered it or not."""
    return call("book_meeting", {"slot": slot, "attendee_name": name, "participants": participants or []})


async def offered_day(system: System, day: date, user: str = "alice", conversation: str = "c1") -> None:
    system.model.script(fetch(day))
    response = await system.say(f"Is Dr. Lee free on {day.isoformat()}?", conversation=conversation, user=user)
    assert response.json()["suggested_slots"], response.text


async def expire_offers(system: System, conversation: str = "alice.c1") -> None:
    offers = TenantKeys("demo").offers(conversation)
    for name in await system.redis.hkeys(offers):
        if b"|" in name and not name.startswith((b"ref|", b"at|")):
            await system.redis.hset(offers, name, int(time.time()) - 1)


async def test_a_book_call_before_the_users_yes_only_creates_a_pending_action(system: System) -> None:
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book("09:00"))
    response = await system.say("Hmm, let me think about it.")
    body = response.json()
    assert body["pending_action"]["kind"] == "book" and body["reply"] == body["pending_action"]["question"]
    assert body["bookings"] == [] and await stored_bookings(system) == []
    # an answer that is not a yes leaves nothing written either
    system.model.script(decide("something_else"), answer("Take your time. Which time would you like?"))
    later = (await system.say("I'm still thinking.")).json()
    assert later["pending_action"] is None and later["bookings"] == []
    assert await stored_bookings(system) == []


async def test_booking_another_slot_than_the_user_picked_asks_about_that_slot_and_writes_only_the_approved_one(
    system: System,
) -> None:
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book("09:30"))  # the user asked for 09:00
    wrong = (await system.say("09:00 please, I'm Alice Smith")).json()
    question = wrong["pending_action"]["question"]
    assert "at 09:30" in question and "09:00" not in question, "the user sees the slot the call names"
    assert await stored_bookings(system) == []
    system.model.script(decide("something_else"), book("09:00"))
    right = (await system.say("No, I said 09:00.")).json()
    assert "at 09:00" in right["pending_action"]["question"]
    stale = wrong["pending_action"]["action_id"]
    late = await system.http.post(f"/v1/conversations/c1/actions/{stale}/approve", headers={"X-User-Id": "alice"})
    assert late.status_code == 409, "the replaced proposal can no longer be approved"
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert booking.start == at(day, 9)


async def test_a_slot_the_system_never_offered_is_an_invalid_arguments_error_and_nothing_is_stored(
    system: System,
) -> None:
    day = next_weekday()
    await offered_day(system, day)  # the whole day is offered but 12:30 (the lunch break)
    never_offered = label(day, 12, 30)  # the lunch break: never a free start
    system.model.script(
        book_label(never_offered),
        call("book_meeting", {"slot": at(day, 12, 30).isoformat(), "attendee_name": "Alice", "participants": []}),
        answer("That time is not available; which of the offered times suits you?"),
    )
    response = await system.say("Book 12:30 please, I'm Alice Smith")
    picking = system.model.requests[1]
    assert never_offered not in enum_of(picking, "book_meeting", "slot")
    assert label(day, 9) in enum_of(picking, "book_meeting", "slot")
    assert tool_errors(system.model.requests[-1]) == ["invalid_arguments", "invalid_arguments"]
    assert response.json()["pending_action"] is None
    assert await stored_bookings(system) == []


async def test_after_the_offers_expired_book_meeting_is_not_offered_and_a_call_to_it_is_refused(
    system: System,
) -> None:
    day = next_weekday()
    await offered_day(system, day)
    await expire_offers(system)
    system.model.script(book_label(label(day, 9)), answer("Those times have expired; shall I check again?"))
    response = await system.say("09:00 please, I'm Alice Smith")
    assert "book_meeting" not in offered_tools(system.model.requests[1])
    assert tool_errors(system.model.requests[-1]) == ["unknown_tool"]
    assert response.json()["pending_action"] is None
    assert await stored_bookings(system) == []


async def test_an_offer_that_expired_before_the_users_yes_writes_nothing_and_offers_times_again(
    system: System,
) -> None:
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book("09:00"))
    await system.say("09:00 please, I'm Alice Smith")
    await expire_offers(system)
    body = (await system.say("yes")).json()
    assert body["reply"].startswith("Sorry, ") and "is no longer free" in body["reply"]
    assert "Dr. Lee is free on" in body["reply"] and body["suggested_slots"]
    assert body["bookings"] == [] and await stored_bookings(system) == []


async def test_an_invitee_is_named_in_the_question_and_only_the_approved_call_is_written(system: System) -> None:
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book("09:00", participants=["eve@example.com"]))
    asked = (await system.say("09:00 please, I'm Alice Smith")).json()
    assert asked["pending_action"]["question"].endswith("for Alice Smith and invite eve@example.com?")
    assert asked["pending_action"]["participants"] == ["eve@example.com"]
    assert await stored_bookings(system) == []
    system.model.script(decide("something_else"), book("09:00"))
    await system.say("Without Eve, please.")
    calls_before = len(system.model.requests)
    await system.say("yes")  # runs the stored call as it is: no model call can add anyone now
    assert len(system.model.requests) == calls_before
    [booking] = await stored_bookings(system)
    assert booking.participants == [] and booking.start == at(day, 9)


async def test_an_invitee_the_user_approved_is_invited(system: System) -> None:
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book("09:00", participants=["eve@example.com"]))
    await system.say("09:00 please, I'm Alice Smith, and invite eve@example.com")
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert booking.participants == ["eve@example.com"]


async def test_an_answer_about_something_else_is_replaced_by_the_policy_reply(system: System) -> None:
    system.model.script(answer("You can take up to 400 milligrams of ibuprofen for a headache.", topic="other"))
    response = await system.say("How many milligrams of ibuprofen can I take for a headache?")
    reply = response.json()["reply"]
    assert reply == OFF_TOPIC and "ibuprofen" not in reply


async def test_claiming_a_booking_without_any_write_is_replaced_by_a_question(system: System) -> None:
    system.model.script(answer("Done — you're booked with Dr. Lee tomorrow at 10:00!"))
    response = await system.say("Book me with Dr. Lee tomorrow at 10")
    body = response.json()
    assert body["reply"] == GAVE_UP and "booked" not in body["reply"].lower()
    assert body["bookings"] == [] and await stored_bookings(system) == []
    assert len(system.model.requests) == 1


@pytest.mark.parametrize(
    "text",
    ["Done — you're booked with Dr. Lee tomorrow at 10:00!", "You can take up to 400 milligrams of ibuprofen."],
    ids=["a claim", "off-topic advice"],
)
async def test_text_despite_tool_choice_is_asked_for_the_answer_call_then_replaced(system: System, text: str) -> None:
    """A server that ignores tool_choice answers in text, which says nothing of its topic: the
    chat asks once for the `answer` call, and text again gets a plain offer of help."""
    system.model.script(say(text), say(text))
    body = (await system.say("Book me with Dr. Lee tomorrow at 10")).json()
    assert system.model.requests[1]["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    assert body["reply"] == HOW_I_HELP
    assert await stored_bookings(system) == []


async def test_text_followed_by_an_answer_call_is_checked_like_any_answer(system: System) -> None:
    system.model.script(say("Hello there"), answer("Take 400 mg of ibuprofen.", topic="other"))
    body = (await system.say("How much ibuprofen can I take?")).json()
    assert body["reply"] == OFF_TOPIC


async def test_an_honest_answer_that_mentions_booking_reaches_the_user_unchanged(system: System) -> None:
    system.model.script(answer("I haven't booked anything yet. Which day suits you?"))
    response = await system.say("Book me in")
    assert response.json()["reply"] == "I haven't booked anything yet. Which day suits you?"


async def test_repeating_a_booking_that_was_made_writes_no_second_booking(system: System) -> None:
    day = next_weekday()
    first = await booked_by_conversation(system, day, "10:00", conversation="c1")
    # the model books the very same slot again: the user is told they hold it, nothing waits for a yes
    system.model.script(book("10:00"))
    asked = (await system.say("Book it please")).json()
    assert asked["pending_action"] is None
    assert asked["reply"].startswith("You already have that appointment: Dr. Lee on ")
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert booking.start == at(day, 10) and booking.booking_id == first["bookings"][0]["booking_id"]


async def test_a_client_retrying_one_request_three_times_gets_one_effect_and_one_answer(system: System) -> None:
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book("09:00"))
    calls_before = len(system.model.requests)
    pick = "09:00 please, I'm Alice Smith"
    proposals = await asyncio.gather(*(system.say(pick, **{"Idempotency-Key": "retry-0"}) for _ in range(3)))
    assert [r.status_code for r in proposals] == [200, 200, 200]
    assert len({r.json()["pending_action"]["action_id"] for r in proposals}) == 1
    assert len(system.model.requests) - calls_before == 1  # the model ran once
    yeses = await asyncio.gather(*(system.say("Yes please", **{"Idempotency-Key": "retry-1"}) for _ in range(3)))
    assert [r.status_code for r in yeses] == [200, 200, 200]
    assert len({r.text for r in yeses}) == 1 and yeses[0].json()["reply"].startswith("Done: you're booked")
    assert len(await stored_bookings(system)) == 1
    reused = await system.say("Something else", **{"Idempotency-Key": "retry-1"})
    assert reused.status_code == 422


async def test_a_leaked_marker_json_id_and_tool_name_are_stripped_from_the_models_words(system: System) -> None:
    leaky = (
        'Which day suits you? BOOKING_CONFIRMATION {"booking_id": "3f2a9c0e1b2d4f6a8b9c0d1e", "tool": "book_meeting"}'
        "\nI can use fetch_free_slots (call_abc123def) for s3."
    )
    system.model.script(answer(leaky))
    reply = (await system.say("Hi, I need an appointment")).json()["reply"]
    assert find_leaks(reply) == []
    assert reply.startswith("Which day suits you?")
    for marker in ("BOOKING_CONFIRMATION", "{", "book_meeting", "fetch_free_slots", "call_abc", "3f2a9c0e"):
        assert marker not in reply


async def test_replies_from_facts_hold_no_leaks_through_a_whole_booking(system: System) -> None:
    body = await booked_by_conversation(system, next_weekday(), "10:00", conversation="c1")
    assert find_leaks(body["reply"]) == []
    for request in system.model.requests:
        for message in request["messages"]:
            if message["role"] == "assistant" and message.get("content"):
                assert find_leaks(message["content"]) == [], message["content"]


# --- slots named by their label, never by an internal reference ---


async def test_the_slot_is_named_by_its_label_and_no_ref_reaches_the_model_or_the_user(system: System) -> None:
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book(1))
    asked = (await system.say("The second one please, I'm Alice Smith")).json()
    done = (await system.say("yes")).json()
    refs = [k.decode()[4:] for k in await system.redis.hkeys(TenantKeys("demo").offers("alice.c1")) if k[:4] == b"ref|"]
    assert refs, "the calendar worker recorded references"
    shown = [asked["reply"], done["reply"]] + [
        str(m.get("content")) for r in system.model.requests for m in r["messages"] if m["role"] != "system"
    ]
    assert not any(REF_IN_TEXT.search(text) for text in shown)
    assert offered_labels(system.model.requests[-1])[:2] == [label(day, 9), label(day, 9, 30)]
    [booking] = await stored_bookings(system)
    assert booking.start == at(day, 9, 30)


async def test_a_slot_offered_only_in_another_users_conversation_is_not_in_the_enum_and_is_refused(
    system: System,
) -> None:
    bobs_day = next_weekday()
    alices_day = next_weekday(after_days=(bobs_day - datetime.now(BERLIN).date()).days + 1)
    await offered_day(system, bobs_day, user="bob")
    await offered_day(system, alices_day)
    bobs_slot = label(bobs_day, 9)
    system.model.script(book_label(bobs_slot), answer("That time is not available to you."))
    response = await system.say("Book 09:00 please, I'm Alice Smith")
    slots = enum_of(system.model.requests[-2], "book_meeting", "slot")
    assert bobs_slot not in slots and label(alices_day, 9) in slots
    assert tool_errors(system.model.requests[-1]) == ["invalid_arguments"]
    assert response.json()["pending_action"] is None
    assert await stored_bookings(system) == []


async def test_a_booking_is_moved_only_to_an_offered_slot_and_only_after_the_users_yes(system: System) -> None:
    day = next_weekday()
    await booked_by_conversation(system, day, "10:00")
    await offered_day(system, day)
    system.model.script(reschedule("11:00"))
    asked = (await system.say("Can I move it to 11:00?")).json()
    picking = system.model.requests[-1]
    assert enum_of(picking, "reschedule_booking", "new_slot") == enum_of(picking, "book_meeting", "slot")
    assert asked["pending_action"]["kind"] == "reschedule"
    assert asked["reply"].startswith("Shall I move your appointment with Dr. Lee from ")
    [unchanged] = await stored_bookings(system)
    assert unchanged.start == at(day, 10)
    done = (await system.say("yes")).json()
    assert done["reply"].startswith("Done: your appointment with Dr. Lee is moved to ")
    [booking] = await stored_bookings(system)
    assert booking.start == at(day, 11)


# --- short holds on proposed slots (Calendar.hold_seconds): placed with a pending action ---


async def holding_dr_lee(system: System, seconds: int = 120) -> None:
    store = CalendarStore(system.redis)
    lee = await store.get("demo", "dr-lee")
    assert lee is not None
    await store.put(lee.model_copy(update={"hold_seconds": seconds}))


async def test_a_slot_waiting_for_one_users_yes_is_not_offered_to_another_while_held(system: System) -> None:
    await holding_dr_lee(system)
    day = next_weekday()
    await offered_day(system, day)
    system.model.script(book("09:00"))
    await system.say("09:00 please, I'm Alice Smith")  # the pending action holds 09:00 for alice
    system.model.script(fetch(day))
    bob = (await system.say("Is Dr. Lee free?", user="bob")).json()
    assert at(day, 9) not in [datetime.fromisoformat(s) for s in bob["suggested_slots"]]
    assert at(day, 9, 30) in [datetime.fromisoformat(s) for s in bob["suggested_slots"]]
    # her own hold does not hide the slot from alice (asking over two days: the same day again
    # would be sent to book one of the times already listed)
    system.model.script(decide("something_else"), fetch(day, to=day + timedelta(days=1)))
    again = (await system.say("Which other times are there?")).json()
    assert at(day, 9) in [datetime.fromisoformat(s) for s in again["suggested_slots"]]
    system.model.script(book("09:00"))
    await system.say("09:00 then, Alice Smith")
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert booking.start == at(day, 9) and booking.user_id == "alice"
    assert await system.redis.zcard(TenantKeys("demo").holds("dr-lee")) == 0  # booking it released the hold


async def test_a_slot_held_for_another_users_pending_action_is_refused_until_the_hold_expires(system: System) -> None:
    await holding_dr_lee(system)
    day = next_weekday()
    await offered_day(system, day)  # alice is offered 09:00: offered, not proposed, so not held
    await offered_day(system, day, user="bob")
    system.model.script(book("09:00", name="Bob Example"))
    await system.say("09:00 please", user="bob")  # bob's pending action holds 09:00
    system.model.script(book("09:00"))
    await system.say("09:00 please, I'm Alice Smith")
    refused = (await system.say("yes")).json()
    assert "is no longer free" in refused["reply"] and refused["bookings"] == []
    assert await stored_bookings(system) == []
    holds = TenantKeys("demo").holds("dr-lee")
    [(member, start)] = await system.redis.zrange(holds, 0, -1, withscores=True)
    end_and_owner, _expires = member.decode().rsplit("|", 1)
    assert end_and_owner.endswith("bob.c1")
    await system.redis.zadd(holds, {f"{end_and_owner}|{int(time.time()) - 1}": start})  # bob's hold ran out
    await system.redis.zrem(holds, member)
    system.model.script(book("09:00"))
    await system.say("09:00 please, Alice Smith")
    await system.say("yes")
    [booking] = await stored_bookings(system)
    assert booking.user_id == "alice" and booking.start == at(day, 9)
    late = (await system.say("yes", user="bob")).json()  # bob's yes now finds the slot taken
    assert "is no longer free" in late["reply"]
    assert len(await stored_bookings(system)) == 1
