"""A chat conversation's state built in memory for unit tests: Dr. Lee's calendar (Berlin, 30
minute slots), offers at given starts and the user's bookings at given starts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from runtime.offers import Offered
from services.chat.state import ConversationState
from shared.domain import Booking, CalendarDirectory, CalendarSummary

BERLIN = ZoneInfo("Europe/Berlin")
LEE = CalendarSummary(
    calendar_id="dr-lee",
    name="Dr. Lee",
    timezone="Europe/Berlin",
    weekly_hours={},
    slot_minutes=30,
    require_confirmation=True,
)


def booking(start: datetime, index: int = 1, minutes: int = 30) -> Booking:
    """Alice's confirmed booking with Dr. Lee at `start`."""
    at = start.astimezone(UTC)
    return Booking(
        booking_id=f"b{index}",
        tenant_id="demo",
        calendar_id="dr-lee",
        user_id="alice",
        attendee_name="Alice Smith",
        start=at,
        end=at + timedelta(minutes=minutes),
        created_at=at - timedelta(days=1),
    )


def conversation_state(offered: Sequence[datetime] = (), booked: Sequence[datetime] = ()) -> ConversationState:
    """Dr. Lee's calendar, 30-minute offers s1, s2, ... at `offered`, and bookings at `booked`."""
    state = ConversationState(CalendarDirectory(calendars=[LEE]))
    offers = [Offered(f"s{i + 1}", int(t.timestamp()), 1800, ("dr-lee",)) for i, t in enumerate(offered)]
    state.slots = state.slot_choices(offers)
    state.bookings = state.booking_choices([booking(t, i) for i, t in enumerate(booked)])
    return state
