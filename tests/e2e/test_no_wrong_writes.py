"""Adversarial scripted models: nothing is written that the user was not offered and did not
confirm, and the user is never told something happened that did not (issue 11)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from services.calendar.store import CalendarStore
from services.chat.guards import find_leaks
from shared.keys import TenantKeys
from tests.conftest import System
from tests.e2e.flows import Offer, fetch, stored_bookings, tool_errors
from tests.support.calendar_days import at, next_weekday
from tests.support.scripted_model import call, last_tool_result, say


async def test_model_booking_before_the_user_confirmed_is_refused_and_nothing_is_stored(system: System) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free on Monday?")
    system.model.script(offer.book(), say("Would you like me to book it?"))
    response = await system.say("Hmm, let me think about it.")
    assert tool_errors(system.model.requests[-1]) == ["needs_confirmation"]
    assert await stored_bookings(system) == []
    assert response.json()["bookings"] == []


async def test_booking_a_slot_other_than_the_one_the_user_confirmed_is_refused(system: System) -> None:
    offer = Offer(0)
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    second_start = list(last_tool_result(system.model.requests[-1])["slots"].values())[1]
    system.model.script(offer.book(start=second_start), say("Which time would you like?"))
    await system.say(f"Yes, {offer.hhmm} please")
    assert tool_errors(system.model.requests[-1]) == ["needs_confirmation"]
    assert await stored_bookings(system) == []


async def test_a_time_the_system_never_offered_is_refused(system: System) -> None:
    day = next_weekday()
    never_offered = at(day, 16, 30).isoformat()  # beyond the first eight slots offered
    offer = Offer()
    system.model.script(fetch(day), offer.propose)
    await system.say("Is Dr. Lee free?")
    system.model.script(offer.book(start=never_offered), say("That time is not available."))
    await system.say("Yes, book 16:30 please")
    assert tool_errors(system.model.requests[-1]) == ["slot_not_offered"]
    assert await stored_bookings(system) == []


async def test_an_expired_offer_is_refused(system: System) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    offers_key = TenantKeys("demo").offers("alice.c1")
    for field in await system.redis.hkeys(offers_key):
        await system.redis.hset(offers_key, field, int(time.time()) - 1)
    system.model.script(offer.book(), say("That offer expired; shall I check again?"))
    await system.say("Yes please")
    assert tool_errors(system.model.requests[-1]) == ["offer_expired"]
    assert await stored_bookings(system) == []


async def test_an_invitee_the_user_never_saw_named_needs_a_new_confirmation(system: System) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    sneaky = call(
        "book_meeting",
        lambda _r: {
            "calendar_id": "dr-lee",
            "start": offer.start,
            "duration_minutes": None,
            "attendee_name": "Alice",
            "participants": ["eve@example.com"],
        },
    )
    system.model.script(sneaky, say("Shall I also invite eve@example.com?"))
    await system.say("Yes please")
    assert tool_errors(system.model.requests[-1]) == ["needs_confirmation"]
    assert "invite eve@example.com" in system.model.requests[-1]["messages"][-1]["content"]
    assert await stored_bookings(system) == []
    system.model.script(sneaky, say("Done, you're booked."))
    await system.say(f"Yes, {offer.hhmm}, and invite eve@example.com")
    [booking] = await stored_bookings(system)
    assert booking.participants == ["eve@example.com"]


async def test_an_off_topic_answer_is_replaced_by_the_policy_reply(system: System) -> None:
    system.model.script(say("You can take up to 400 milligrams of ibuprofen for a headache."))
    response = await system.say("How many milligrams of ibuprofen can I take for a headache?")
    reply = response.json()["reply"]
    assert reply.startswith("I can only help with appointments") and "ibuprofen" not in reply


async def test_claiming_a_booking_without_any_tool_call_is_corrected(system: System) -> None:
    system.model.script(
        say("Done — you're booked with Dr. Lee tomorrow at 10:00!"),
        say("Great news, you're booked for 10:00!"),  # it insists: the safe reply is used
    )
    response = await system.say("Book me with Dr. Lee tomorrow at 10")
    reply = response.json()["reply"]
    assert "booked" not in reply.lower()
    assert await stored_bookings(system) == []
    assert system.model.requests[-1]["messages"][-1]["content"].startswith("Rewrite your last reply")


async def test_a_claim_corrected_on_request_reaches_the_user_as_corrected(system: System) -> None:
    system.model.script(
        say("You're booked!"),
        say("I haven't booked anything yet. Which day suits you?"),
    )
    response = await system.say("Book me in")
    assert response.json()["reply"] == "I haven't booked anything yet. Which day suits you?"


async def test_repeating_book_meeting_after_success_returns_the_same_booking(system: System) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    system.model.script(offer.book(), offer.book(), say("Done — you're booked with Dr. Lee."))
    response = await system.say("Yes please")
    assert len(await stored_bookings(system)) == 1
    body = response.json()
    assert len({b["booking_id"] for b in body["bookings"]}) == 1


async def test_a_client_retrying_one_request_three_times_gets_one_effect_and_one_answer(system: System) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    system.model.script(offer.book(), say("Done — you're booked with Dr. Lee."))
    calls_before = len(system.model.requests)
    responses = await asyncio.gather(*(system.say("Yes please", **{"Idempotency-Key": "retry-1"}) for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.text for r in responses}) == 1
    assert len(system.model.requests) - calls_before == 2  # the model ran once: book, then answer
    assert len(await stored_bookings(system)) == 1
    reused = await system.say("Something else", **{"Idempotency-Key": "retry-1"})
    assert reused.status_code == 422


async def test_leaked_marker_and_json_are_rewritten_or_stripped(system: System) -> None:
    offer = Offer()
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    leaky = 'BOOKING_CONFIRMATION {"booking_id": "3f2a9c0e1b2d4f6a8b9c0d1e", "tool": "book_meeting"}'
    system.model.script(offer.book(), say(f"Done! {leaky}"), say(f"All set, you're booked.\n{leaky}"))
    response = await system.say("Yes please")
    reply = response.json()["reply"]
    assert find_leaks(reply) == []
    assert "BOOKING_CONFIRMATION" not in reply and "{" not in reply
    assert "booked" in reply
    assert len(await stored_bookings(system)) == 1


# --- slots named by their short reference ---


async def test_the_confirmed_slot_is_booked_by_its_ref_and_the_ref_never_reaches_the_user(system: System) -> None:
    offer = Offer(1)
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    system.model.script(
        offer.book(by_ref=True),
        say(f"Done, you're booked ({offer.ref})."),
        say(f"Done, you're booked. Your slot was {offer.ref}."),
    )
    response = await system.say("Yes please")
    reply = response.json()["reply"]
    assert offer.ref not in reply and find_leaks(reply) == []
    [booking] = await stored_bookings(system)
    assert booking.start == datetime.fromisoformat(offer.start)


async def test_a_ref_of_a_slot_the_user_did_not_confirm_is_refused(system: System) -> None:
    offer = Offer(0)
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?")
    other_ref = list(last_tool_result(system.model.requests[-1])["slots"])[1]
    system.model.script(
        call(
            "book_meeting",
            {
                "calendar_id": "dr-lee",
                "slot_ref": other_ref,
                "start": None,
                "duration_minutes": None,
                "attendee_name": "Alice",
                "participants": [],
            },
        ),
        say("Which time would you like?"),
    )
    await system.say(f"Yes, {offer.hhmm} please")
    assert tool_errors(system.model.requests[-1]) == ["needs_confirmation"]
    assert await stored_bookings(system) == []


async def test_a_ref_never_offered_in_this_conversation_is_refused_before_any_write(system: System) -> None:
    offer = Offer(0)
    system.model.script(fetch(next_weekday()), offer.propose)
    await system.say("Is Dr. Lee free?", user="bob")
    system.model.script(offer.book(by_ref=True), say("That slot is not available."))
    await system.say("Yes please")  # alice, in her own conversation, never saw bob's slots
    assert tool_errors(system.model.requests[-1]) == ["slot_not_offered"]
    assert await stored_bookings(system) == []


async def test_a_booking_is_moved_to_an_offered_slot_named_by_its_ref(system: System) -> None:
    old = Offer(0)
    system.model.script(fetch(next_weekday()), old.propose)
    await system.say("Is Dr. Lee free?")
    system.model.script(old.book(by_ref=True), say("Done, you're booked."))
    await system.say("Yes please")
    new = Offer(3)
    system.model.script(fetch(next_weekday()), new.propose)
    await system.say("Can I move it to later?")
    system.model.script(
        call(
            "reschedule_booking",
            lambda _r: {"calendar_id": "dr-lee", "start": old.start, "new_slot_ref": new.ref, "new_start": None},
        ),
        say("Your appointment has been moved."),
    )
    await system.say("Yes, move it please")
    [booking] = await stored_bookings(system)
    assert booking.start == datetime.fromisoformat(new.start)
    assert new.ref != old.ref


# --- short holds on proposed slots (Calendar.hold_seconds) ---


async def holding_dr_lee(system: System, seconds: int = 120) -> None:
    store = CalendarStore(system.redis)
    lee = await store.get("demo", "dr-lee")
    assert lee is not None
    await store.put(lee.model_copy(update={"hold_seconds": seconds}))


async def test_a_slot_proposed_to_one_user_is_not_offered_to_another_while_held(system: System) -> None:
    await holding_dr_lee(system)
    alice = Offer(0)
    system.model.script(fetch(next_weekday()), alice.propose)  # proposes exactly one slot: held for alice
    await system.say("Is Dr. Lee free?")
    system.model.script(fetch(next_weekday()), say("Which time suits you?"))
    await system.say("Is Dr. Lee free?", user="bob")
    assert alice.start not in last_tool_result(system.model.requests[-1])["slots"].values()
    system.model.script(fetch(next_weekday()), alice.propose)
    await system.say("Is Dr. Lee free?")  # her own hold does not hide the slot from alice
    assert alice.start in last_tool_result(system.model.requests[-1])["slots"].values()
    system.model.script(alice.book(), say("Done, you're booked."))
    await system.say("Yes please")
    [booking] = await stored_bookings(system)
    assert booking.start == datetime.fromisoformat(alice.start)
    assert await system.redis.zcard(TenantKeys("demo").holds("dr-lee")) == 0  # booking it released the hold


async def test_a_slot_held_for_another_user_is_refused_until_the_hold_expires(system: System) -> None:
    await holding_dr_lee(system)
    alice = Offer(0)
    system.model.script(fetch(next_weekday()), say("Which time suits you?"))  # offered, not proposed: no hold
    await system.say("Is Dr. Lee free?")
    first_start = next(iter(last_tool_result(system.model.requests[-1])["slots"].values()))
    bob = Offer(0)
    system.model.script(fetch(next_weekday()), bob.propose)  # bob is proposed the same first slot: held for bob
    await system.say("Is Dr. Lee free?", user="bob")
    assert bob.start == first_start
    alice.start = first_start
    system.model.script(alice.book(), say("That slot was just taken."))
    await system.say(f"Yes, {alice.hhmm} please")
    assert tool_errors(system.model.requests[-1]) == ["slot_taken"]
    assert await stored_bookings(system) == []
    holds = TenantKeys("demo").holds("dr-lee")
    [(member, start)] = await system.redis.zrange(holds, 0, -1, withscores=True)
    end_and_owner, _expires = member.decode().rsplit("|", 1)
    await system.redis.zadd(holds, {f"{end_and_owner}|{int(time.time()) - 1}": start})  # bob's hold ran out
    await system.redis.zrem(holds, member)
    system.model.script(alice.book(), say("Done, you're booked."))
    await system.say(f"Yes, {alice.hhmm} please")
    [booking] = await stored_bookings(system)
    assert booking.user_id == "alice"
