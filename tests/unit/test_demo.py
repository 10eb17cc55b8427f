"""The demo user's choices (pure): which day to ask for, which offered slot to take."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from devtools.demo import ChatReply, next_weekday, pick_slot, spoken_day
from testkit.calendar_days import BERLIN, at

DAY = date(2026, 11, 27)
OFFERED = [at(DAY, 9), at(DAY, 9, 30), at(DAY, 10)]


def reply(text: str, slots: list[datetime] = OFFERED) -> ChatReply:
    return ChatReply(reply=text, bookings=[], suggested_slots=slots)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 26, 10, 0, tzinfo=BERLIN), date(2026, 11, 27)),  # Thu -> Fri
        (datetime(2026, 11, 27, 23, 30, tzinfo=BERLIN), date(2026, 11, 30)),  # Fri night -> Mon
        (datetime(2026, 11, 29, 12, 0, tzinfo=BERLIN), date(2026, 11, 30)),  # Sun -> Mon
    ],
)
def test_the_demo_asks_for_the_next_weekday(now: datetime, expected: date) -> None:
    assert next_weekday(now) == expected


def test_a_day_is_spoken_as_people_write_it() -> None:
    assert spoken_day(DAY) == "Friday 27 November"


def test_the_user_picks_the_offered_slots_in_order_wrapping_around() -> None:
    listed = reply("Free from 09:00 to 10:00; which suits you?")
    assert [pick_slot(listed, i) for i in range(4)] == [at(DAY, 9), at(DAY, 9, 30), at(DAY, 10), at(DAY, 9)]
    assert pick_slot(reply("Nothing free.", []), 0) is None


def test_a_pending_action_is_read_from_the_response_not_from_its_words() -> None:
    body = {
        "reply": "Shall I book Dr. Lee on Fri 27 Nov at 09:30 for Alice Smith?",
        "bookings": [],
        "suggested_slots": [],
        "pending_action": {
            "action_id": "a" * 32,
            "kind": "book",
            "calendar_name": "Dr. Lee",
            "start": at(DAY, 9, 30).isoformat(),
            "question": "Shall I book Dr. Lee on Fri 27 Nov at 09:30 for Alice Smith?",
            "expires_at": at(DAY, 8).isoformat(),
        },
    }
    parsed = ChatReply.model_validate(body)
    assert parsed.pending_action is not None and parsed.pending_action.start == at(DAY, 9, 30)
