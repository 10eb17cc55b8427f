"""Scenario files: the model of one scenario, its loader, relative dates and `{{var}}` templates
(over 300 lines: the file format is one schema, and its date and template rules are part of it).

A scenario is data (YAML or JSON): who the user is, what the calendars hold before the
conversation, what the user says (or the goal of a simulated user), what the end state in
Redis must be, and optionally what a correct model would do (`scripted_model`), so the same
file also runs offline against the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.calendar.store import load_calendars
from shared.domain import Calendar

SCENARIO_DIR = Path(__file__).with_name("scenarios")
DEMO_CALENDARS = Path(__file__).resolve().parents[2] / "services" / "calendar" / "demo_calendars.json"
TENANT = "demo"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixtureBooking(_Strict):
    """A booking that exists before the conversation (made through the booking worker)."""

    id: str = Field(description="Name for expectations (`fixture: <id>`) and templates ({{id}} = its start).")
    calendar: str = "dr-lee"
    at: str = Field(description="Name of a moment (see `moments`).")
    user: str = "alice"
    name: str = "Alice Smith"
    participants: list[str] = Field(default_factory=list)


class Fixture(_Strict):
    calendars: Literal["demo", "none"] | list[dict[str, Any]] = "demo"
    """`demo` (services/calendar/demo_calendars.json), `none` (no calendar at all) or Calendar objects."""
    closed: dict[str, list[str]] = Field(default_factory=dict)
    """calendar id -> date names on which that calendar is closed (a date override with no hours)."""
    bookings: list[FixtureBooking] = Field(default_factory=list)


class Action(_Strict):
    """Something the harness does between two user turns: another user books a slot."""

    book: FixtureBooking


class UserTurn(_Strict):
    say: str | None = None
    optional: bool = False
    """Sent only while the expected end state is not reached yet (a user repeating "yes")."""
    action: Action | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> UserTurn:
        if (self.say is None) == (self.action is None):
            raise ValueError("a turn is either `say` (the user's text) or `action`")
        return self


class SimulatedUser(_Strict):
    """A user played by a model: it knows its goal and answers the assistant until DONE."""

    goal: str
    persona: str = "You are a patient booking an appointment. You write short, plain messages."
    opening: str | None = None
    """The first message (templated); without one the user model writes it."""
    max_turns: int = Field(default=6, ge=1, le=20)


class ExpectedBooking(_Strict):
    """One booking that must be in Redis at the end. Every given field must hold."""

    calendar: str = "dr-lee"
    user: str | None = None
    """Defaults to the scenario's user."""
    status: Literal["confirmed", "cancelled"] = "confirmed"
    at: str | None = None
    """A moment's name: the booking starts exactly then."""
    day: str | None = None
    """A date's name: the booking starts on that local day (calendar zone)."""
    day_between: tuple[str, str] | None = None
    time: str | None = None
    """Local start "HH:MM" in the calendar's zone."""
    time_between: tuple[str, str] | None = None
    """Local start within [from, to)."""
    participants: list[str] = Field(default_factory=list)
    """Addresses that must be among the participants."""
    attendee: str | None = None
    """Text the attendee name must contain (case-insensitive)."""
    fixture: str | None = None
    """The booking must be this fixture booking (same id): moved, not cancelled and rebooked."""
    group: str | None = None
    """Bookings of one group must start at the same instant."""


class Expect(_Strict):
    bookings: list[ExpectedBooking] = Field(default_factory=list)
    """The complete set of bookings stored at the end (any user, any status), matched one to one."""
    unchanged: bool = False
    """The end state equals the fixture: every fixture booking as it was, nothing else."""
    ignore_cancelled: bool = False
    """Cancelled bookings not listed in `bookings` are allowed (cancel + rebook counts as a move)."""
    no_writes: bool = False
    """No write tool (book, cancel, reschedule) may even be attempted."""
    reply_contains: list[str | list[str]] = Field(default_factory=list)
    """Texts the final reply must contain (case-insensitive); a list = any one of them."""
    reply_not_contains: list[str] = Field(default_factory=list)
    """Texts no reply may contain (case-insensitive)."""
    secrets: list[str] = Field(default_factory=list)
    """Other people's data: any reply holding one is a privacy leak."""


