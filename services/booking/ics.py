"""iCalendar (RFC 5545 / iTIP RFC 5546) invitations for booking events. Pure, no I/O.

One booking is one VEVENT whose UID never changes; every change raises its SEQUENCE, so a
calendar client replaces the earlier version: METHOD:REQUEST for a new or moved booking,
METHOD:CANCEL (STATUS:CANCELLED) when it is cancelled. Participants are ATTENDEEs.
"""

from __future__ import annotations

import functools
import re
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


_PLAIN: Final = re.compile(r"[A-Za-z0-9 .@_+\-]*")
"""Text that needs no TEXT escaping, no parameter escaping and is one octet per character:
for such bookings `invite` writes the lines itself, byte for byte what icalendar writes
(tests/unit/test_booking_ics.py checks it), at a tenth of the cost."""
FOLD_AT: Final = 74
"""Octets per content line before icalendar folds it (it folds when a line would reach 75)."""


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

    The same text as rendering a whole VCALENDAR holding `vevent(...)`: plain text (see
    `_PLAIN`) is written directly, anything else goes through icalendar."""
    plain = (booking.booking_id, booking.attendee_name, calendar_name, organizer, *booking.participants)
    if method in ("REQUEST", "CANCEL") and all(_PLAIN.fullmatch(v) for v in plain):
        return _invite_plain(booking, method, sequence, stamp, calendar_name, organizer)
    return invite_by_icalendar(
        booking, method=method, sequence=sequence, stamp=stamp, calendar_name=calendar_name, organizer=organizer
    )


def _fold(line: str) -> str:
    return "\r\n ".join(line[i : i + FOLD_AT] for i in range(0, len(line), FOLD_AT)) if len(line) > FOLD_AT else line


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _param(value: str) -> str:
    return f'"{value}"' if " " in value else value


def _invite_plain(
    booking: Booking, method: str, sequence: int, stamp: datetime, calendar_name: str, organizer: str
) -> str:
    head, tail = _wrapper(method)
    rsvp = "TRUE" if method == "REQUEST" else "FALSE"
    lines = [
        "BEGIN:VEVENT",
        f"SUMMARY:{calendar_name}: {booking.attendee_name}",
        f"DTSTART:{_utc(booking.start)}",
        f"DTEND:{_utc(booking.end)}",
        f"DTSTAMP:{_utc(stamp)}",
        f"UID:{uid(booking)}",
        f"SEQUENCE:{sequence}",
        *(f"ATTENDEE;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT;RSVP={rsvp}:mailto:{e}" for e in booking.participants),
        f"ORGANIZER;CN={_param(calendar_name)}:mailto:{organizer}",
        f"STATUS:{'CANCELLED' if method == 'CANCEL' else 'CONFIRMED'}",
        "END:VEVENT",
    ]
    body = "".join(_fold(line) + "\r\n" for line in lines)
    return head.decode() + body + tail.decode()


def invite_by_icalendar(
    booking: Booking,
    *,
    method: str,
    sequence: int,
    stamp: datetime,
    calendar_name: str,
    organizer: str = ORGANIZER,
) -> str:
    """`invite` rendered by icalendar: any text, the reference for the plain path."""
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
