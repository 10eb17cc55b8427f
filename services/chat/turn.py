"""One turn's inputs and what it has done so far."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from services.chat.approvals import PendingAction
from services.chat.state import ConversationState
from shared.domain import Booking, BookingOutcome

ActivityCallback = Callable[[str], Awaitable[None]]


@dataclass
class Turn:
    """Who is speaking, in which conversation, and what they said."""

    tenant_id: str
    user_id: str
    conversation_id: str
    text: str
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str | None = None
    user_name: str | None = None
    """The user's display name from the gateway, used when the user gives none."""


@dataclass
class TurnResult:
    reply: str
    bookings: list[Booking] = field(default_factory=list)
    suggested_slots: list[datetime] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    pending_action: PendingAction | None = None


@dataclass
class Progress:
    """What happened in this turn so far, and what the state leaves the next model call."""

    state: ConversationState
    on_activity: ActivityCallback | None = None
    outcomes: list[BookingOutcome] = field(default_factory=list)
    slots: list[datetime] = field(default_factory=list)
    pending: PendingAction | None = None
    force: str | None = None
    """A tool the next model call must call (the state left no choice)."""
    within: frozenset[str] | None = None
    """The tools this turn may use at all (a change to a pending action keeps its kind)."""
    forced_once: set[str] = field(default_factory=set)
    """Tools a state rule has forced in this turn already (each rule forces once)."""
    words: str = ""
    """Everything the user wrote in this conversation (what a length may come from)."""
    failed: set[tuple[str, str]] = field(default_factory=set)
    """Calls (name, arguments) that got an error in this turn: the same call again ends the turn."""

    async def activity(self, label: str) -> None:
        if self.on_activity is not None:
            await self.on_activity(label)

    def result(self, reply: str) -> TurnResult:
        seen: dict[str, Booking] = {}
        for o in self.outcomes:  # one booking once, as it stands last
            seen[o.booking.booking_id] = _in_calendar_zone(o.booking, self.state)
        return TurnResult(
            reply=reply,
            bookings=list(seen.values()),
            suggested_slots=list(dict.fromkeys(self.slots)),
            effects=[o.status for o in self.outcomes],
            pending_action=self.pending,
        )


def _in_calendar_zone(booking: Booking, state: ConversationState) -> Booking:
    """The same instants, written with the calendar's UTC offset (stored in UTC, spoken locally)."""
    zone = ZoneInfo(state.zones.get(booking.calendar_id, "UTC"))
    return booking.model_copy(update={"start": booking.start.astimezone(zone), "end": booking.end.astimezone(zone)})
