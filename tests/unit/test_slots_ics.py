"""iCalendar files reduced to busy intervals: what blocks time, what does not, and bad files."""

from __future__ import annotations

import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.calendar.ics import IcsError, busy_intervals, split_days
from shared import slots

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WINDOW = (slots.local_midnight(date(2026, 3, 23), BERLIN), slots.local_midnight(date(2026, 4, 6), BERLIN))


def vcalendar(*events: str, header: str = "") -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{header}{body}END:VCALENDAR\r\n"


def event(uid: str, *lines: str) -> str:
    return "\r\n".join((f"UID:{uid}", "SUMMARY:Therapy with Jane Doe", "ATTENDEE:mailto:jane@example.com", *lines))


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, zone: ZoneInfo = BERLIN) -> int:
    return slots.epoch(datetime(y, mo, d, h, mi, tzinfo=zone))


def test_an_event_with_a_tzid_blocks_its_local_time() -> None:
    text = vcalendar(
        event("a", "DTSTART;TZID=Europe/Berlin:20260324T100000", "DTEND;TZID=Europe/Berlin:20260324T113000")
    )
    assert busy_intervals(text, WINDOW, BERLIN) == [(at(2026, 3, 24, 10), at(2026, 3, 24, 11, 30))]


def test_a_utc_event_blocks_the_same_instant_in_any_calendar_zone() -> None:
    text = vcalendar(event("a", "DTSTART:20260324T090000Z", "DURATION:PT45M"))
    expected = [(at(2026, 3, 24, 10), at(2026, 3, 24, 10, 45))]
    assert busy_intervals(text, WINDOW, BERLIN) == busy_intervals(text, WINDOW, NEW_YORK) == expected


def test_a_floating_time_is_read_in_the_calendars_zone() -> None:
    text = vcalendar(event("a", "DTSTART:20260324T100000", "DTEND:20260324T110000"))
    assert busy_intervals(text, WINDOW, NEW_YORK) == [
        (at(2026, 3, 24, 10, zone=NEW_YORK), at(2026, 3, 24, 11, zone=NEW_YORK))
    ]


def test_a_floating_time_follows_the_files_x_wr_timezone() -> None:
    text = vcalendar(
        event("a", "DTSTART:20260324T100000", "DTEND:20260324T110000"), header="X-WR-TIMEZONE:America/New_York\r\n"
    )
    assert busy_intervals(text, WINDOW, BERLIN) == [
        (at(2026, 3, 24, 10, zone=NEW_YORK), at(2026, 3, 24, 11, zone=NEW_YORK))
    ]


def test_an_all_day_event_blocks_its_dates_from_local_midnight_to_midnight() -> None:
    text = vcalendar(event("a", "DTSTART;VALUE=DATE:20260325", "DTEND;VALUE=DATE:20260327"))
    assert busy_intervals(text, WINDOW, BERLIN) == [(at(2026, 3, 25), at(2026, 3, 27))]


def test_an_all_day_event_without_an_end_blocks_one_day() -> None:
    text = vcalendar(event("a", "DTSTART;VALUE=DATE:20260325"))
    assert busy_intervals(text, WINDOW, BERLIN) == [(at(2026, 3, 25), at(2026, 3, 26))]


def test_an_all_day_event_on_the_spring_forward_day_lasts_twenty_three_hours() -> None:
    text = vcalendar(event("a", "DTSTART;VALUE=DATE:20260329", "DTEND;VALUE=DATE:20260330"))
    ((start, end),) = busy_intervals(text, WINDOW, BERLIN)
    assert end - start == 23 * 3600


def test_a_transparent_event_is_free_time() -> None:
    text = vcalendar(event("a", "DTSTART:20260324T090000Z", "DTEND:20260324T100000Z", "TRANSP:TRANSPARENT"))
    assert busy_intervals(text, WINDOW, BERLIN) == []


def test_a_cancelled_event_is_free_time() -> None:
    text = vcalendar(event("a", "DTSTART:20260324T090000Z", "DTEND:20260324T100000Z", "STATUS:CANCELLED"))
    assert busy_intervals(text, WINDOW, BERLIN) == []


def test_a_zero_length_event_blocks_nothing() -> None:
    assert busy_intervals(vcalendar(event("a", "DTSTART:20260324T090000Z")), WINDOW, BERLIN) == []


def test_a_weekly_rule_with_an_exdate_skips_the_excluded_week_and_keeps_wall_time_across_dst() -> None:
    text = vcalendar(
        event(
            "a",
            "DTSTART;TZID=Europe/Berlin:20260323T100000",
            "DTEND;TZID=Europe/Berlin:20260323T110000",
            "RRULE:FREQ=DAILY;INTERVAL=3;COUNT=5",
            "EXDATE;TZID=Europe/Berlin:20260326T100000",
        )
    )
    days = [(23, 10), (29, 10), (1, 10), (4, 10)]  # 26 excluded; 29 is the spring-forward day
    expected = [(at(2026, 3 + (d < 23), d, h), at(2026, 3 + (d < 23), d, h + 1)) for d, h in days]
    assert busy_intervals(text, WINDOW, BERLIN) == expected


