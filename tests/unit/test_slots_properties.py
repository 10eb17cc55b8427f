"""Properties of the pure slot engine, checked with hypothesis against brute-force oracles.

Calendars, busy time, windows and clocks are drawn at random, with DST transition days in
Berlin and New York (and zones with half-hour offsets) drawn often.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import slots
from shared.domain import WEEKDAYS, Calendar, TimeRange
from shared.slots import DAY, Interval, SlotQuery

ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata", "Australia/Lord_Howe")
DST_DAYS = {
    "Europe/Berlin": (date(2026, 3, 29), date(2026, 10, 25)),
    "America/New_York": (date(2026, 3, 8), date(2026, 11, 1)),
}
AROUND = (*DST_DAYS["Europe/Berlin"], *DST_DAYS["America/New_York"], date(2026, 4, 5), date(2026, 12, 31))
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def day_hours(draw: st.DrawFn) -> list[TimeRange]:
    """0-3 ranges on a 5-minute grid, possibly overlapping or touching."""
    ranges = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, 286))
        end = draw(st.integers(start + 1, 287))
        ranges.append(TimeRange(start=_clock(start * 5), end=_clock(end * 5)))
    return ranges


def _clock(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


@st.composite
def calendars(draw: st.DrawFn, zone: str | None = None, near: date = AROUND[0]) -> Calendar:
    granularity = draw(st.sampled_from((5, 10, 15, 20, 30, 60)))
    overrides = {
        near + timedelta(days=draw(st.integers(-1, 4))): draw(day_hours()) for _ in range(draw(st.integers(0, 2)))
    }
    return Calendar(
        calendar_id="cal",
        tenant_id="t",
        name="Cal",
        timezone=zone or draw(st.sampled_from(ZONES)),
        weekly_hours={d: draw(day_hours()) for d in WEEKDAYS},
        date_overrides=overrides,
        slot_minutes=granularity * draw(st.integers(1, 4)),
        granularity_minutes=granularity,
        buffer_before_minutes=draw(st.sampled_from((0, 5, 15, 30))),
        buffer_after_minutes=draw(st.sampled_from((0, 5, 15, 30))),
        min_notice_minutes=draw(st.sampled_from((0, 30, 60, 600, 1440))),
        horizon_days=draw(st.integers(1, 10)),
        max_bookings_per_day=draw(st.none() | st.integers(1, 3)),
    )


def intervals(window: Interval, *, step: int) -> st.SearchStrategy[list[Interval]]:
    """Busy intervals around the window, on a `step`-second grid."""
    lo, hi = (window[0] - DAY) // step, (window[1] + DAY) // step
    one = st.tuples(st.integers(lo, hi), st.integers(1, 6 * 3600 // step)).map(
        lambda p: (p[0] * step, (p[0] + p[1]) * step)
    )
    return st.lists(one, max_size=25)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """A calendar, its busy time, a window of 1-3 days in some display zone, and a clock."""
    first = draw(st.sampled_from(AROUND)) + timedelta(days=draw(st.integers(-2, 2)))
    cal = draw(calendars(near=first))
    display = ZoneInfo(draw(st.sampled_from(ZONES)))
    window = (
        slots.local_midnight(first, display),
        slots.local_midnight(first + timedelta(days=draw(st.integers(1, 3))), display),
    )
    return {
        "query": SlotQuery(cal, draw(intervals(window, step=300)), draw(intervals(window, step=1))),
        "window": window,
        "duration": cal.slot_minutes * 60,
        "now": window[0] + draw(st.integers(-3 * DAY, 2 * DAY)),
    }


def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def local_hours(cal: Calendar, day: date) -> list[Interval]:
    """The UTC image of one local day's hours, merged: an oracle built without the engine's sweep."""
    hours = cal.date_overrides.get(day, cal.weekly_hours.get(WEEKDAYS[day.weekday()], []))
    zone = cal.zone
    return slots.merge(
        (
            slots.epoch(datetime.combine(day, r.start, tzinfo=zone)),
            slots.epoch(datetime.combine(day, r.end, tzinfo=zone)),
        )
        for r in hours
    )


def is_free(query: SlotQuery, s: int, duration: int) -> bool:
    """Brute force: the slot's buffered span against every booking's buffered span and every block."""
    cal = query.calendar
    before, after = cal.buffer_before_minutes * 60, cal.buffer_after_minutes * 60
    span = (s - before, s + duration + after)
    return not any(overlaps(span, (b - before, e + after)) for b, e in query.bookings) and not any(
        overlaps(span, block) for block in query.external
    )


def brute_force(query: SlotQuery, window: Interval, duration: int, now: int) -> list[int]:
    """Every grid start of every local day, kept when each rule holds, checked one by one."""
    cal = query.calendar
    zone, step = cal.zone, cal.granularity_minutes * 60
    first = slots.to_local(window[0], zone).date() - timedelta(days=1)
    days = [first + timedelta(days=i) for i in range((slots.to_local(window[1], zone).date() - first).days + 2)]
    ranges = slots.merge(r for day in days for r in local_hours(cal, day))
    per_day: dict[date, int] = {}
    for b, _ in query.bookings:
        per_day[slots.to_local(b, zone).date()] = per_day.get(slots.to_local(b, zone).date(), 0) + 1
    found = []
    for a, b in ranges:
        for s in range(a, b - duration + 1, step):
            if not (window[0] <= s < window[1]):
                continue
            if s < now + cal.min_notice_minutes * 60 or s > now + cal.horizon_days * DAY:
                continue
            if (
                cal.max_bookings_per_day is not None
                and per_day.get(slots.to_local(s, zone).date(), 0) >= cal.max_bookings_per_day
            ):
                continue
            if is_free(query, s, duration):
                found.append(s)
    return found


@PROPERTY
@given(cases())
def test_free_starts_are_sorted_and_without_duplicates(case: dict[str, Any]) -> None:
    starts = slots.free_starts(case["query"], case["window"], case["duration"], case["now"])
    assert starts == sorted(set(starts))


@PROPERTY
@given(cases())
def test_no_slots_buffered_span_overlaps_a_booking_or_a_busy_block(case: dict[str, Any]) -> None:
    query, duration = case["query"], case["duration"]
    for s in slots.free_starts(query, case["window"], duration, case["now"]):
        assert is_free(query, s, duration)


@PROPERTY
@given(cases())
def test_every_slot_lies_inside_its_local_days_working_hours_on_the_grid(case: dict[str, Any]) -> None:
    query, duration = case["query"], case["duration"]
    cal = query.calendar
    for s in slots.free_starts(query, case["window"], duration, case["now"]):
        day = slots.to_local(s, cal.zone).date()
        home = [(a, b) for a, b in local_hours(cal, day) if a <= s and s + duration <= b]
        assert home, f"{slots.to_local(s, cal.zone)} is outside the hours of {day}"
        assert (s - home[0][0]) % (cal.granularity_minutes * 60) == 0


@PROPERTY
@given(cases())
def test_every_slot_starts_in_the_window_after_the_notice_and_within_the_horizon(case: dict[str, Any]) -> None:
    cal, window, now = case["query"].calendar, case["window"], case["now"]
    for s in slots.free_starts(case["query"], window, case["duration"], now):
        assert window[0] <= s < window[1]
        assert now + cal.min_notice_minutes * 60 <= s <= now + cal.horizon_days * DAY


@PROPERTY
@given(cases())
def test_the_engine_finds_exactly_the_starts_a_brute_force_search_finds(case: dict[str, Any]) -> None:
    args = (case["query"], case["window"], case["duration"], case["now"])
    assert slots.free_starts(*args) == brute_force(*args)


@PROPERTY
@given(cases(), st.floats(0, 1))
def test_cutting_the_window_in_two_changes_no_slot(case: dict[str, Any], where: float) -> None:
    query, (lo, hi), duration, now = case["query"], case["window"], case["duration"], case["now"]
    cut = lo + int((hi - lo) * where)
    whole = slots.free_starts(query, (lo, hi), duration, now)
    assert whole == slots.free_starts(query, (lo, cut), duration, now) + slots.free_starts(
        query, (cut, hi), duration, now
    )


@PROPERTY
@given(cases())
def test_every_slot_offered_in_any_display_zone_is_free_on_its_own_calendar_day(case: dict[str, Any]) -> None:
    """What the booking service re-checks: the calendar's local day of the slot, in its own zone."""
    query, duration, now = case["query"], case["duration"], case["now"]
    zone = query.calendar.zone
    for s in slots.free_starts(query, case["window"], duration, now):
        day = slots.to_local(s, zone).date()
        own_day = (slots.local_midnight(day, zone), slots.local_midnight(day + timedelta(days=1), zone))
        assert s in slots.free_starts(query, own_day, duration, now)


