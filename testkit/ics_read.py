"""Reading .ics text back with icalendar, typed for the tests' assertions."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import icalendar
from icalendar import vCalAddress


def parse(text: str) -> tuple[icalendar.Calendar, icalendar.Component]:
    """The calendar and its one VEVENT."""
    calendar = icalendar.Calendar.from_ical(text)
    (event,) = calendar.walk("VEVENT")
    return calendar, event


def value(component: icalendar.Component, name: str) -> str:
    return str(component[name])


def number(component: icalendar.Component, name: str) -> int:
    return int(str(component[name]))


def moment(component: icalendar.Component, name: str) -> datetime:
    return cast(datetime, component.decoded(name))


def addresses(component: icalendar.Component, name: str) -> list[vCalAddress]:
    """Every ATTENDEE (or ORGANIZER) address; none when the property is absent."""
    found = component.get(name)
    items = found if isinstance(found, list) else [] if found is None else [found]
    return [cast(vCalAddress, item) for item in items]
