"""Pure parts of the harness: scenario files, relative dates, the end-state matcher and the
scores (no Redis, no services)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.eval import checks, scenario
from bench.eval.report import pass_hat_k
from bench.eval.scenario import Scenario, context_for, fixture_calendars, resolve_date
from shared.domain import WEEKDAYS, Booking, BookingStatus

BERLIN = ZoneInfo("Europe/Berlin")
THURSDAY = date(2026, 11, 26)
SHIPPED = scenario.load()


def test_at_least_25_shipped_scenarios_cover_every_required_kind_and_can_run_offline() -> None:
    assert len(SHIPPED) >= 25
    assert all(s.scripted_model is not None for s in SHIPPED)
    tags = {t for s in SHIPPED for t in s.tags}
    required = {"booking", "vague", "time-zone", "race", "reschedule", "cancel", "list", "refusal"}
    assert required | {"change-of-mind", "participants", "multi-calendar", "injection", "simulated"} <= tags


@pytest.mark.parametrize("offset", range(14))
def test_every_scenario_resolves_its_dates_to_working_hours_whatever_day_it_runs(offset: int) -> None:
    """Two weeks of "todays", across the end of daylight saving time in Berlin and New York:
    every date lies ahead, and every slot named on a calendar lies within its working hours."""
    now = datetime(2026, 10, 19, 8, 0, tzinfo=BERLIN) + timedelta(days=offset)
    for s in SHIPPED:
        ctx = context_for(s, now)
        for name in s.dates:
            day = ctx.day(name)
            assert day >= now.date() or (name == "day" and s.name == "past-date"), (s.name, name, day)
            assert day <= now.date() + timedelta(days=14), (s.name, name, day)
        calendars = {c.calendar_id: c for c in fixture_calendars(s)}
        for name, expr in s.moments.items():
            words = expr.split()
            if len(words) == 3 and words[2] in calendars:
                calendar = calendars[words[2]]
                local = ctx.moment(name).astimezone(calendar.zone)
                hours = calendar.weekly_hours.get(WEEKDAYS[local.weekday()], [])
                assert any(r.start <= local.time() < r.end for r in hours), (s.name, name, local)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("tomorrow", date(2026, 11, 27)),
        ("+3 days", date(2026, 11, 29)),
        ("-1", date(2026, 11, 25)),
        ("next weekday", date(2026, 11, 27)),
        ("next mon-thu", date(2026, 11, 30)),
        ("next mon|wed|fri", date(2026, 11, 27)),
        ("next thu", date(2026, 12, 3)),
        ("next mon-thu after tomorrow", date(2026, 11, 30)),
        ("monday next week", date(2026, 11, 30)),
        ("friday next week", date(2026, 12, 4)),
    ],
)
def test_relative_dates_count_from_today(expr: str, expected: date) -> None:
    assert resolve_date(expr, THURSDAY, {}) == expected


def test_templates_show_dates_and_moments_iso_or_by_strftime() -> None:
    s = Scenario.model_validate(
        {
            "name": "t",
            "dates": {"day": "next mon-thu"},
            "moments": {"slot": "day 10:00 dr-lee", "slot_ny": "slot in America/New_York"},
            "turns": ['BOOKING_CONFIRMATION {"start": "{{slot}}"} at {{slot_ny:%H:%M}} on {{day:%A}}'],
        }
    )
    ctx = context_for(s, datetime(2026, 11, 26, 9, tzinfo=BERLIN))
    assert ctx.render(s.turns[0].say or "") == (
        'BOOKING_CONFIRMATION {"start": "2026-11-30T10:00+01:00"} at 04:00 on Monday'
    )


def _booking(start: datetime, minutes: int = 30, user: str = "alice", status: str = "confirmed") -> Booking:
    return Booking(
        booking_id=f"{user}-{start:%H%M}-{status}",
        tenant_id="demo",
        calendar_id="dr-lee",
        user_id=user,
        attendee_name="Alice Smith",
        start=start,
        end=start + timedelta(minutes=minutes),
        status=BookingStatus(status),
        created_at=datetime.now(UTC),
    )


def test_overlapping_bookings_on_one_calendar_are_double_bookings() -> None:
    ten = datetime(2026, 11, 30, 10, tzinfo=BERLIN)
    stored = [_booking(ten, 60), _booking(ten + timedelta(minutes=30), user="bob"), _booking(ten + timedelta(hours=1))]
    found = checks.double_bookings(stored, expected_confirmed=3)
    assert (found.overlaps, found.surplus, found.total) == (1, 0, 1)


def test_cancelled_bookings_neither_overlap_nor_count_as_surplus() -> None:
    ten = datetime(2026, 11, 30, 10, tzinfo=BERLIN)
    stored = [_booking(ten, status="cancelled"), _booking(ten)]
    assert checks.double_bookings(stored, expected_confirmed=1).total == 0
    assert checks.double_bookings(stored, expected_confirmed=0).surplus == 1


def test_a_booking_that_existed_before_and_was_not_cancelled_is_no_surplus() -> None:
    ten = datetime(2026, 11, 30, 10, tzinfo=BERLIN)
    before = _booking(ten)
    assert checks.double_bookings([before], expected_confirmed=0, preexisting={before.booking_id}).surplus == 0
    booked_again = [before, _booking(ten + timedelta(hours=1))]
    assert checks.double_bookings(booked_again, expected_confirmed=1, preexisting={before.booking_id}).surplus == 1


def test_the_end_state_must_match_one_to_one() -> None:
    s = Scenario.model_validate(
        {
            "name": "t",
            "dates": {"day": "next mon-thu"},
            "moments": {"slot": "day 10:00 dr-lee"},
            "turns": ["hi"],
            "expect": {"bookings": [{"calendar": "dr-lee", "at": "slot"}]},
        }
    )
    ctx = context_for(s, datetime(2026, 11, 26, 9, tzinfo=BERLIN))
    slot = ctx.moment("slot")
    assert checks.match_end_state(s, [_booking(slot)], ctx, {}) == []
    assert checks.match_end_state(s, [], ctx, {})[0].startswith("missing booking dr-lee")
    assert checks.match_end_state(s, [_booking(slot), _booking(slot + timedelta(hours=1))], ctx, {}) == [
        "unexpected booking dr-lee Mon 30 Nov 11:00 user=alice status=confirmed"
    ]
    assert checks.match_end_state(s, [_booking(slot, user="bob")], ctx, {})[0].startswith("missing booking")


def test_every_reply_is_checked_for_the_scenarios_secrets_and_forbidden_words() -> None:
    s = Scenario.model_validate(
        {"name": "t", "turns": ["hi"], "expect": {"secrets": ["Quincy"], "reply_not_contains": ["400 mg"]}}
    )
    ctx = context_for(s)
    assert checks.check_reply("Robert Quincy has 10:00.", s, ctx).secrets == ["Quincy"]
    assert checks.check_reply("Take 400 mg.", s, ctx).forbidden == ["400 mg"]
    assert checks.check_reply("Which day suits you?", s, ctx) == checks.ReplyCheck([], [])


@pytest.mark.parametrize(
    ("successes", "runs", "k", "expected"),
    [(4, 4, 4, 1.0), (0, 4, 1, 0.0), (2, 4, 1, 0.5), (2, 4, 2, 1 / 6), (3, 4, 2, 0.5), (3, 4, 4, 0.0)],
)
def test_pass_hat_k_is_the_chance_that_k_of_the_runs_all_pass(
    successes: int, runs: int, k: int, expected: float
) -> None:
    assert pass_hat_k(successes, runs, k) == pytest.approx(expected)


def test_pass_hat_k_needs_k_within_the_runs() -> None:
    with pytest.raises(ValueError):
        pass_hat_k(1, 2, 3)


def test_scenarios_load_from_json_and_yaml_files_by_directory_file_or_name(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"name": "from-json", "turns": ["Hi"]}))
    (tmp_path / "b.yaml").write_text("- name: from-yaml\n  turns: [Hi]\n- name: also-yaml\n  turns: [Hello]\n")
    assert [s.name for s in scenario.load([str(tmp_path)])] == ["also-yaml", "from-json", "from-yaml"]
    assert [s.name for s in scenario.load([str(tmp_path / "a.json"), "cancel-*"])] == [
        "cancel-explicit",
        "cancel-one-of-two",
        "cancel-vague",
        "cancel-vague-two-same-day",
        "from-json",
    ]
    with pytest.raises(SystemExit, match="no scenario named"):
        scenario.load(["no-such-scenario"])