def test_a_moved_occurrence_blocks_its_new_time_only() -> None:
    text = vcalendar(
        event("a", "DTSTART:20260323T090000Z", "DTEND:20260323T100000Z", "RRULE:FREQ=DAILY;COUNT=3"),
        event("a", "RECURRENCE-ID:20260324T090000Z", "DTSTART:20260324T140000Z", "DTEND:20260324T150000Z"),
    )
    starts = [s for s, _ in busy_intervals(text, WINDOW, BERLIN)]
    assert starts == [at(2026, 3, 23, 10), at(2026, 3, 24, 15), at(2026, 3, 25, 10)]


def test_a_cancelled_occurrence_of_a_series_is_free_time() -> None:
    text = vcalendar(
        event("a", "DTSTART:20260323T090000Z", "DTEND:20260323T100000Z", "RRULE:FREQ=DAILY;COUNT=3"),
        event(
            "a",
            "RECURRENCE-ID:20260324T090000Z",
            "DTSTART:20260324T090000Z",
            "DTEND:20260324T100000Z",
            "STATUS:CANCELLED",
        ),
    )
    assert len(busy_intervals(text, WINDOW, BERLIN)) == 2


def test_an_endless_rule_is_expanded_only_up_to_the_window_end() -> None:
    text = vcalendar(event("a", "DTSTART:20200101T090000Z", "DTEND:20200101T100000Z", "RRULE:FREQ=DAILY"))
    blocks = busy_intervals(text, WINDOW, BERLIN)
    assert len(blocks) == 14
    assert all(WINDOW[0] <= s and e <= WINDOW[1] for s, e in blocks)


def test_events_are_clipped_to_the_window_and_overlapping_ones_merged() -> None:
    text = vcalendar(
        event("a", "DTSTART:20260322T220000Z", "DTEND:20260323T010000Z"),
        event("b", "DTSTART:20260324T090000Z", "DTEND:20260324T110000Z"),
        event("c", "DTSTART:20260324T100000Z", "DTEND:20260324T120000Z"),
        event("d", "DTSTART:20270101T100000Z", "DTEND:20270101T120000Z"),
    )
    assert busy_intervals(text, WINDOW, BERLIN) == [
        (WINDOW[0], at(2026, 3, 23, 2)),
        (at(2026, 3, 24, 10), at(2026, 3, 24, 13)),
    ]


def test_the_result_holds_only_intervals_never_event_details() -> None:
    text = vcalendar(event("secret-uid@example.com", "DTSTART:20260324T090000Z", "DTEND:20260324T100000Z"))
    blocks = busy_intervals(text, WINDOW, BERLIN)
    assert all(type(edge) is int for block in blocks for edge in block)


def test_too_many_occurrences_in_the_window_are_refused() -> None:
    text = vcalendar(event("a", "DTSTART:20260323T000000Z", "DTEND:20260323T000100Z", "RRULE:FREQ=HOURLY;COUNT=300"))
    with pytest.raises(IcsError, match="more than 100 events"):
        busy_intervals(text, WINDOW, BERLIN, limit=100)


def test_an_old_rule_that_would_take_hours_to_expand_is_refused_at_once() -> None:
    text = vcalendar(event("a", "DTSTART:20200101T000000Z", "DURATION:PT1S", "RRULE:FREQ=MINUTELY"))
    started = time.perf_counter()
    with pytest.raises(IcsError, match="UNTIL or COUNT"):
        busy_intervals(text, WINDOW, BERLIN)
    assert time.perf_counter() - started < 1


def test_by_parts_that_multiply_occurrences_count_towards_the_limit() -> None:
    # one DAILY period holds 3 hours x 60 minutes x 6 seconds: 2.5 million occurrences since 2020
    rule = "RRULE:FREQ=DAILY;BYHOUR=9,10,11;BYMINUTE=" + ",".join(map(str, range(60))) + ";BYSECOND=0,10,20,30,40,50"
    text = vcalendar(event("a", "DTSTART:20200101T090000Z", "DURATION:PT1S", rule))
    with pytest.raises(IcsError, match="occurrences"):
        busy_intervals(text, WINDOW, BERLIN)


def test_a_long_running_daily_series_is_expanded_only_for_the_window() -> None:
    text = vcalendar(event("a", "DTSTART;TZID=Europe/Berlin:20100104T080000", "DURATION:PT30M", "RRULE:FREQ=DAILY"))
    started = time.perf_counter()
    assert len(busy_intervals(text, WINDOW, BERLIN)) == 14
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a calendar",
        "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20260324T090000Z\r\nEND:VEVENT\r\n",
        vcalendar("UID:a\r\nSUMMARY:no start"),
        vcalendar("UID:a\r\nDTSTART:garbage"),
        vcalendar(event("a", "DTSTART:20260324T090000Z", "RRULE:FREQ=SOMETIMES")),
    ],
    ids=["empty", "prose", "no-vcalendar", "no-dtstart", "bad-dtstart", "bad-rrule"],
)
def test_an_unusable_file_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(IcsError):
        busy_intervals(text, WINDOW, BERLIN)


def test_long_blocks_are_cut_into_pieces_of_at_most_a_day() -> None:
    day = slots.DAY
    assert split_days([(0, 2 * day + 5), (3 * day, 3 * day + 10)]) == [
        (0, day),
        (day, 2 * day),
        (2 * day, 2 * day + 5),
        (3 * day, 3 * day + 10),
    ]
