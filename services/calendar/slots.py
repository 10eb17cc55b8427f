"""The slot engine: free starts from working hours and busy time. Pure, no I/O.

All arithmetic is on UTC epoch seconds: busy intervals are merged once, then a single sweep
walks candidate starts and busy intervals together, so the cost is O(busy + candidates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.domain import WEEKDAYS, Calendar, NoSlotReason

Interval = tuple[int, int]
"""[start, end) in UTC epoch seconds."""

DAY = 86_400


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of intervals: afterwards starts and ends both increase."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def local_midnight(day: date, zone: ZoneInfo) -> int:
    return epoch(datetime(day.year, day.month, day.day, tzinfo=zone))


def working_ranges(calendar: Calendar, window: Interval) -> list[Interval]:
    """The calendar's open hours inside the window, in UTC, sorted."""
    zone = calendar.zone
    first = datetime.fromtimestamp(window[0], zone).date()
    last = datetime.fromtimestamp(window[1], zone).date()
    ranges: list[Interval] = []
    day = first
    while day <= last:
        hours = calendar.date_overrides.get(day)
        if hours is None:
            hours = calendar.weekly_hours.get(WEEKDAYS[day.weekday()], [])
        for r in hours:
            start = epoch(datetime.combine(day, r.start, tzinfo=zone))
            end = epoch(datetime.combine(day, r.end, tzinfo=zone))
            start, end = max(start, window[0]), min(end, window[1])
            if start < end:
                ranges.append((start, end))
        day += timedelta(days=1)
    return merge(ranges)


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """One calendar's inputs to the engine."""

    calendar: Calendar
    bookings: Sequence[Interval]
    """Core intervals [start, end) of the calendar's bookings (buffers are added here)."""
    external: Sequence[Interval] = ()
    """Imported busy blocks (ICS)."""


def free_starts(query: SlotQuery, window: Interval, duration_s: int, now: int) -> list[int]:
    """Free slot starts of one calendar within the window, ascending.

    A slot [s, s+d) is free when it lies inside working hours, respects the minimum notice and
    the horizon, and its buffered span [s-before, s+d+after) overlaps no booking's buffered
    span and no external busy block.
    """
    cal = query.calendar
    before, after = cal.buffer_before_minutes * 60, cal.buffer_after_minutes * 60
    step = cal.granularity_minutes * 60
    busy = merge([(s - before, e + after) for s, e in query.bookings] + list(query.external))
    earliest = now + cal.min_notice_minutes * 60
    horizon = now + cal.horizon_days * DAY
    out: list[int] = []
    j = 0
    for range_start, range_end in working_ranges(cal, window):
        s = range_start
        if s < earliest:
            s += -(-(earliest - s) // step) * step
        while s + duration_s <= range_end and s <= horizon:
            lo, hi = s - before, s + duration_s + after
            while j < len(busy) and busy[j][1] <= lo:
                j += 1
            if j < len(busy) and busy[j][0] < hi:
                # jump to the first grid point whose buffered span clears this busy block
                target = busy[j][1] + before
                s += max(1, -(-(target - s) // step)) * step
                continue
            out.append(s)
            s += step
    if cal.max_bookings_per_day is not None:
        out = _drop_full_days(out, query.bookings, cal)
    return out


def _drop_full_days(starts: list[int], bookings: Sequence[Interval], cal: Calendar) -> list[int]:
    zone = cal.zone
    per_day = Counter(datetime.fromtimestamp(s, zone).date() for s, _ in bookings)
    limit = cal.max_bookings_per_day or 0
    return [s for s in starts if per_day[datetime.fromtimestamp(s, zone).date()] < limit]


def intersect(per_calendar: Sequence[list[int]]) -> list[int]:
    """Starts free in every calendar."""
    if not per_calendar:
        return []
    common = set(per_calendar[0])
    for starts in per_calendar[1:]:
        common &= set(starts)
    return sorted(common)


def why_empty(queries: Sequence[SlotQuery], window: Interval, duration_s: int, now: int) -> NoSlotReason:
    """The most useful reason a window holds no free slot."""
    if window[1] <= now:
        return NoSlotReason.in_the_past
    if all(window[0] > now + q.calendar.horizon_days * DAY for q in queries):
        return NoSlotReason.beyond_horizon
    open_ranges = [working_ranges(q.calendar, window) for q in queries]
    if any(not any(e - s >= duration_s for s, e in ranges) for ranges in open_ranges):
        return NoSlotReason.outside_working_hours
    notice = max(q.calendar.min_notice_minutes * 60 for q in queries)
    if all(e <= now + notice for ranges in open_ranges for _, e in ranges):
        return NoSlotReason.too_short_notice
    return NoSlotReason.fully_booked


def to_local(start: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(start, UTC).astimezone(zone)
