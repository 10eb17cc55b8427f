"""Domain records that cross service boundaries: calendars, bookings, slot answers."""

from __future__ import annotations

import re
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.networks import validate_email

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
"""Tenant, calendar and user ids: lower-case, url- and key-safe."""

REF_PATTERN: Final = r"^s[1-9][0-9]{0,5}$"
REF_IN_TEXT: Final = re.compile(r"\bs[1-9][0-9]{0,5}\b")
"""A reference written into prose: the leak guard strips it from what the user reads."""


SlotRef = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
"""A slot reference as fetch_free_slots gives it: "s" and a number, unique in the conversation."""


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin'") from exc
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


PLAIN_EMAIL: Final = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)@(?:[a-z0-9]+(?:-[a-z0-9]+)*\.)+(?P<tld>[a-z]{2,63})"
)
"""The common case: an ASCII dot-atom local part at a lower-case host name. email_validator
accepts every such address (within the length limits and outside its special-use names) and
returns it unchanged; tests/unit/test_email_fast_path.py checks that property against it."""
_SPECIAL_USE: Final = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def _check_email(address: str) -> str:
    """pydantic's own e-mail check (normalised address). A plain address is recognised by one
    regex: the full check costs ~35 µs, a tenth of a booking worker's CPU per participant."""
    plain = PLAIN_EMAIL.fullmatch(address)
    if (
        plain is not None
        and len(address) <= 254
        and len(plain["local"]) <= 64
        and all(len(label) <= 63 for label in address[plain.end("local") + 1 :].split("."))
        and plain["tld"] not in _SPECIAL_USE
    ):
        return address
    return validate_email(address)[1]


Email = Annotated[str, AfterValidator(_check_email), WithJsonSchema({"format": "email", "type": "string"})]
"""An e-mail address, validated like pydantic's EmailStr (the same schema)."""


class TimeRange(BaseModel):
    """A local wall-clock range within one day, e.g. 09:00-12:30."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start:
            raise ValueError("a time range must end after it starts")
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarFields(BaseModel):
    """A calendar's id and booking rules: every field of Calendar but its tenant.

    Shared by Calendar and the `upsert_calendar` command, whose tenant comes from its envelope.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    calendar_id: Identifier
    name: str = Field(min_length=1, max_length=100)
    timezone: TimeZoneName
    weekly_hours: dict[Weekday, list[TimeRange]] = Field(default_factory=dict)
    date_overrides: dict[date, list[TimeRange]] = Field(
        default_factory=dict, description="Per-date hours replacing the weekly ones; [] = closed."
    )
    slot_minutes: int = Field(default=30, ge=5, le=480)
    granularity_minutes: int = Field(default=30, ge=5, le=240)
    buffer_before_minutes: int = Field(default=0, ge=0, le=240)
    buffer_after_minutes: int = Field(default=0, ge=0, le=240)
    min_notice_minutes: int = Field(default=60, ge=0)
    horizon_days: int = Field(default=60, ge=1, le=730)
    max_bookings_per_day: int | None = Field(default=None, ge=1)
    require_confirmation: bool = True
    hold_seconds: int = Field(
        default=0,
        ge=0,
        le=900,
        description="While a proposed slot awaits the user's yes, it is held this long and shown busy to others. "
        "0 = off.",
    )


class Calendar(CalendarFields):
    """One bookable calendar (a person, a room) of one tenant, and its booking rules."""

    tenant_id: Identifier

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class BookingStatus(StrEnum):
    confirmed = "confirmed"
    cancelled = "cancelled"


class Booking(BaseModel):
    """A stored booking. Times are UTC at rest and shown in the calendar's zone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    booking_id: str
    tenant_id: Identifier
    calendar_id: Identifier
    user_id: Identifier
    attendee_name: str
    participants: list[Email] = Field(default_factory=list)
    start: AwareDatetime
    end: AwareDatetime
    status: BookingStatus = BookingStatus.confirmed
    created_at: AwareDatetime
    notes: str | None = None


class NoSlotReason(StrEnum):
    """Why a window holds no free slot, so the model can offer an alternative."""

    outside_working_hours = "outside_working_hours"
    fully_booked = "fully_booked"
    beyond_horizon = "beyond_horizon"
    too_short_notice = "too_short_notice"
    in_the_past = "in_the_past"


class OfferedSlot(BaseModel):
    """One free slot as offered: its short reference in the conversation ("s3", which
    book_meeting accepts instead of the start) and its start in the display zone."""

    model_config = ConfigDict(frozen=True)

    ref: str
    start: AwareDatetime


class FreeSlots(BaseModel):
    """Answer to fetch_free_slots: free starts only, never details of other people's events."""

    timezone: str
    duration_minutes: int
    slots: list[OfferedSlot]
    more_available: bool = False
    reason: NoSlotReason | None = None
    next_available: OfferedSlot | None = None
    """When no slot fits: the first free slot after the window (also offered, so bookable)."""


class BookingOutcome(BaseModel):
    """Answer to a write: the booking as it now stands."""

    status: Literal["confirmed", "cancelled", "rescheduled"]
    booking: Booking


class BookingList(BaseModel):
    """Answer to list_my_bookings: the caller's own bookings, upcoming first."""

    bookings: list[Booking]


class CalendarSummary(BaseModel):
    """What the chat service needs to describe a calendar in its prompt."""

    calendar_id: str
    name: str
    timezone: str
    weekly_hours: dict[Weekday, list[TimeRange]]
    slot_minutes: int
    require_confirmation: bool
    hold_seconds: int = 0


class CalendarDirectory(BaseModel):
    """Answer to describe_calendars."""

    calendars: list[CalendarSummary]


class CalendarSaved(BaseModel):
    """Answer to upsert_calendar: the calendar as stored, and whether it is new."""

    created: bool
    calendar: Calendar


class BusyImported(BaseModel):
    """Answer to import_ics: how many busy blocks were stored. Never the events' details."""

    calendar_id: str
    source: str
    busy_blocks: int
    window_start: AwareDatetime
    window_end: AwareDatetime