@PROPERTY
@given(st.data())
def test_intersection_is_inside_each_calendars_slots(data: st.DataObject) -> None:
    case = data.draw(cases())
    other = data.draw(calendars(near=slots.to_local(case["window"][0], ZoneInfo("UTC")).date()))
    window, duration, now = case["window"], case["duration"], case["now"]
    per_calendar = [
        slots.free_starts(case["query"], window, duration, now),
        slots.free_starts(SlotQuery(other, data.draw(intervals(window, step=300))), window, duration, now),
    ]
    both = slots.intersect(per_calendar)
    assert both == sorted(set(per_calendar[0]) & set(per_calendar[1]))
    assert set(both) <= set(per_calendar[0]) and set(both) <= set(per_calendar[1])


@PROPERTY
@given(
    zone_name=st.sampled_from(tuple(DST_DAYS)),
    which=st.integers(0, 1),
    opens=st.integers(5, 12),
    hours=st.integers(1, 11),
    granularity=st.sampled_from((5, 10, 15, 20, 30, 60)),
    multiple=st.integers(1, 4),
)
def test_dst_days_keep_every_wall_clock_slot_once_at_the_days_offset(
    zone_name: str, which: int, opens: int, hours: int, granularity: int, multiple: int
) -> None:
    day = DST_DAYS[zone_name][which]
    zone = ZoneInfo(zone_name)
    cal = Calendar(
        calendar_id="cal",
        tenant_id="t",
        name="Cal",
        timezone=zone_name,
        weekly_hours={d: [TimeRange(start=time(opens), end=time(opens + hours))] for d in WEEKDAYS},
        slot_minutes=granularity * multiple,
        granularity_minutes=granularity,
        min_notice_minutes=0,
    )
    window = (slots.local_midnight(day, zone), slots.local_midnight(day + timedelta(days=1), zone))
    duration = cal.slot_minutes * 60
    starts = slots.free_starts(SlotQuery(cal, []), window, duration, window[0] - DAY)
    expected = [opens * 60 + k * granularity for k in range((hours * 60 - cal.slot_minutes) // granularity + 1)]
    assert [slots.to_local(s, zone).hour * 60 + slots.to_local(s, zone).minute for s in starts] == expected
    for s in starts:
        local = slots.to_local(s, zone)
        assert local.utcoffset() == datetime.combine(day, local.time(), tzinfo=zone).utcoffset()