class ScenarioScript(_Strict):
    """What a correct model (and the simulated user) would say in this scenario, played offline."""

    assistant: list[list[dict[str, Any]]] = Field(default_factory=list)
    """Steps of a correct model, one list per user turn (see bench/eval/scripted.py)."""
    user: list[str] = Field(default_factory=list)
    """Messages of the simulated user, in order; "DONE" ends the conversation."""


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    user: str = "alice"
    user_name: str = "Alice Smith"
    gateway_name: bool = True
    """Whether the gateway passes the user's name (X-User-Name); false: the user must say it."""
    zone: str = "Europe/Berlin"
    """Zone in which relative dates are counted (the first calendar's)."""
    dates: dict[str, str] = Field(default_factory=dict)
    moments: dict[str, str] = Field(default_factory=dict)
    fixture: Fixture = Field(default_factory=Fixture)
    turns: list[UserTurn] = Field(default_factory=list)
    simulated_user: SimulatedUser | None = None
    expect: Expect = Field(default_factory=Expect)
    scripted_model: ScenarioScript | None = None

    @model_validator(mode="before")
    @classmethod
    def _turns_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("turns"), list):
            data = {**data, "turns": [{"say": t} if isinstance(t, str) else t for t in data["turns"]]}
        return data

    @model_validator(mode="after")
    def _has_a_user(self) -> Scenario:
        if not self.turns and self.simulated_user is None:
            raise ValueError("a scenario needs `turns` or a `simulated_user`")
        return self

    @property
    def user_turns(self) -> list[UserTurn]:
        return [t for t in self.turns if t.say is not None]


# ---------------------------------------------------------------- relative dates

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_OFFSET = re.compile(r"^([+-]\d+)(?:\s*days?)?$")
_NEXT = re.compile(r"^next\s+(\S+)(?:\s+after\s+(.+))?$")
_NEXT_WEEK = re.compile(r"^(\w+)\s+next\s+week$")


def _weekday(name: str) -> int:
    key = name.lower()[:3]
    if key not in _DAYS:
        raise ValueError(f"unknown weekday {name!r}")
    return _DAYS.index(key)


def _weekday_set(text: str) -> set[int]:
    """`weekday` (Mon-Fri), `mon-thu` (a range), `mon|wed|fri` or one day name."""
    if text == "weekday":
        return {0, 1, 2, 3, 4}
    days: set[int] = set()
    for part in text.split("|"):
        if "-" in part:
            first, last = (_weekday(p) for p in part.split("-", 1))
            days.update(range(first, last + 1))
        else:
            days.add(_weekday(part))
    return days


def resolve_date(expr: str, today: date, known: Mapping[str, date]) -> date:
    """One relative date. Grammar (all counted from `today` in the scenario's zone):

    `today` | `tomorrow` | `yesterday` | `+N days` | `-N days` | `<name>` (another date) |
    `next <days>` (first such day after today) | `next <days> after <date expr>` |
    `<weekday> next week` (that day of the following Monday-Sunday week), where <days> is
    `weekday`, `mon-thu`, `mon|wed|fri` or a day name.
    """
    text = expr.strip().lower()
    if text in known:
        return known[text]
    if text in ("today", "tomorrow", "yesterday"):
        return today + timedelta(days={"today": 0, "tomorrow": 1, "yesterday": -1}[text])
    if m := _OFFSET.match(text):
        return today + timedelta(days=int(m.group(1)))
    if m := _NEXT_WEEK.match(text):
        monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
        return monday + timedelta(days=_weekday(m.group(1)))
    if m := _NEXT.match(text):
        wanted = _weekday_set(m.group(1))
        day = (resolve_date(m.group(2), today, known) if m.group(2) else today) + timedelta(days=1)
        while day.weekday() not in wanted:
            day += timedelta(days=1)
        return day
    raise ValueError(f"cannot read the date {expr!r}")


# ---------------------------------------------------------------- templates

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::([^}]*))?\}\}")


def show(value: Any, spec: str = "") -> str:
    """A template value as text: dates and times ISO by default, strftime with a spec."""
    if isinstance(value, datetime):
        return value.strftime(spec) if spec else value.isoformat(timespec="minutes")
    if isinstance(value, date):
        return value.strftime(spec) if spec else value.isoformat()
    return format(value, spec)


