"""Leak guard, false-claim check and confirmation rule: pure functions, tested alone."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from services.chat.guards import (
    confirms,
    days_named,
    find_false_claim,
    find_leaks,
    invitees_confirmed,
    off_topic,
    proposes,
    strip_leaks,
    times_named,
)

SLOT = datetime(2026, 11, 30, 14, 0)


@pytest.mark.parametrize(
    "text",
    [
        'BOOKING_CONFIRMATION {"calendar": "dr-lee"}',
        'Here you go: {"start": "2026-11-30T14:00:00+01:00"}',
        "Your booking id is 3f2a9c0e-1b2d-4f6a-8b9c-0d1e2f3a4b5c.",
        "I called book_meeting for you.",
        "Reference: 9f86d081884c7d659a2feaa0c55ad015",
        "the correlation_id was call_abc12345",
        "Message sent to booking.commands",
        "I can book s3 for you at 14:00.",
        'Booked: {\n  "start": "2026-11-30T14:00:00+01:00"\n}',
        "Stored under t:{demo}:bk:42 for you.",
        "Details {start: 14:00, calendar: dr-lee} attached.",
    ],
)
def test_leaks_are_found_and_stripped(text: str) -> None:
    assert find_leaks(text)
    assert find_leaks(strip_leaks(text)) == []


def test_stripping_never_assembles_a_new_leak_from_the_pieces() -> None:
    assert find_leaks(strip_leaks("BOOKING_CONFIRbook_meetingMATION done")) == []


def test_a_leak_nested_deeper_than_the_strip_passes_is_dropped_as_a_whole() -> None:
    nested = "Sure: " + "book_m" * 50 + "book_meeting" + "eeting" * 50 + " at 14:00."
    assert strip_leaks(nested) == ""
    assert strip_leaks("Sure: book_mbook_meetingeeting at 14:00.") == "Sure: at 14:00."


@pytest.mark.parametrize(
    "text",
    ["Done — you're booked with Dr. Lee on Mon 30 Nov at 14:00.", "Dr. Lee is free at 9:00, 9:30 or 14:00."],
)
def test_natural_replies_pass_the_leak_guard(text: str) -> None:
    assert find_leaks(text) == []


def test_claims_are_checked_against_committed_effects() -> None:
    assert find_false_claim("Done, you're booked!", committed=[]) == "confirmed"
    assert find_false_claim("Done, you're booked!", committed=["confirmed"]) is None
    assert find_false_claim("Your appointment has been cancelled.", committed=["confirmed"]) == "cancelled"
    assert find_false_claim("Shall I book 14:00 for you?", committed=[]) is None
    assert find_false_claim("I booked Dr. Lee on Mon 30 Nov at 11:00.", committed=[]) == "confirmed"
    assert find_false_claim("Booked! See you Monday.", committed=[]) == "confirmed"
    assert find_false_claim("I cancelled it.", committed=[]) == "cancelled"
    assert find_false_claim("Which slot should be booked?", committed=[]) is None
    assert find_false_claim("You have successfully cancelled Dr. Lee's appointment.", committed=[]) == "cancelled"
    assert find_false_claim("You have successfully booked Dr. Lee on 27 November.", committed=[]) == "confirmed"
    assert find_false_claim("We've moved your appointment to 11:00.", committed=[]) == "rescheduled"
    assert find_false_claim("You can book Dr. Lee at 10:00.", committed=[]) is None


@pytest.mark.parametrize(
    ("user", "proposal", "expected"),
    [
        ("Yes please", "Shall I book Mon 30 Nov at 14:00?", True),
        ("yes, 2pm works", "", True),
        ("Yes", "I have 09:00, 10:00 or 14:00.", False),  # a list is not a proposal of one slot
        ("Yes, 10:00 please", "Shall I book 14:00?", False),  # the user named another time
        ("No, not that one", "Shall I book 14:00?", False),
        ("Hmm", "Shall I book 14:00?", False),
        ("Yes please", "Shall I book Tue 01 Dec at 14:00?", False),  # the proposal named another day
        ("Yes please", "Monday or Tuesday at 14:00?", False),  # two days proposed: which one?
        ("Yes, Monday at 14:00", "Monday or Tuesday at 14:00?", True),
        ("Yes, 14:00 on Tuesday", "Shall I book Mon 30 Nov at 14:00?", False),  # the user named another day
        ("Yes, 30 November at 2pm", "", True),
        ("Yes, Nov 30 at 14:00", "", True),
        ("Yes, 2026-12-01 at 14:00", "", False),
    ],
)
def test_confirmation_must_name_or_answer_this_very_slot(user: str, proposal: str, expected: bool) -> None:
    assert confirms(user, proposal, SLOT) is expected


def test_tomorrow_counts_as_a_day_relative_to_today() -> None:
    assert confirms("Yes, tomorrow at 14:00", "", SLOT, today=date(2026, 11, 29))
    assert not confirms("Yes, tomorrow at 14:00", "", SLOT, today=date(2026, 11, 30))
    assert confirms("Yes", "Shall I book today at 14:00?", SLOT, today=date(2026, 11, 30))


def test_days_are_read_as_weekdays_month_days_and_iso_dates() -> None:
    monday = date(2026, 11, 30)
    for text in ("Monday", "mon", "Montag", "30 Nov", "30th of November", "November 30", "2026-11-30"):
        [day] = days_named(text)
        assert day.matches(monday) and not day.matches(monday + timedelta(days=1)), text
    assert days_named("at 14:00 for 30 minutes this month") == []


def test_times_are_read_in_24h_and_12h_forms() -> None:
    assert times_named("at 2pm or 14:30 or 9.15 or 10 am") == {14 * 60, 14 * 60 + 30, 9 * 60 + 15, 10 * 60}


def test_invitees_count_as_confirmed_only_when_named_in_the_proposal_or_the_reply() -> None:
    assert invitees_confirmed("Yes please", "Shall I book 14:00 and invite Bob@Example.com?", ["bob@example.com"])
    assert invitees_confirmed("Yes, and invite bob@example.com", "Shall I book 14:00?", ["bob@example.com"])
    assert not invitees_confirmed("Yes please", "Shall I book 14:00?", ["eve@example.com"])
    assert invitees_confirmed("Yes please", "Shall I book 14:00?", [])


def test_a_text_proposes_a_slot_when_it_names_only_its_time_and_day() -> None:
    assert proposes("Shall I book Mon 30 Nov at 14:00?", SLOT)
    assert proposes("Shall I book 2pm?", SLOT)
    assert not proposes("Shall I book Tue 01 Dec at 14:00?", SLOT)
    assert not proposes("I have 09:00 and 14:00.", SLOT)
    assert not proposes("Which day suits you?", SLOT)


@pytest.mark.parametrize(
    ("user", "reply", "expected"),
    [
        ("How many milligrams of ibuprofen can I take?", "You can take up to 400 milligrams.", True),
        ("What's the weather in Berlin?", "It will be sunny and 20 degrees.", True),
        ("Write me a poem about cats", "Cats are soft, cats are sweet...", True),
        ("Is Dr. Lee free on Monday?", "Which time would suit you?", False),
        ("I'd like to see Dr Patel", "Sure, which day?", False),
        ("What's the weather?", "Sorry, I can only help with appointments.", False),
        ("Thanks!", "You're welcome!", False),
        ("Hello", "Hello! How can I help?", False),
        ("Could Room 7 work for us?", "Let me look.", False),
    ],
)
def test_a_reply_is_off_topic_only_when_neither_side_is_about_appointments(
    user: str, reply: str, expected: bool
) -> None:
    assert off_topic(user, reply, ["Dr. Lee", "Dr. Patel", "Room 7"]) is expected
