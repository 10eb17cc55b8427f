"""The slot engine: free starts from working hours and busy time. Pure, no I/O.

All arithmetic is on UTC epoch seconds. Working hours are turned into UTC ranges one local day
at a time (so DST days get their own offsets); candidate starts step through each range on a
grid anchored at the range's start, whatever window is asked for, so the same slot is offered
whichever day or zone a caller looks from. Busy intervals are merged once, then a single sweep
walks candidates and busy intervals together: the cost is O(busy log busy + candidates).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from zoneinfo import ZoneInfo

from shared.domain import WEEKDAYS, Calendar, NoSlotReason

Interval = tuple[int, int]
"""[start, end) in UTC epoch seconds."""

DAY = 86_400


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of intervals (touching ones joined, empty ones dropped): starts and ends increase."""
    ordered = iter(sorted(iv for iv in intervals if iv[1] > iv[0]))
    first = next(ordered, None)
    if first is None:
        return []
    merged: list[Interval] = []
    cur_start, cur_end = first
    for start, end in ordered:
        if start <= cur_end:
            if end > cur_end:
                cur_end = end
        else:
            merged.append((cur_start, cur_end))
            cur_start, cur_end = start, end
    merged.append((cur_start, cur_end))
    return merged


def epoch(moment: datetime) -> int:
    """A timezone-aware datetime as UTC epoch seconds."""
    return int(moment.timestamp())


def local_midnight(day: date, zone: ZoneInfo) -> int:
    """The first instant of a local day, as epoch seconds."""
    return epoch(datetime(day.year, day.month, day.day, tzinfo=zone))


def to_local(start: int, zone: ZoneInfo) -> datetime:
    """Epoch seconds as an aware datetime in the given zone."""
    return datetime.fromtimestamp(start, UTC).astimezone(zone)


def open_hours(calendar: Calendar, window: Interval) -> list[Interval]:
    """The calendar's open ranges, in UTC and merged, of every local day touching the window.

    Ranges are not clipped to the window: their starts anchor the slot grid. A wall-clock time
    that a DST jump skips maps to the instant after the jump; a repeated one to its first
    occurrence.
    """
    zone = calendar.zone
    day = datetime.fromtimestamp(window[0], zone).date()
    last = datetime.fromtimestamp(window[1], zone).date()
    ranges: list[Interval] = []
    while day <= last:
        hours = calendar.date_overrides.get(day)
        if hours is None:
            hours = calendar.weekly_hours.get(WEEKDAYS[day.weekday()], [])
        for r in hours:
            ranges.append(
                (epoch(datetime.combine(day, r.start, tzinfo=zone)), epoch(datetime.combine(day, r.end, tzinfo=zone)))
            )
        day += timedelta(days=1)
    # merge first, then keep what touches the window: a range's anchor never depends on the window
    return [(s, e) for s, e in merge(ranges) if s < window[1] and e > window[0]]


def working_ranges(calendar: Calendar, window: Interval) -> list[Interval]:
    """The calendar's open hours clipped to the window, in UTC, sorted."""
    clipped = ((max(s, window[0]), min(e, window[1])) for s, e in open_hours(calendar, window))
    return [(s, e) for s, e in clipped if s < e]