@dataclass
class Context:
    """The values a scenario's texts and steps may name; scripted steps add offers to it."""

    today: date
    values: dict[str, Any] = field(default_factory=dict)
    zones: dict[str, ZoneInfo] = field(default_factory=dict)
    """Calendar id -> its zone."""

    def render(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.values:
                raise KeyError(f"unknown template name {name!r} in {text!r}")
            return show(self.values[name], (m.group(2) or "").strip())

        return _PLACEHOLDER.sub(one, text)

    def render_all(self, value: Any) -> Any:
        """Every string inside a JSON-like value, rendered."""
        if isinstance(value, str):
            return self.render(value)
        if isinstance(value, list):
            return [self.render_all(v) for v in value]
        if isinstance(value, dict):
            return {k: self.render_all(v) for k, v in value.items()}
        return value

    def day(self, name: str) -> date:
        value = self.values.get(name)
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        return resolve_date(name, self.today, self.dates)

    def moment(self, name: str) -> datetime:
        value = self.values.get(name)
        if not isinstance(value, datetime):
            raise KeyError(f"{name!r} is not a moment")
        return value

    @property
    def dates(self) -> dict[str, date]:
        return {k: v for k, v in self.values.items() if isinstance(v, date) and not isinstance(v, datetime)}

    def zone(self, name: str) -> ZoneInfo:
        """A calendar's zone by calendar id, or an IANA zone by name."""
        return self.zones.get(name) or ZoneInfo(name)


_MOMENT = re.compile(r"^(\S+)\s+(\d{1,2}):(\d{2})(?:\s+(\S+))?$")
_MOMENT_IN = re.compile(r"^(\S+)\s+in\s+(\S+)$")


def resolve_moment(expr: str, ctx: Context, default_zone: str) -> datetime:
    """`<date> HH:MM [<calendar id or IANA zone>]` (local wall time there), or
    `<moment> in <calendar id or IANA zone>` (the same instant shown in another zone)."""
    text = expr.strip()
    if m := _MOMENT_IN.match(text):
        return ctx.moment(m.group(1)).astimezone(ctx.zone(m.group(2)))
    if m := _MOMENT.match(text):
        day = ctx.day(m.group(1))
        zone = ctx.zone(m.group(4) or default_zone)
        return datetime.combine(day, time(int(m.group(2)), int(m.group(3))), tzinfo=zone)
    raise ValueError(f"cannot read the moment {expr!r}")


def fixture_calendars(scenario: Scenario, ctx: Context | None = None) -> list[Calendar]:
    """The calendars to seed, with the scenario's closed days applied."""
    spec = scenario.fixture.calendars
    if spec == "none":
        calendars: list[Calendar] = []
    elif spec == "demo":
        calendars = load_calendars(DEMO_CALENDARS)
    else:
        calendars = [Calendar.model_validate({"tenant_id": TENANT, **c}) for c in spec]
    if ctx is not None and scenario.fixture.closed:
        patched = []
        for cal in calendars:
            days = scenario.fixture.closed.get(cal.calendar_id, [])
            overrides = {**cal.date_overrides, **{ctx.day(d): [] for d in days}}
            patched.append(cal.model_copy(update={"date_overrides": overrides}))
        calendars = patched
    return calendars


def context_for(scenario: Scenario, now: datetime | None = None) -> Context:
    """Resolve the scenario's dates and moments against today (in the scenario's zone)."""
    zone = ZoneInfo(scenario.zone)
    today = (now or datetime.now(zone)).astimezone(zone).date()
    ctx = Context(today=today)
    ctx.zones = {c.calendar_id: c.zone for c in fixture_calendars(scenario)}
    ctx.values.update(today=today, user=scenario.user, user_name=scenario.user_name)
    for name, expr in scenario.dates.items():
        ctx.values[name] = resolve_date(expr, today, ctx.dates)
    for name, expr in scenario.moments.items():
        ctx.values[name] = resolve_moment(expr, ctx, scenario.zone)
    for booking in scenario.fixture.bookings:
        ctx.values.setdefault(booking.id, ctx.moment(booking.at))
    return ctx


# ---------------------------------------------------------------- loading


def _parse(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    import yaml  # PyYAML: in the dev extras

    return yaml.safe_load(text)


def load_file(path: Path) -> list[Scenario]:
    """One file holds one scenario, or a list of them."""
    data = _parse(path)
    items = data if isinstance(data, list) else [data]
    return [Scenario.model_validate(item) for item in items]


def load(selection: Iterable[str] = ()) -> list[Scenario]:
    """Scenarios from directories, files or names (of shipped scenarios, or glob patterns of
    them); nothing selected = every shipped scenario. Sorted by name, names unique."""
    chosen = list(selection) or [str(SCENARIO_DIR)]
    found: dict[str, Scenario] = {}
    shipped: list[Scenario] | None = None
    for item in chosen:
        path = Path(item)
        if path.is_dir():
            files = [f for f in sorted(path.iterdir()) if f.suffix in (".yaml", ".yml", ".json")]
            scenarios = [s for f in files for s in load_file(f)]
        elif path.is_file():
            scenarios = load_file(path)
        else:
            shipped = shipped if shipped is not None else load([str(SCENARIO_DIR)])
            pattern = re.compile("^" + re.escape(item).replace(r"\*", ".*") + "$")
            scenarios = [s for s in shipped if pattern.match(s.name)]
            if not scenarios:
                raise SystemExit(f"no scenario named {item!r} (and no such file or directory)")
        for s in scenarios:
            if s.name in found and found[s.name] != s:
                raise SystemExit(f"two scenarios are named {s.name!r}")
            found[s.name] = s
    return [found[name] for name in sorted(found)]
