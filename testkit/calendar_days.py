"""Dates that hold Dr. Lee's working hours whatever day the tests run."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")


def next_weekday(after_days: int = 1, weekdays: tuple[int, ...] = (0, 1, 2, 3)) -> date:
    """The first Mon-Thu (by default) at least `after_days` from today in Berlin."""
    day = datetime.now(BERLIN).date() + timedelta(days=after_days)
    while day.weekday() not in weekdays:
        day += timedelta(days=1)
    return day


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
