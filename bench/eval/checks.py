"""Pure checks of one run: the end state against the expectation, double bookings, leaks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time

from bench.eval.scenario import Context, Expect, ExpectedBooking, Scenario
from shared.domain import Booking, BookingStatus


def _hhmm(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def matches(spec: ExpectedBooking, booking: Booking, ctx: Context, scenario: Scenario, ids: dict[str, str]) -> bool:
    """Whether one stored booking satisfies every field the spec gives (groups aside)."""
    if booking.calendar_id != spec.calendar or booking.user_id != (spec.user or scenario.user):
        return False
    if booking.status.value != spec.status:
        return False
    local = booking.start.astimezone(ctx.zone(booking.calendar_id))
    checks = [
        spec.at is None or booking.start == ctx.moment(spec.at),
        spec.day is None or local.date() == ctx.day(spec.day),
        spec.day_between is None or ctx.day(spec.day_between[0]) <= local.date() <= ctx.day(spec.day_between[1]),
        spec.time is None or local.time() == _hhmm(spec.time),
        spec.time_between is None or _hhmm(spec.time_between[0]) <= local.time() < _hhmm(spec.time_between[1]),
        {p.lower() for p in ctx.render_all(spec.participants)} <= {p.lower() for p in booking.participants},
        spec.attendee is None or spec.attendee.lower() in booking.attendee_name.lower(),
        spec.fixture is None or ids.get(spec.fixture) == booking.booking_id,
    ]
    return all(checks)


def expected_specs(scenario: Scenario) -> list[ExpectedBooking]:
    """`expect.bookings`, or with `unchanged` every fixture booking exactly as it was."""
    specs = list(scenario.expect.bookings)
    if scenario.expect.unchanged:
        specs += [
            ExpectedBooking(calendar=b.calendar, user=b.user, at=b.at, fixture=b.id) for b in scenario.fixture.bookings
        ]
    return specs


def match_end_state(scenario: Scenario, stored: Sequence[Booking], ctx: Context, ids: dict[str, str]) -> list[str]:
    """Problems with the end state (empty = it matches): a one-to-one assignment of expected
    to stored bookings, found by backtracking (scenarios hold a handful of bookings)."""
    expect: Expect = scenario.expect
    specs = expected_specs(scenario)
    pool = list(stored)
    candidates = [[i for i, b in enumerate(pool) if matches(s, b, ctx, scenario, ids)] for s in specs]

    def groups_agree(assignment: list[int]) -> bool:
        starts: dict[str, set[datetime]] = defaultdict(set)
        for spec, index in zip(specs, assignment, strict=True):
            if spec.group:
                starts[spec.group].add(pool[index].start)
        return all(len(s) == 1 for s in starts.values())

    def search(i: int, used: list[int]) -> list[int] | None:
        if i == len(specs):
            return used if groups_agree(used) else None
        for j in candidates[i]:
            if j not in used and (found := search(i + 1, [*used, j])) is not None:
                return found
        return None

    problems: list[str] = []
    assignment = search(0, [])
    if assignment is None:
        for spec, cands in zip(specs, candidates, strict=True):
            if not cands:
                problems.append(f"missing booking {describe_spec(spec)}")
        if not problems:
            problems.append("the expected bookings cannot all be matched at once (or their groups differ)")
        return problems
    extra = [
        b
        for i, b in enumerate(pool)
        if i not in assignment and not (expect.ignore_cancelled and b.status is BookingStatus.cancelled)
    ]
    problems += [f"unexpected booking {describe(b, ctx)}" for b in extra]
    return problems


def describe_spec(spec: ExpectedBooking) -> str:
    fields = spec.model_dump(exclude_defaults=True)
    return f"{spec.calendar} " + " ".join(f"{k}={v}" for k, v in fields.items() if k != "calendar")


def describe(b: Booking, ctx: Context) -> str:
    local = b.start.astimezone(ctx.zone(b.calendar_id))
    return f"{b.calendar_id} {local:%a %d %b %H:%M} user={b.user_id} status={b.status.value}"


@dataclass(frozen=True)
class DoubleBookings:
    overlaps: int
    """Pairs of confirmed bookings on one calendar whose times overlap."""
    surplus: int
    """Confirmed bookings beyond both what the scenario expects and what existed before the
    conversation (and still stands): one request booked twice, or a "move" that booked again."""

    @property
    def total(self) -> int:
        return self.overlaps + self.surplus


def double_bookings(
    stored: Iterable[Booking], expected_confirmed: int, preexisting: Collection[str] = ()
) -> DoubleBookings:
    """`preexisting`: ids of the bookings made by the fixture (or by another user mid-run)."""
    confirmed = [b for b in stored if b.status is BookingStatus.confirmed]
    by_calendar: dict[str, list[Booking]] = defaultdict(list)
    for b in confirmed:
        by_calendar[b.calendar_id].append(b)
    overlaps = 0
    for bookings in by_calendar.values():
        for i, a in enumerate(bookings):
            overlaps += sum(1 for b in bookings[i + 1 :] if a.start < b.end and b.start < a.end)
    standing = sum(1 for b in confirmed if b.booking_id in preexisting)
    return DoubleBookings(overlaps, max(0, len(confirmed) - max(expected_confirmed, standing)))


@dataclass(frozen=True)
class ReplyCheck:
    secrets: list[str]
    """Other people's data found in the reply."""
    forbidden: list[str]


def check_reply(reply: str, scenario: Scenario, ctx: Context) -> ReplyCheck:
    """The scenario's own expectations of every reply (leaks and claims: bench/eval/judge.py)."""
    low = reply.lower()
    return ReplyCheck(
        secrets=[s for s in (ctx.render(x) for x in scenario.expect.secrets) if s.lower() in low],
        forbidden=[s for s in (ctx.render(x) for x in scenario.expect.reply_not_contains) if s.lower() in low],
    )


def missing_in_final_reply(reply: str, scenario: Scenario, ctx: Context) -> list[str]:
    low = reply.lower()
    missing = []
    for item in scenario.expect.reply_contains:
        options = [ctx.render(o) for o in ([item] if isinstance(item, str) else item)]
        if not any(o.lower() in low for o in options):
            missing.append(" | ".join(options))
    return missing
