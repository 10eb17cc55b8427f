"""Example tests of the pure slot engine: one rule per test, named for the rule it proves."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared import slots
from shared.domain import Calendar, NoSlotReason
from shared.slots import SlotQuery

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY = date(2026, 12, 7)
H = 3600
ALL_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def calendar(**overrides: Any) -> Calendar:
    """Mon-Fri 09:00-12:00 and 13:00-17:00 in Berlin, 30-minute slots, no notice, no buffers."""
    hours = [{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "17:00"}]
    values: dict[str, Any] = {
        "calendar_id": "cal",
        "tenant_id": "t",
        "name": "Cal",
        "timezone": "Europe/Berlin",
        "weekly_hours": {d: hours for d in ("mon", "tue", "wed", "thu", "fri")},
        "slot_minutes": 30,
        "granularity_minutes": 30,
        "min_notice_minutes": 0,
    }
    values.update(overrides)
    return Calendar.model_validate(values)


def day_window(day: date, zone: ZoneInfo = BERLIN, days: int = 1) -> slots.Interval:
    return slots.local_midnight(day, zone), slots.local_midnight(day + timedelta(days=days), zone)


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = BERLIN) -> int:
    return slots.epoch(datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone))


def wall(starts: list[int], zone: ZoneInfo = BERLIN) -> list[str]:
    return [slots.to_local(s, zone).strftime("%H:%M") for s in starts]


LONG_AGO = at(MONDAY, 0) - 7 * 86_400
"""A `now` a week before MONDAY: no notice or horizon rule bites."""


def free(cal: Calendar, window: slots.Interval, *, minutes: int = 30, now: int | None = None, **busy: Any) -> list[int]:
    """Free starts; `now` defaults to a week before the window, where no notice or horizon rule bites."""
    query = SlotQuery(cal, busy.get("bookings", []), busy.get("external", []))
    return slots.free_starts(query, window, minutes * 60, window[0] - 7 * 86_400 if now is None else now)


# --- working hours and the grid ---


def test_slots_step_through_each_working_range_on_the_granularity_grid() -> None:
    assert wall(free(calendar(), day_window(MONDAY))) == [
        *("09:00", "09:30", "10:00", "10:30", "11:00", "11:30"),
        *("13:00", "13:30", "14:00", "14:30", "15:00", "15:30", "16:00", "16:30"),
    ]


def test_a_slot_that_would_run_past_the_end_of_its_range_is_not_offered() -> None:
    starts = wall(free(calendar(granularity_minutes=30), day_window(MONDAY), minutes=90))
    assert starts[-1] == "15:30"
    assert "10:30" in starts and "11:00" not in starts


def test_a_finer_granularity_offers_more_starts_for_the_same_length() -> None:
    assert wall(free(calendar(granularity_minutes=15), day_window(MONDAY), minutes=60))[:3] == [
        "09:00",
        "09:15",
        "09:30",
    ]


def test_touching_ranges_join_so_a_slot_may_span_both() -> None:
    cal = calendar(weekly_hours={"mon": [{"start": "09:00", "end": "10:00"}, {"start": "10:00", "end": "11:00"}]})
    assert wall(free(cal, day_window(MONDAY), minutes=60)) == ["09:00", "09:30", "10:00"]


def test_a_day_without_weekly_hours_has_no_slots() -> None:
    assert free(calendar(), day_window(MONDAY + timedelta(days=5))) == []  # Saturday


def test_a_date_override_replaces_the_weekly_hours_of_that_date_only() -> None:
    cal = calendar(date_overrides={MONDAY: [{"start": "18:00", "end": "19:00"}]})
    assert wall(free(cal, day_window(MONDAY))) == ["18:00", "18:30"]
    assert wall(free(cal, day_window(MONDAY + timedelta(days=1))))[0] == "09:00"


def test_an_empty_date_override_closes_the_day() -> None:
    assert free(calendar(date_overrides={MONDAY: []}), day_window(MONDAY)) == []


def test_working_hours_are_the_calendars_wall_clock_in_its_own_zone() -> None:
    starts = free(calendar(timezone="America/New_York"), day_window(MONDAY, NEW_YORK))
    assert wall(starts, NEW_YORK)[0] == "09:00"
    assert slots.to_local(starts[0], NEW_YORK).utcoffset() == timedelta(hours=-5)


# --- busy time and buffers ---


def test_a_booking_takes_its_own_slots_and_nothing_else() -> None:
    starts = wall(free(calendar(), day_window(MONDAY), bookings=[(at(MONDAY, 10), at(MONDAY, 11))]))
    assert "10:00" not in starts and "10:30" not in starts
    assert "09:30" in starts and "11:00" in starts


def test_buffers_after_a_booking_keep_the_next_slot_free_for_the_gap() -> None:
    cal = calendar(buffer_after_minutes=15)
    starts = wall(free(cal, day_window(MONDAY), bookings=[(at(MONDAY, 10), at(MONDAY, 11))]))
    # 09:30 ends 10:00 and its 15-minute tail meets the booking; 11:00 starts inside the booking's tail
    assert "09:30" not in starts and "11:00" not in starts
    assert "09:00" in starts and "11:30" in starts


def test_buffers_before_a_slot_keep_it_clear_of_the_previous_booking() -> None:
    cal = calendar(buffer_before_minutes=30)
    starts = wall(free(cal, day_window(MONDAY), bookings=[(at(MONDAY, 10), at(MONDAY, 10, 30))]))
    # two bookings must be buffer_before + buffer_after apart (30 min here)
    assert "09:30" not in starts and "10:30" not in starts
    assert "09:00" in starts and "11:00" in starts


def test_an_external_busy_block_takes_every_slot_it_touches() -> None:
    starts = wall(free(calendar(), day_window(MONDAY), external=[(at(MONDAY, 9, 45), at(MONDAY, 10, 5))]))
    assert "09:30" not in starts and "10:00" not in starts
    assert "09:00" in starts and "10:30" in starts


def test_buffers_keep_a_slot_clear_of_external_blocks_too() -> None:
    cal = calendar(buffer_after_minutes=30)
    starts = wall(free(cal, day_window(MONDAY), external=[(at(MONDAY, 10), at(MONDAY, 11))]))
    assert "09:30" not in starts and "09:00" in starts
    assert "11:00" in starts  # the block has no buffer of its own


def test_a_booking_that_ended_before_the_window_still_blocks_through_its_buffer() -> None:
    cal = calendar(buffer_after_minutes=60, weekly_hours={d: [{"start": "00:00", "end": "02:00"}] for d in ALL_WEEK})
    starts = wall(free(cal, day_window(MONDAY), bookings=[(at(MONDAY, 0) - 1800, at(MONDAY, 0))]))
    assert starts == ["01:00", "01:30"]


def test_overlapping_and_unsorted_busy_intervals_are_handled_as_their_union() -> None:
    busy = [(at(MONDAY, 14), at(MONDAY, 15)), (at(MONDAY, 9), at(MONDAY, 10)), (at(MONDAY, 9, 30), at(MONDAY, 11))]
    starts = wall(free(calendar(), day_window(MONDAY), external=busy))
    assert starts == ["11:00", "11:30", "13:00", "13:30", "15:00", "15:30", "16:00", "16:30"]


# --- time rules ---


def test_minimum_notice_drops_close_starts_and_keeps_the_grid() -> None:
    now = at(MONDAY, 9, 7)
    starts = wall(free(calendar(min_notice_minutes=60), day_window(MONDAY), now=now))
    assert starts[0] == "10:30"  # 10:07 rounded up to the 30-minute grid


def test_horizon_drops_starts_more_than_horizon_days_ahead() -> None:
    now = at(MONDAY, 12)
    starts = free(calendar(horizon_days=1), day_window(MONDAY + timedelta(days=1)), now=now)
    assert wall(starts) == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]


def test_the_daily_cap_closes_a_day_that_reached_it_and_no_other() -> None:
    cal = calendar(max_bookings_per_day=1)
    bookings = [(at(MONDAY, 9), at(MONDAY, 9, 30))]
    assert free(cal, day_window(MONDAY), bookings=bookings) == []
    assert free(cal, day_window(MONDAY + timedelta(days=1)), bookings=bookings) != []


def test_external_blocks_do_not_count_towards_the_daily_cap() -> None:
    cal = calendar(max_bookings_per_day=1)
    assert free(cal, day_window(MONDAY), external=[(at(MONDAY, 9), at(MONDAY, 9, 30))]) != []


# --- windows and zones ---


def test_the_grid_is_anchored_at_the_working_range_whatever_the_window_starts_at() -> None:
    cal = calendar(granularity_minutes=60, slot_minutes=60)
    odd_start = at(MONDAY, 10, 7) + 23
    starts = free(cal, (odd_start, odd_start + 86_400), minutes=60, now=odd_start)
    assert wall(starts)[:3] == ["11:00", "13:00", "14:00"]


def test_a_display_zone_with_a_half_hour_offset_sees_the_calendars_own_grid() -> None:
    cal = calendar(
        timezone="America/New_York", granularity_minutes=60, weekly_hours={"mon": [{"start": "08:00", "end": "16:00"}]}
    )
    kolkata = ZoneInfo("Asia/Kolkata")
    # Kolkata's Tuesday begins at 13:30 on the New York Monday
    starts = free(cal, day_window(MONDAY + timedelta(days=1), kolkata), minutes=60)
    assert wall(starts, NEW_YORK) == ["14:00", "15:00"]


def test_a_long_window_holds_exactly_the_slots_of_its_days() -> None:
    cal = calendar(buffer_after_minutes=15, granularity_minutes=15)
    bookings = [
        (at(MONDAY, 10), at(MONDAY, 10, 45)),
        (at(MONDAY + timedelta(days=2), 13), at(MONDAY + timedelta(days=2), 14)),
    ]
    week = free(cal, day_window(MONDAY, days=7), minutes=45, bookings=bookings)
    by_day = [
        s for i in range(7) for s in free(cal, day_window(MONDAY + timedelta(days=i)), minutes=45, bookings=bookings)
    ]
    assert week == by_day


# --- DST: right wall-clock times, none duplicated, none missing ---


def _every_day(hours: list[dict[str, str]], zone: str) -> Calendar:
    return calendar(timezone=zone, weekly_hours={d: hours for d in ALL_WEEK}, granularity_minutes=60, slot_minutes=60)


def test_berlin_spring_forward_day_keeps_office_hours_at_summer_time() -> None:
    day = date(2026, 3, 29)
    starts = free(_every_day([{"start": "09:00", "end": "17:00"}], "Europe/Berlin"), day_window(day), minutes=60)
    assert wall(starts) == [f"{h:02d}:00" for h in range(9, 17)]
    assert {slots.to_local(s, BERLIN).utcoffset() for s in starts} == {timedelta(hours=2)}


def test_berlin_spring_forward_night_skips_the_missing_hour() -> None:
    day = date(2026, 3, 29)
    starts = free(_every_day([{"start": "00:00", "end": "05:00"}], "Europe/Berlin"), day_window(day), minutes=60)
    assert wall(starts) == ["00:00", "01:00", "03:00", "04:00"]


def test_berlin_fall_back_night_offers_the_repeated_hour_twice_at_distinct_instants() -> None:
    day = date(2026, 10, 25)
    starts = free(_every_day([{"start": "00:00", "end": "05:00"}], "Europe/Berlin"), day_window(day), minutes=60)
    assert wall(starts) == ["00:00", "01:00", "02:00", "02:00", "03:00", "04:00"]
    assert len(set(starts)) == len(starts)
    assert [slots.to_local(s, BERLIN).strftime("%z") for s in starts[2:4]] == ["+0200", "+0100"]


def test_berlin_fall_back_day_keeps_office_hours_at_winter_time() -> None:
    day = date(2026, 10, 25)
    starts = free(_every_day([{"start": "09:00", "end": "17:00"}], "Europe/Berlin"), day_window(day), minutes=60)
    assert wall(starts) == [f"{h:02d}:00" for h in range(9, 17)]
    assert {slots.to_local(s, BERLIN).utcoffset() for s in starts} == {timedelta(hours=1)}


def test_new_york_spring_forward_night_skips_two_oclock() -> None:
    day = date(2026, 3, 8)
    cal = _every_day([{"start": "00:00", "end": "04:00"}, {"start": "09:00", "end": "11:00"}], "America/New_York")
    starts = free(cal, day_window(day, NEW_YORK), minutes=60)
    assert wall(starts, NEW_YORK) == ["00:00", "01:00", "03:00", "09:00", "10:00"]
    assert slots.to_local(starts[-1], NEW_YORK).utcoffset() == timedelta(hours=-4)


def test_new_york_fall_back_night_offers_one_oclock_twice() -> None:
    day = date(2026, 11, 1)
    cal = _every_day([{"start": "00:00", "end": "03:00"}, {"start": "09:00", "end": "11:00"}], "America/New_York")
    starts = free(cal, day_window(day, NEW_YORK), minutes=60)
    assert wall(starts, NEW_YORK) == ["00:00", "01:00", "01:00", "02:00", "09:00", "10:00"]
    assert slots.to_local(starts[-1], NEW_YORK).utcoffset() == timedelta(hours=-5)


def test_a_working_range_starting_in_the_spring_gap_opens_when_the_clock_resumes() -> None:
    day = date(2026, 3, 29)
    cal = _every_day([{"start": "02:30", "end": "05:00"}], "Europe/Berlin")
    assert wall(free(cal, day_window(day), minutes=60)) == ["03:30"]


# --- intersection ---


def test_intersection_keeps_starts_free_in_every_calendar() -> None:
    assert slots.intersect([[1, 2, 3, 5], [5, 3, 9], [3, 5, 7]]) == [3, 5]
    assert slots.intersect([[4, 1, 1]]) == [1, 4]
    assert slots.intersect([]) == []


def test_berlin_and_new_york_calendars_share_only_their_overlapping_hours() -> None:
    lee = calendar()
    patel = calendar(timezone="America/New_York", weekly_hours={"mon": [{"start": "08:00", "end": "16:00"}]})
    window = day_window(MONDAY)
    both = slots.intersect([free(lee, window), free(patel, window)])
    assert wall(both) == ["14:00", "14:30", "15:00", "15:30", "16:00", "16:30"]


# --- why a window is empty ---


def _why(cal: Calendar, window: slots.Interval, now: int = LONG_AGO, minutes: int = 30, **busy: Any) -> NoSlotReason:
    query = SlotQuery(cal, busy.get("bookings", []), busy.get("external", []))
    return slots.why_empty([query], window, minutes * 60, now)


def test_a_window_that_is_over_is_in_the_past() -> None:
    assert _why(calendar(), day_window(MONDAY), now=at(MONDAY, 23)) is NoSlotReason.in_the_past


def test_a_day_whose_working_hours_are_over_is_in_the_past() -> None:
    assert _why(calendar(), day_window(MONDAY), now=at(MONDAY, 17, 5)) is NoSlotReason.in_the_past


def test_a_closed_day_is_outside_working_hours() -> None:
    assert _why(calendar(), day_window(MONDAY + timedelta(days=5))) is NoSlotReason.outside_working_hours


def test_a_meeting_longer_than_any_range_is_outside_working_hours() -> None:
    assert _why(calendar(), day_window(MONDAY), minutes=300) is NoSlotReason.outside_working_hours


def test_a_day_whose_last_starts_are_too_close_is_too_short_notice() -> None:
    cal = calendar(min_notice_minutes=120)
    assert _why(cal, day_window(MONDAY), now=at(MONDAY, 15)) is NoSlotReason.too_short_notice


def test_a_window_past_the_horizon_is_beyond_horizon() -> None:
    cal = calendar(horizon_days=3)
    assert _why(cal, day_window(MONDAY + timedelta(days=7)), now=at(MONDAY, 8)) is NoSlotReason.beyond_horizon


def test_a_day_with_every_slot_taken_is_fully_booked() -> None:
    busy = [(at(MONDAY, 0), at(MONDAY, 23))]
    assert _why(calendar(), day_window(MONDAY), external=busy) is NoSlotReason.fully_booked


def test_calendars_without_common_hours_are_outside_working_hours_together() -> None:
    morning = calendar(weekly_hours={"mon": [{"start": "08:00", "end": "10:00"}]})
    evening = calendar(weekly_hours={"mon": [{"start": "18:00", "end": "20:00"}]})
    queries = [SlotQuery(morning, []), SlotQuery(evening, [])]
    reason = slots.why_empty(queries, day_window(MONDAY), 1800, LONG_AGO)
    assert reason is NoSlotReason.outside_working_hours


def test_merge_joins_overlapping_and_touching_intervals_and_drops_empty_ones() -> None:
    assert slots.merge([(5, 7), (1, 3), (3, 4), (6, 9), (10, 10)]) == [(1, 4), (5, 9)]
