"""iCalendar (RFC 5545 / iTIP RFC 5546) invitations for booking events. Pure, no I/O.

One booking is one VEVENT whose UID never changes; every change raises its SEQUENCE, so a
calendar client replaces the earlier version: METHOD:REQUEST for a new or moved booking,
METHOD:CANCEL (STATUS:CANCELLED) when it is cancelled. Participants are ATTENDEEs.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Final

import icalendar
from icalendar import vCalAddress, vDDDTypes, vInt, vText

from shared.domain import Booking

PRODID: Final = "-//booking-assistant//booking service//EN"
ORGANIZER: Final = "bookings@booking-assistant.invalid"
"""Placeholder sender address; a deployment sets its own (the `.invalid` TLD never resolves)."""
UID_DOMAIN: Final = "booking-assistant"
MEDIA_TYPE: Final = "text/calendar"


def uid(booking: Booking) -> str:
    """The booking's stable iCalendar UID: the same for its whole life."""
    return f"{booking.booking_id}@{UID_DOMAIN}"


def invite(
    booking: Booking,
    *,
    method: str,
    sequence: int,
    stamp: datetime,
    calendar_name: str,
    organizer: str = ORGANIZER,
) -> str:
    """The .ics text for one booking version. `method` is REQUEST or CANCEL.

    The same text as rendering a whole VCALENDAR holding `vevent(...)`, whose constant lines
    around the VEVENT icalendar rendered once per method."""
    head, tail = _wrapper(method)
    event = vevent(
        booking, method=method, sequence=sequence, stamp=stamp, calendar_name=calendar_name, organizer=organizer
    )
    body: bytes = event.to_ical()
    return (head + body + tail).decode()


def calendar(method: str) -> icalendar.Calendar:
    """An empty VCALENDAR for one iTIP method."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"unsupported iTIP method {method!r}")
    cal = icalendar.Calendar()
    cal["prodid"] = vText(PRODID)
    cal["version"] = vText("2.0")
    cal["method"] = vText(method)
    return cal


@functools.cache
def _wrapper(method: str) -> tuple[bytes, bytes]:
    """The rendered VCALENDAR lines before and after its VEVENT."""
    text = calendar(method).to_ical()
    tail = b"END:VCALENDAR\r\n"
    if not text.endswith(tail):
        raise RuntimeError("unexpected VCALENDAR rendering")
    return text[: -len(tail)], tail


def vevent(
    booking: Booking,
    *,
    method: str,
    sequence: int,
    stamp: datetime,
    calendar_name: str,
    organizer: str = ORGANIZER,
) -> icalendar.Event:
    """The booking version as a VEVENT: its UID, SEQUENCE, times in UTC, ORGANIZER, ATTENDEEs."""
    # typed properties set directly: `Component.add` would infer each type, at twice the cost
    event = icalendar.Event()
    event["uid"] = vText(uid(booking))
    event["sequence"] = vInt(sequence)
    event["dtstamp"] = vDDDTypes(stamp.astimezone(UTC))
    event["dtstart"] = vDDDTypes(booking.start.astimezone(UTC))
    event["dtend"] = vDDDTypes(booking.end.astimezone(UTC))
    event["summary"] = vText(f"{calendar_name}: {booking.attendee_name}")
    event["status"] = vText("CANCELLED" if method == "CANCEL" else "CONFIRMED")
    host = vCalAddress(f"mailto:{organizer}")
    host.params["cn"] = calendar_name
    event["organizer"] = host
    guests = []
    for email in booking.participants:
        guest = vCalAddress(f"mailto:{email}")
        guest.params["role"] = "REQ-PARTICIPANT"
        guest.params["partstat"] = "NEEDS-ACTION"
        guest.params["rsvp"] = "TRUE" if method == "REQUEST" else "FALSE"
        guests.append(guest)
    if guests:
        event["attendee"] = guests
    return event
