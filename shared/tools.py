"""Stream commands: one Pydantic model per command is the payload of its stream message and its
validation, and says where it goes. What the model may send (and its strict JSON schema, narrowed
to the conversation's state) is built on these in services/chat/tools.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared import streams
from shared.domain import CalendarFields, Email, Identifier, SlotRef
from shared.messages import MessageType

Minutes = Annotated[int, Field(ge=5, le=480)]


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FetchFreeSlots(ToolArgs):
    """Find free appointment slots. Always call this before booking and offer only its slots."""

    calendar_ids: list[Identifier] = Field(
        min_length=1, max_length=5, description="Calendar ids; several ids = times when all are free."
    )
    date_from: date = Field(description="First day to search, YYYY-MM-DD.")
    date_to: date = Field(description="Last day to search (inclusive), YYYY-MM-DD.")
    duration_minutes: Minutes | None = Field(description="Meeting length; null for the calendar's default.")
    timezone: str | None = Field(description="IANA zone to show times in; null for the calendar's zone.")


class BookMeeting(ToolArgs):
    """Book a slot that fetch_free_slots offered, only after the user confirmed that exact slot."""

    calendar_id: Identifier = Field(description="Calendar id of the offered slot.")
    slot_ref: SlotRef | None = Field(
        default=None, description="Ref of the offered slot, e.g. s3; null if start is given."
    )
    start: AwareDatetime | None = Field(description="Start exactly as offered, ISO 8601; null if slot_ref is given.")
    duration_minutes: Minutes | None = Field(description="Meeting length; null for the calendar's default.")
    attendee_name: str = Field(min_length=1, max_length=100, description="Name of the person attending.")
    participants: list[Email] = Field(max_length=10, description="E-mail addresses to invite; may be empty.")

    @model_validator(mode="after")
    def _names_the_slot(self) -> BookMeeting:
        if self.slot_ref is None and self.start is None:
            raise ValueError("give slot_ref (or start) of a slot fetch_free_slots offered")
        return self


class CancelBooking(ToolArgs):
    """Cancel one of the user's own bookings, identified by its calendar and start time."""

    calendar_id: Identifier = Field(description="Calendar id of the booking.")
    start: AwareDatetime = Field(description="Start of the booking, ISO 8601 with UTC offset.")


class RescheduleBooking(ToolArgs):
    """Move one of the user's own bookings to a new offered slot, after the user confirmed it."""

    calendar_id: Identifier = Field(description="Calendar id of the booking.")
    start: AwareDatetime = Field(description="Current start of the booking, ISO 8601 with UTC offset.")
    new_slot_ref: SlotRef | None = Field(
        default=None, description="Ref of the offered new slot, e.g. s3; null if new_start given."
    )
    new_start: AwareDatetime | None = Field(description="New start as offered, ISO 8601; null if new_slot_ref given.")

    @model_validator(mode="after")
    def _names_the_new_slot(self) -> RescheduleBooking:
        if self.new_slot_ref is None and self.new_start is None:
            raise ValueError("give new_slot_ref (or new_start) of a slot fetch_free_slots offered")
        return self


class ListMyBookings(ToolArgs):
    """List the user's own bookings, upcoming first."""

    include_past: bool = Field(description="Also list bookings that already ended.")


class DescribeCalendars(ToolArgs):
    """Internal: the tenant's calendars, for the system prompt. Not offered to the model."""


class UpsertCalendar(ToolArgs, CalendarFields):
    """Admin: create or replace one calendar. Not offered to the model.

    The payload is a Calendar; its tenant is the envelope's, so `tenant_id` may be left out
    and, if given, must equal the envelope's tenant.
    """

    tenant_id: Identifier | None = Field(default=None, description="Optional; must be the envelope's tenant.")


MAX_ICS_CHARS: Final = 1_048_576


class ImportIcs(ToolArgs):
    """Admin: replace one source's external busy blocks of a calendar with an iCalendar file's
    events. Only the busy intervals are kept. Not offered to the model."""

    calendar_id: Identifier = Field(description="Calendar the busy blocks belong to.")
    ics: str = Field(min_length=1, max_length=MAX_ICS_CHARS, description="iCalendar (RFC 5545) text.")
    source: Identifier = Field(
        default="default", description="Name of the feed; a new import replaces only this source's blocks."
    )


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """Where a message type goes and whether it writes."""

    name: MessageType
    args: type[ToolArgs]
    stream: str
    writes: bool


TOOLS: Final[dict[str, ToolSpec]] = {
    spec.name: spec
    for spec in (
        ToolSpec("fetch_free_slots", FetchFreeSlots, streams.CALENDAR_REQUESTS, writes=False),
        ToolSpec("book_meeting", BookMeeting, streams.BOOKING_COMMANDS, writes=True),
        ToolSpec("cancel_booking", CancelBooking, streams.BOOKING_COMMANDS, writes=True),
        ToolSpec("reschedule_booking", RescheduleBooking, streams.BOOKING_COMMANDS, writes=True),
        ToolSpec("list_my_bookings", ListMyBookings, streams.BOOKING_COMMANDS, writes=False),
        ToolSpec("describe_calendars", DescribeCalendars, streams.CALENDAR_REQUESTS, writes=False),
        ToolSpec("upsert_calendar", UpsertCalendar, streams.CALENDAR_REQUESTS, writes=True),
        ToolSpec("import_ics", ImportIcs, streams.CALENDAR_REQUESTS, writes=True),
    )
}
