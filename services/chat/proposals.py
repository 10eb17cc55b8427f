"""A write the model asked for, as the pending action the user is asked about and the exact
stream command an approval runs: one builder for book, move and cancel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from services.chat import facts
from services.chat.approvals import Command, PendingAction, expires_at, new_action_id
from services.chat.state import BookingChoice, SlotChoice
from shared.domain import CalendarSummary
from shared.messages import MessageType
from shared.tools import BookMeeting, CancelBooking, RescheduleBooking

Proposal = tuple[PendingAction, Command]
Kind = Literal["book", "cancel", "reschedule"]


def _proposal(
    ttl_s: int,
    kind: Kind,
    calendar: CalendarSummary,
    calendar_name: str,
    start: datetime,
    payload: BaseModel,
    tool: MessageType,
    *,
    new_start: datetime | None = None,
    attendee: str | None = None,
    participants: list[str] | None = None,
    hold: tuple[int, int] | None = None,
) -> Proposal:
    action = PendingAction(
        action_id=new_action_id(),
        kind=kind,
        calendar_name=calendar_name,
        start=start,
        new_start=new_start,
        attendee_name=attendee,
        participants=participants or [],
        question=facts.question(
            kind, calendar_name, start, new_start=new_start, attendee=attendee, participants=participants or []
        ),
        expires_at=expires_at(datetime.now(UTC), ttl_s),
    )
    command = Command(
        tool=tool, payload=json.loads(payload.model_dump_json()), calendar_id=calendar.calendar_id, hold=hold
    )
    return action, command


def book(choice: SlotChoice, name: str, participants: list[str], ttl_s: int) -> Proposal:
    """Book an offered slot (by its reference) for the user."""
    calendar = choice.calendars[0]
    payload = BookMeeting(
        calendar_id=calendar.calendar_id,
        slot_ref=choice.offer.ref,
        start=None,
        duration_minutes=choice.offer.duration_s // 60,
        attendee_name=name,
        participants=participants,
    )
    hold = (choice.offer.start, choice.offer.duration_s)
    return _proposal(
        ttl_s,
        "book",
        calendar,
        choice.calendar_names,
        choice.start,
        payload,
        "book_meeting",
        attendee=name,
        participants=participants,
        hold=hold,
    )


def move(booking: BookingChoice, choice: SlotChoice, calendar: CalendarSummary, ttl_s: int) -> Proposal:
    """Move one of the user's bookings to an offered slot of its own calendar."""
    original = booking.booking
    payload = RescheduleBooking(
        calendar_id=original.calendar_id, start=original.start, new_slot_ref=choice.offer.ref, new_start=None
    )
    hold = (choice.offer.start, choice.offer.duration_s)
    return _proposal(
        ttl_s,
        "reschedule",
        calendar,
        booking.calendar_name,
        booking.start,
        payload,
        "reschedule_booking",
        new_start=choice.start,
        attendee=booking.booking.attendee_name,
        hold=hold,
    )


def cancel(booking: BookingChoice, calendar: CalendarSummary, ttl_s: int) -> Proposal:
    """Cancel one of the user's bookings."""
    payload = CancelBooking(calendar_id=calendar.calendar_id, start=booking.booking.start)
    return _proposal(
        ttl_s,
        "cancel",
        calendar,
        calendar.name,
        booking.start,
        payload,
        "cancel_booking",
        attendee=booking.booking.attendee_name,
    )
