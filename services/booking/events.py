"""booking.events: one entry per booking change (created / cancelled / rescheduled).

Delivery is at-least-once: a worker that dies after its write but before publishing leaves the
command pending, and the retry publishes the event again. Every copy is byte-identical (it is
rebuilt from what the write stored atomically with the change) and carries the same
`event_id`, so consumers dedupe on it.

An event carries the facts only. The .ics invitation is rendered from them off the booking's
critical path, by the `invitations` consumer group (services/booking/invitations.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from shared import streams
from shared.domain import Booking, BookingOutcome

EventType = Literal["created", "cancelled", "rescheduled"]
EVENT_TYPES: Final[dict[str, EventType]] = {
    "confirmed": "created",
    "cancelled": "cancelled",
    "rescheduled": "rescheduled",
}
_EVENT_NAMESPACE: Final = uuid.UUID("5f2d7c1e-9a51-4b8e-8f0c-6a3e2b9d4c10")


class ChangeMeta(BaseModel):
    """Stored with a write, atomically: what its event needs beyond the booking itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str
    """The command message that caused the change."""
    occurred_at: AwareDatetime
    calendar_name: str
    previous_start: AwareDatetime | None = None
    previous_end: AwareDatetime | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A write's outcome and whether this very call applied it."""

    outcome: BookingOutcome
    applied: bool
    """True when this call wrote it; False for a replay of an earlier attempt or an existing booking."""
    sequence: int = 0
    """The booking's revision after the change: its iCalendar SEQUENCE."""
    meta: ChangeMeta | None = None
    """None when nothing was written for this request (the caller's existing booking)."""
    stored_json: str | None = None
    """`outcome` exactly as the write stored it (JSON), when at hand: the reply carries it as is."""

    def outcome_json(self) -> str:
        return self.stored_json if self.stored_json is not None else self.outcome.model_dump_json()


class BookingEvent(BaseModel):
    """One entry of booking.events."""

    event_id: str
    """Stable per change: the same for every redelivery of it."""
    type: EventType
    tenant_id: str
    occurred_at: AwareDatetime
    causation_id: str
    """The message id of the command that caused the change."""
    sequence: int
    booking: Booking
    calendar_name: str
    previous_start: AwareDatetime | None = None
    previous_end: AwareDatetime | None = None


def event_id(tenant_id: str, idempotency_key: str, kind: EventType) -> str:
    """A stable id for the change one idempotency key made."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{tenant_id}\x00{idempotency_key}\x00{kind}").hex


def build_event(tenant_id: str, idempotency_key: str, change: Change) -> BookingEvent:
    """The event of a stored change (it must carry its meta)."""
    meta = change.meta
    if meta is None:
        raise ValueError("a change without meta wrote nothing and has no event")
    kind = EVENT_TYPES[change.outcome.status]
    return BookingEvent.model_construct(
        event_id=event_id(tenant_id, idempotency_key, kind),
        type=kind,
        tenant_id=tenant_id,
        occurred_at=meta.occurred_at,
        causation_id=meta.message_id,
        sequence=change.sequence,
        booking=change.outcome.booking,
        calendar_name=meta.calendar_name,
        previous_start=meta.previous_start,
        previous_end=meta.previous_end,
    )


def booking_event(tenant_id: str, idempotency_key: str, change: Change) -> tuple[str, str]:
    """(stream, JSON) of the change's booking.events entry."""
    return streams.BOOKING_EVENTS, build_event(tenant_id, idempotency_key, change).model_dump_json()
