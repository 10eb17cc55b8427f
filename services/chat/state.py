"""What the server knows about a conversation when a turn starts, and the labels the model uses.

The model never names a slot or a booking by copying a timestamp or an id: it picks one label
out of an enum built here from the state, e.g. "Dr. Lee, Tue 01 Dec 10:00". A label carries its
meaning (so a small model matches "10 please" to it), and the server maps it back to the exact
offer or booking. Labels are a pure function of the offer or booking, so the label that a tool
result showed the model in an earlier turn is still the label of that slot now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from runtime.offers import Offered
from shared.domain import Booking, CalendarDirectory, CalendarSummary


def when(moment: datetime) -> str:
    """A time as people write it: "Tue 1 Dec at 10:30" (in the moment's own zone)."""
    return f"{moment:%a} {moment.day} {moment:%b} at {moment:%H:%M}"


@dataclass(frozen=True, slots=True)
class SlotChoice:
    """One live offer of this conversation, as the model may name it."""

    label: str
    offer: Offered
    start: datetime
    """In the (first) calendar's zone."""
    calendars: tuple[CalendarSummary, ...]

    @property
    def calendar_names(self) -> str:
        return " and ".join(c.name for c in self.calendars)


@dataclass(frozen=True, slots=True)
class BookingChoice:
    """One of the user's upcoming bookings, as the model may name it."""

    label: str
    booking: Booking
    start: datetime
    """In the calendar's zone."""
    calendar: CalendarSummary | None

    @property
    def calendar_name(self) -> str:
        return self.calendar.name if self.calendar else "your calendar"


def _slot_label(names: str, local: datetime) -> str:
    return f"{names}, {local:%a %d %b %H:%M}"


def slot_label(calendars: tuple[CalendarSummary, ...], start: datetime) -> str:
    """The label of a slot of these calendars at `start` (shown in the first calendar's zone)."""
    local = start.astimezone(ZoneInfo(calendars[0].timezone))
    return _slot_label(" and ".join(c.name for c in calendars), local)


@dataclass
class ConversationState:
    """The tenant's calendars, this conversation's live offers, the user's upcoming bookings."""

    directory: CalendarDirectory
    slots: list[SlotChoice] = field(default_factory=list)
    bookings: list[BookingChoice] = field(default_factory=list)
    moving: BookingChoice | None = None
    """The booking the user is moving: the latest free-times check was made to move it (and it
    is still the user's, as it was then). A slot of its calendar picked now moves it."""

    def calendar(self, calendar_id: str) -> CalendarSummary | None:
        return next((c for c in self.directory.calendars if c.calendar_id == calendar_id), None)

    @property
    def calendar_ids(self) -> list[str]:
        return [c.calendar_id for c in self.directory.calendars]

    @property
    def zones(self) -> dict[str, str]:
        return {c.calendar_id: c.timezone for c in self.directory.calendars}

    def slot(self, label: str) -> SlotChoice | None:
        return next((s for s in self.slots if s.label == label), None)

    def booking(self, label: str) -> BookingChoice | None:
        return next((b for b in self.bookings if b.label == label), None)

    def moving_to(self, slot: SlotChoice) -> BookingChoice | None:
        """The booking that picking this slot moves, if the user is moving one on its calendar."""
        moving = self.moving
        if moving is None or slot.calendars[0].calendar_id != moving.booking.calendar_id:
            return None
        return moving

    def own_booking_at(self, slot: SlotChoice) -> BookingChoice | None:
        """The user's booking at exactly this slot (booking it again would book nothing new)."""
        calendar_id = slot.calendars[0].calendar_id
        return next(
            (b for b in self.bookings if b.booking.calendar_id == calendar_id and b.booking.start == slot.start),
            None,
        )

    def slot_choices(self, offers: list[Offered]) -> list[SlotChoice]:
        """Live offers as choices, earliest first, one per label (of known calendars only)."""
        choices: dict[str, SlotChoice] = {}
        for offer in sorted(offers, key=lambda o: (o.start, o.ref)):
            calendars = tuple(c for c in (self.calendar(i) for i in offer.calendar_ids) if c is not None)
            if len(calendars) != len(offer.calendar_ids) or not calendars:
                continue
            start = datetime.fromtimestamp(offer.start, ZoneInfo(calendars[0].timezone))
            label = slot_label(calendars, start)
            choices.setdefault(label, SlotChoice(label, offer, start, calendars))
        return list(choices.values())

    def booking_choices(self, bookings: list[Booking]) -> list[BookingChoice]:
        """The user's confirmed upcoming bookings as choices, earliest first."""
        choices: dict[str, BookingChoice] = {}
        for b in sorted(bookings, key=lambda b: b.start):
            if b.status != "confirmed":
                continue
            calendar = self.calendar(b.calendar_id)
            start = b.start.astimezone(ZoneInfo(calendar.timezone if calendar else "UTC"))
            name = calendar.name if calendar else b.calendar_id
            choices.setdefault(_slot_label(name, start), BookingChoice(_slot_label(name, start), b, start, calendar))
        return list(choices.values())
