"""The booking invitation (.ics): what RFC 5545 / iTIP clients rely on. Pure, no Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.booking import ics
from shared.domain import Booking
from testkit.ics_read import addresses, moment, number, parse, value

START = datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # the night clocks go forward
STAMP = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def booking(participants: list[str] | None = None, name: str = "Zoë O'Brien, Jr.") -> Booking:
    return Booking(
        booking_id="b" * 32,
        tenant_id="demo",
        calendar_id="dr-lee",
        user_id="alice",
        attendee_name=name,
        participants=participants if participants is not None else ["ann@example.com", "ben@example.org"],
        start=START,
        end=START + timedelta(minutes=30),
        created_at=STAMP,
    )


def test_a_request_parses_back_with_uid_sequence_times_organizer_and_attendees() -> None:
    text = ics.invite(booking(), method="REQUEST", sequence=0, stamp=STAMP, calendar_name="Dr. Lee")
    calendar, event = parse(text)

    assert value(calendar, "METHOD") == "REQUEST"
    assert value(calendar, "VERSION") == "2.0"
    assert value(event, "UID") == f"{'b' * 32}@booking-assistant"
    assert number(event, "SEQUENCE") == 0
    assert moment(event, "DTSTART") == START.astimezone(UTC)
    assert moment(event, "DTEND") == START.astimezone(UTC) + timedelta(minutes=30)
    assert moment(event, "DTSTAMP") == STAMP
    assert value(event, "STATUS") == "CONFIRMED"
    assert value(event, "SUMMARY") == "Dr. Lee: Zoë O'Brien, Jr."
    (organizer,) = addresses(event, "ORGANIZER")
    assert str(organizer) == f"mailto:{ics.ORGANIZER}"
    assert organizer.params["CN"] == "Dr. Lee"
    attendees = addresses(event, "ATTENDEE")
    assert [str(a) for a in attendees] == ["mailto:ann@example.com", "mailto:ben@example.org"]
    assert all(a.params["RSVP"] == "TRUE" and a.params["ROLE"] == "REQ-PARTICIPANT" for a in attendees)
    assert text.endswith("END:VCALENDAR\r\n") and "\r\n" in text


def test_a_cancel_keeps_the_uid_and_is_marked_cancelled() -> None:
    request = parse(ics.invite(booking(), method="REQUEST", sequence=1, stamp=STAMP, calendar_name="Dr. Lee"))[1]
    calendar, cancel = parse(ics.invite(booking(), method="CANCEL", sequence=2, stamp=STAMP, calendar_name="Dr. Lee"))

    assert value(calendar, "METHOD") == "CANCEL"
    assert value(cancel, "STATUS") == "CANCELLED"
    assert value(cancel, "UID") == value(request, "UID")
    assert number(cancel, "SEQUENCE") > number(request, "SEQUENCE")
    assert all(a.params["RSVP"] == "FALSE" for a in addresses(cancel, "ATTENDEE"))


def test_without_participants_there_is_no_attendee_line() -> None:
    _, event = parse(ics.invite(booking([]), method="REQUEST", sequence=0, stamp=STAMP, calendar_name="Room"))
    assert addresses(event, "ATTENDEE") == []


def test_the_text_equals_icalendar_rendering_the_whole_calendar() -> None:
    """The VCALENDAR lines are rendered once per method; the result must not differ."""
    for method in ("REQUEST", "CANCEL"):
        whole = ics.calendar(method)
        whole.add_component(ics.vevent(booking(), method=method, sequence=3, stamp=STAMP, calendar_name="Dr. Lee"))
        expected = whole.to_ical().decode()
        assert ics.invite(booking(), method=method, sequence=3, stamp=STAMP, calendar_name="Dr. Lee") == expected


def test_only_request_and_cancel_are_produced() -> None:
    with pytest.raises(ValueError, match="PUBLISH"):
        ics.invite(booking(), method="PUBLISH", sequence=0, stamp=STAMP, calendar_name="Dr. Lee")


PLAIN = st.text(alphabet="abcXYZ09 .@_+-", max_size=90)


@settings(max_examples=300, deadline=None)
@given(
    name=PLAIN,
    calendar_name=PLAIN,
    organizer=PLAIN,
    participants=st.lists(PLAIN, max_size=3),
    method=st.sampled_from(["REQUEST", "CANCEL"]),
    sequence=st.integers(0, 10_000),
    minutes=st.integers(0, 10**6),
)
def test_the_fast_plain_text_invitation_is_byte_for_byte_what_icalendar_writes(
    name: str,
    calendar_name: str,
    organizer: str,
    participants: list[str],
    method: str,
    sequence: int,
    minutes: int,
) -> None:
    start = STAMP + timedelta(minutes=minutes, seconds=17, microseconds=5)
    one = Booking.model_construct(**{**booking().__dict__, "attendee_name": name, "participants": participants})
    one = one.model_copy(update={"start": start, "end": start + timedelta(minutes=45)})
    args = {
        "method": method,
        "sequence": sequence,
        "stamp": start,
        "calendar_name": calendar_name,
        "organizer": organizer,
    }
    assert ics.invite(one, **args) == ics.invite_by_icalendar(one, **args)  # type: ignore[arg-type]


def test_text_that_needs_escaping_goes_through_icalendar() -> None:
    odd = booking(name='Zoë "Z" O\'Brien; Jr., line\nbreak')
    args = {"method": "REQUEST", "sequence": 1, "stamp": STAMP, "calendar_name": "Dr. Lee: 3rd floor"}
    assert ics.invite(odd, **args) == ics.invite_by_icalendar(odd, **args)  # type: ignore[arg-type]
    text = ics.invite(odd, **args)  # type: ignore[arg-type]
    assert 'Zoë "Z" O\'Brien\\; Jr.\\, line\\nbreak' in text.replace("\r\n ", "")
    assert str(parse(text)[1]["summary"]) == 'Dr. Lee: 3rd floor: Zoë "Z" O\'Brien; Jr., line\nbreak'
