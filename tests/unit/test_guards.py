"""Leak guard, false-claim check and the clock-time reader: pure functions, tested alone."""

from __future__ import annotations

import pytest

from services.chat.guards import (
    find_false_claim,
    find_leaks,
    strip_leaks,
    times_named,
)


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


def test_times_are_read_in_24h_and_12h_forms() -> None:
    assert times_named("at 2pm or 14:30 or 9.15 or 10 am") == {14 * 60, 14 * 60 + 30, 9 * 60 + 15, 10 * 60}
