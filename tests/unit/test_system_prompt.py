"""The system prompt: the same text all day (a local model's prefix cache stays valid), the
calendars with their hours, and the dates of the days ahead."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from services.chat.prompt import POLICY, system_prompt
from shared.domain import CalendarDirectory, CalendarSummary

BERLIN = ZoneInfo("Europe/Berlin")
DEMO = Path(__file__).resolve().parents[2] / "services" / "calendar" / "demo_calendars.json"
DIRECTORY = CalendarDirectory(
    calendars=[
        CalendarSummary.model_validate({k: c[k] for k in CalendarSummary.model_fields if k in c})
        for c in json.loads(DEMO.read_text())
    ]
)


def test_the_prompt_is_the_same_all_day_and_changes_the_next_day() -> None:
    # (a day of the first calendar's zone; Dr. Patel's New York is still on the day before at 00:05)
    morning = system_prompt(DIRECTORY, datetime(2026, 11, 26, 0, 5, tzinfo=BERLIN))
    evening = system_prompt(DIRECTORY, datetime(2026, 11, 26, 23, 55, tzinfo=BERLIN))
    tomorrow = system_prompt(DIRECTORY, datetime(2026, 11, 27, 0, 5, tzinfo=BERLIN))
    assert morning == evening
    assert tomorrow != morning
    assert morning.startswith(POLICY)  # the part that never changes comes first


def test_calendars_are_listed_with_their_ids_and_merged_working_hours() -> None:
    text = system_prompt(DIRECTORY, datetime(2026, 11, 26, 10, 0, tzinfo=BERLIN))
    assert (
        "- Dr. Lee (calendar_id dr-lee): 30 min slots, Mon-Thu 09:00-12:00, 13:00-17:00; Fri 09:00-13:00, "
        "time zone Europe/Berlin"
    ) in text
    assert "- Dr. Patel (calendar_id dr-patel): 45 min slots, Mon 08:00-16:00; Wed 08:00-16:00; Fri 08:00-16:00" in text


def test_the_days_ahead_carry_weekday_and_iso_date_and_today_is_named_in_the_first_zone() -> None:
    text = system_prompt(DIRECTORY, datetime(2026, 11, 26, 10, 0, tzinfo=BERLIN))
    assert "Today is Thursday 26 November 2026 (Europe/Berlin)." in text
    assert "Fri 27 Nov = 2026-11-27" in text and "Thu 03 Dec = 2026-12-03" in text
    assert "Fri 04 Dec" not in text


def test_without_calendars_the_model_is_told_booking_is_not_available() -> None:
    text = system_prompt(CalendarDirectory(calendars=[]), datetime(2026, 11, 26, 10, 0, tzinfo=BERLIN))
    assert "none configured: tell the user booking is not available yet." in text
