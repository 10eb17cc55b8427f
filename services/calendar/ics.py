"""External busy time from iCalendar (RFC 5545) text. Pure, no I/O.

Events are expanded for one window (RRULE, RDATE, EXDATE and moved occurrences via
`recurring-ical-events`) and reduced to merged busy intervals in UTC epoch seconds. Only the
intervals survive: titles, attendees, locations and UIDs are dropped here, so they never reach
storage. Free events (TRANSP:TRANSPARENT) and cancelled ones (STATUS:CANCELLED) are not busy.
All-day events block their dates from local midnight to local midnight in the calendar's zone,
as do floating times (no TZID, no UTC mark, no X-WR-TIMEZONE).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events  # type: ignore[import-untyped]

from shared.slots import DAY, Interval, epoch, local_midnight, merge

MAX_OCCURRENCES: Final = 20_000
"""Occurrences expanded inside the window per import; beyond this the file is refused."""
MAX_SKIPPED: Final = 1_000_000
"""Occurrences a file's rules may step over before the window (about 5 s of work at most):
an old FREQ=MINUTELY rule would otherwise keep the expansion busy for hours."""
SLACK_S: Final = 2 * DAY
"""Expansion reaches this far past each end of the window: floating and all-day times are
compared loosely by the library; the exact clip happens here."""
PERIOD_S: Final = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": DAY,
    "WEEKLY": 7 * DAY,
    "MONTHLY": 28 * DAY,
    "YEARLY": 365 * DAY,
}
_FREQS: Final = tuple(PERIOD_S)
_EXPANDS_FROM: Final = {
    "BYSECOND": "MINUTELY",
    "BYMINUTE": "HOURLY",
    "BYHOUR": "DAILY",
    "BYDAY": "WEEKLY",
    "BYMONTHDAY": "MONTHLY",
    "BYYEARDAY": "YEARLY",
    "BYWEEKNO": "YEARLY",
    "BYMONTH": "YEARLY",
}
"""The finest FREQ at which a BYxxx part adds occurrences rather than filtering them (RFC 5545 3.3.10)."""


class IcsError(ValueError):
    """The text is not a usable iCalendar file; the message says why."""


def busy_intervals(text: str, window: Interval, zone: ZoneInfo, *, limit: int = MAX_OCCURRENCES) -> list[Interval]:
    """Busy intervals of the file's events that overlap the window, clipped to it and merged.

    Raises IcsError for unparsable text, broken events, rules that would take too long to
    expand, or more than `limit` occurrences in the window.
    """
    calendar = _parse(text)
    found: list[Interval] = []
    try:
        _check_expansion(calendar, window, zone, limit)
        query = recurring_ical_events.of(calendar, components=("VEVENT",))
        events = query.between(_utc(window[0] - SLACK_S), _utc(window[1] + SLACK_S))
        if len(events) > limit:
            raise IcsError(f"more than {limit} events in the window; split the file or shorten its rules")
        for event in events:
            if not isinstance(event, icalendar.Event) or not _is_busy(event):
                continue
            start, end = _span(event.start, event.end, zone)
            start, end = max(start, window[0]), min(end, window[1])
            if start < end:
                found.append((start, end))
    except IcsError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise IcsError(f"unreadable event: {exc}") from exc
    return merge(found)


def split_days(intervals: list[Interval], longest: int = DAY) -> list[Interval]:
    """Cut intervals into pieces of at most `longest` seconds.

    Busy sets are indexed by start and read with a bounded look-back, so no piece may be
    longer than that look-back (a two-week holiday becomes fourteen one-day blocks).
    """
    pieces: list[Interval] = []
    for start, end in intervals:
        while end - start > longest:
            pieces.append((start, start + longest))
            start += longest
        pieces.append((start, end))
    return pieces


def _parse(text: str) -> icalendar.Calendar:
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise IcsError(f"not an iCalendar file: {exc}") from exc
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise IcsError("not an iCalendar file: expected one BEGIN:VCALENDAR ... END:VCALENDAR")
    return calendar


def _check_expansion(calendar: icalendar.Calendar, window: Interval, zone: ZoneInfo, limit: int) -> None:
    """Refuse files whose rules would step over too many occurrences, before expanding any.

    The estimate is an upper bound per rule: periods from DTSTART to the window's end (or
    UNTIL), times what its BYxxx parts can add per period, capped by COUNT.
    """
    before = inside = 0
    for event in calendar.walk("VEVENT"):
        if not isinstance(event, icalendar.Event):
            continue
        rules = event.get("RRULE") or []
        for rule in rules if isinstance(rules, list) else [rules]:
            start = _instant(event.start, zone)
            end = window[1] + SLACK_S
            if "UNTIL" in rule:
                end = min(end, _instant(rule["UNTIL"][0], zone))
            freq = str(rule["FREQ"][0]).upper()
            if freq not in PERIOD_S:
                raise IcsError(f"unknown FREQ {freq!r}")
            period = PERIOD_S[freq] * int(rule.get("INTERVAL", [1])[0])
            per_period = _per_period(rule, freq)
            count = int(rule["COUNT"][0]) if "COUNT" in rule else None
            total = (max(0, end - start) // max(1, period) + 1) * per_period
            skipped = (max(0, window[0] - SLACK_S - start) // max(1, period)) * per_period
            if count is not None:
                total, skipped = min(total, count), min(skipped, count)
            before += skipped
            inside += total - skipped
    # `inside` over-counts (it is a bound), so it may exceed the limit a little before refusing;
    # the exact count is checked after the expansion
    if before > MAX_SKIPPED or inside > limit * 4:
        raise IcsError(
            f"recurrence rules would expand to about {before + inside:,} occurrences; "
            "end old rules with UNTIL or COUNT, or export a shorter range"
        )


def _per_period(rule: Any, freq: str) -> int:
    """How many occurrences one period of the rule can hold at most (an upper bound)."""
    factor = 1
    for part, finest in _EXPANDS_FROM.items():
        values = rule.get(part)
        if values and _FREQS.index(freq) >= _FREQS.index(finest):
            factor *= len(values) * (_weekday_repeats(freq) if part == "BYDAY" else 1)
    return factor


def _weekday_repeats(freq: str) -> int:
    """How often one weekday occurs in one period of the frequency."""
    return {"MONTHLY": 5, "YEARLY": 53}.get(freq, 1)


def _utc(moment: int) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def _is_busy(event: icalendar.Event) -> bool:
    transparency = str(event.get("TRANSP", "OPAQUE")).upper()
    status = str(event.get("STATUS", "CONFIRMED")).upper()
    return transparency != "TRANSPARENT" and status != "CANCELLED"


def _span(start: date | datetime, end: date | datetime, zone: ZoneInfo) -> Interval:
    return _instant(start, zone), _instant(end, zone)


def _instant(moment: date | datetime, zone: ZoneInfo) -> int:
    """A DTSTART/DTEND value as epoch seconds: dates at local midnight, floating times local."""
    if not isinstance(moment, datetime):
        return local_midnight(moment, zone)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return epoch(moment)