def candidate_starts(calendar: Calendar, window: Interval, duration_s: int, not_before: int | None = None) -> list[int]:
    """Grid starts in working hours whose slot fits its range, starting in the window.

    `not_before` raises the lower bound (minimum notice) without moving the grid.
    """
    step = calendar.granularity_minutes * 60
    low = window[0] if not_before is None else max(window[0], not_before)
    out: list[int] = []
    for range_start, range_end in open_hours(calendar, window):
        s = range_start
        if s < low:
            s += -(-(low - s) // step) * step
        last = min(range_end - duration_s, window[1] - 1)
        out.extend(range(s, last + 1, step))
    return out


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """One calendar's inputs to the engine."""

    calendar: Calendar
    bookings: Sequence[Interval]
    """Core intervals [start, end) of the calendar's bookings (buffers are added here)."""
    external: Sequence[Interval] = ()
    """Imported busy blocks (ICS)."""


def free_starts(query: SlotQuery, window: Interval, duration_s: int, now: int) -> list[int]:
    """Free slot starts of one calendar within the window, ascending, without duplicates.

    A slot [s, s+d) is free when it lies inside one working range on the calendar's grid,
    starts in the window, no earlier than now + minimum notice and no later than now + horizon,
    its day is under the daily booking cap, and its buffered span [s-before, s+d+after)
    overlaps no booking's buffered span and no external busy block.
    """
    cal = query.calendar
    before, after = cal.buffer_before_minutes * 60, cal.buffer_after_minutes * 60
    busy = merge(chain(((s - before, e + after) for s, e in query.bookings), query.external))
    horizon = now + cal.horizon_days * DAY
    out: list[int] = []
    j, n = 0, len(busy)
    for s in candidate_starts(cal, window, duration_s, not_before=now + cal.min_notice_minutes * 60):
        if s > horizon:
            break
        lo, hi = s - before, s + duration_s + after
        while j < n and busy[j][1] <= lo:
            j += 1
        if j < n and busy[j][0] < hi:
            continue
        out.append(s)
    if cal.max_bookings_per_day is not None and query.bookings:
        out = _drop_full_days(out, query.bookings, cal)
    return out


def _drop_full_days(starts: list[int], bookings: Sequence[Interval], cal: Calendar) -> list[int]:
    """Drop starts on local days that already hold `max_bookings_per_day` bookings.

    A booking counts for the local day its start falls on (as the booking script counts).
    Booking starts are sorted once and counted per day by bisection, so the cost does not
    depend on how many bookings lie outside the days that have candidates.
    """
    if not starts:
        return starts
    limit = cal.max_bookings_per_day or 0
    zone = cal.zone
    booked = sorted(b for b, _ in bookings)
    kept: list[int] = []
    day_end = -1
    full = False
    for s in starts:
        if s >= day_end:
            day = datetime.fromtimestamp(s, zone).date()
            day_start, day_end = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
            full = bisect_left(booked, day_end) - bisect_left(booked, day_start) >= limit
        if not full:
            kept.append(s)
    return kept


def intersect(per_calendar: Sequence[Sequence[int]]) -> list[int]:
    """Starts present in every list, ascending and without duplicates."""
    if not per_calendar:
        return []
    common = set(per_calendar[0])
    for starts in per_calendar[1:]:
        common.intersection_update(starts)
    return sorted(common)


def why_empty(queries: Sequence[SlotQuery], window: Interval, duration_s: int, now: int) -> NoSlotReason:
    """The most useful reason a window holds no free slot common to all calendars.

    Checked in order: the whole window is past; it starts beyond a horizon; no working hours
    fit the duration; every fitting start is past; too close; beyond a horizon; else the
    remaining starts are taken (bookings, busy blocks, buffers, daily caps).
    """
    if window[1] <= now:
        return NoSlotReason.in_the_past
    horizon = min(now + q.calendar.horizon_days * DAY for q in queries)
    if window[0] > horizon:
        return NoSlotReason.beyond_horizon
    starts = intersect([candidate_starts(q.calendar, window, duration_s) for q in queries])
    if not starts:
        return NoSlotReason.outside_working_hours
    starts = [s for s in starts if s > now]
    if not starts:
        return NoSlotReason.in_the_past
    earliest = now + max(q.calendar.min_notice_minutes for q in queries) * 60
    starts = [s for s in starts if s >= earliest]
    if not starts:
        return NoSlotReason.too_short_notice
    if all(s > horizon for s in starts):
        return NoSlotReason.beyond_horizon
    return NoSlotReason.fully_booked
