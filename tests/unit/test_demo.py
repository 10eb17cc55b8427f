"""The demo user's choices (pure): which day to ask for, which offered slot to take."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from services.demo import ChatReply, next_weekday, pick_slot, proposal, spoken_day
from tests.support.calendar_days import BERLIN, at

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


@pytest.mark.parametrize(
    "text", ["Shall I book Dr. Lee on Fri 27 Nov at 09:30 for you?", "You can book Dr. Lee on 27 November at 09:30."]
)
def test_a_reply_naming_one_offered_time_is_a_proposal_the_user_can_say_yes_to(text: str) -> None:
    assert proposal(reply(text)) == at(DAY, 9, 30)


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Lee is free at 09:00, 09:30 and 10:00. Which time suits you?",  # several times
        "Shall I book Dr. Lee on Fri 27 Nov at 15:00 for you?",  # a time that was not offered
        "Dr. Lee is free from 09:30 to 17:00.",  # a range, not one time
        "Which time suits you?",  # no time
    ],
)
def test_anything_else_is_no_proposal(text: str) -> None:
    assert proposal(reply(text)) is None


def test_the_user_picks_among_the_times_the_reply_names_else_among_all_offered() -> None:
    listed = reply("Free at 09:30 or 10:00; which suits you?")
    assert [pick_slot(listed, i) for i in range(3)] == [at(DAY, 9, 30), at(DAY, 10), at(DAY, 9, 30)]
    assert pick_slot(reply("Which time suits you?"), 1) == at(DAY, 9, 30)
    assert pick_slot(reply("Nothing free.", []), 0) is None
