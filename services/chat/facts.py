"""Replies built from facts: the offered times, the confirmation question, the outcome of a
write, the user's bookings. None of them needs a model call, and none can state a time that no
tool result gave. Times read as people write them ("Tue 1 Dec at 10:30"), never ISO strings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from services.chat.approvals import PendingAction
from services.chat.state import BookingChoice, ConversationState, when
from shared.domain import BookingOutcome, FreeSlots, NoSlotReason

UNAVAILABLE = "Sorry, I can't reach the booking assistant right now. Please try again in a minute."
OFF_TOPIC = (
    "I can only help with appointments here: finding a free time, booking, moving or cancelling one. "
    "What would you like to do?"
)
GAVE_UP = "Sorry, I couldn't finish that just now. Which calendar and day would you like me to check?"
ASK_DAY = "Which day would you like me to check for a free time?"
HOW_I_HELP = "I can find a free time, book, move or cancel an appointment for you. What would you like to do?"
SHOWN_PER_DAY = 6
SHOWN_DAYS = 3

_REASONS = {
    NoSlotReason.outside_working_hours: "is not working then",
    NoSlotReason.fully_booked: "is fully booked then",
    NoSlotReason.beyond_horizon: "does not take bookings that far ahead yet",
    NoSlotReason.too_short_notice: "needs more notice than that",
    NoSlotReason.in_the_past: "cannot be booked in the past",
}


def _day(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b}"


def _join(items: Sequence[str], word: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def _also(moment: datetime, zone: ZoneInfo) -> str:
    """ " (10:00 Europe/Berlin time)" when the calendar's clock differs from the shown one."""
    there = moment.astimezone(zone)
    if there.utcoffset() == moment.utcoffset():
        return ""
    return f" ({there:%H:%M} {zone.key} time)"


def free_times(names: str, result: FreeSlots, calendar_zone: ZoneInfo) -> str:
    """The offered times, grouped by day, and a question."""
    if not result.slots:
        reason = _REASONS.get(result.reason, "has no free time then") if result.reason else "has no free time then"
        text = f"Sorry, {names} {reason}."
        if result.next_available is not None:
            nxt = result.next_available.start
            text += f" The next free time is {when(nxt)}{_also(nxt, calendar_zone)}. Would that suit you?"
        else:
            text += " Would another day suit you?"
        return text
    days: dict[str, list[datetime]] = {}
    for slot in result.slots:
        days.setdefault(_day(slot.start), []).append(slot.start)
    parts = [f"on {day} {_times(starts)}" for day, starts in list(days.items())[:SHOWN_DAYS]]
    more = " (and on later days)" if len(days) > SHOWN_DAYS or result.more_available else ""
    zone_note = _also(result.slots[0].start, calendar_zone)
    shown = f" ({result.timezone} time)" if zone_note else ""
    return f"{names} is free {'; '.join(parts)}{shown}{more}. Which time suits you?"


def _times(starts: list[datetime]) -> str:
    """ "at 09:00, 09:30 or 10:00"; with many, the first ones one by one (so "the second one"
    means something) and the rest as a span: "..., 10:30 or 11:00, and 8 more from 13:00 to 16:30"."""
    shown = [f"{s:%H:%M}" for s in starts[:SHOWN_PER_DAY]]
    rest = starts[SHOWN_PER_DAY:]
    if not rest:
        return "at " + _join(shown, "or")
    span = f"at {rest[0]:%H:%M}" if len(rest) == 1 else f"from {rest[0]:%H:%M} to {rest[-1]:%H:%M}"
    return f"at {_join(shown, 'or')}, and {len(rest)} more {span}"


def preferred_free(names: str, start: datetime, calendar_zone: ZoneInfo, question: str) -> str:
    return f"Yes, {names} is free on {when(start)}{_also(start, calendar_zone)}. {question}"


def preferred_taken(names: str, wanted: str, listing: str) -> str:
    return f"{names} is not free at {wanted} then. {listing}"


def question(
    kind: str,
    calendar_name: str,
    start: datetime,
    *,
    new_start: datetime | None = None,
    attendee: str | None = None,
    participants: Sequence[str] = (),
) -> str:
    """The confirmation question of a pending action."""
    if kind == "cancel":
        return f"Shall I cancel your appointment with {calendar_name} on {when(start)}?"
    if kind == "reschedule" and new_start is not None:
        return f"Shall I move your appointment with {calendar_name} from {when(start)} to {when(new_start)}?"
    who = f" for {attendee}" if attendee else ""
    inviting = f" and invite {_join(list(participants))}" if participants else ""
    return f"Shall I book {calendar_name} on {when(start)}{who}{inviting}?"


def outcome(result: BookingOutcome, state: ConversationState) -> str:
    b = result.booking
    calendar = state.calendar(b.calendar_id)
    name = calendar.name if calendar else "your calendar"
    local = b.start.astimezone(ZoneInfo(calendar.timezone)) if calendar else b.start
    return {
        "confirmed": f"Done: you're booked with {name} on {when(local)}.",
        "cancelled": f"Done: your appointment with {name} on {when(local)} is cancelled.",
        "rescheduled": f"Done: your appointment with {name} is moved to {when(local)}.",
    }[result.status]


def already_booked(choice: BookingChoice) -> str:
    return f"You already have that appointment: {choice.calendar_name} on {when(choice.start)}."


def bookings(choices: Sequence[BookingChoice]) -> str:
    if not choices:
        return "You have no upcoming appointments. Would you like to book one?"
    items = [f"{c.calendar_name} on {when(c.start)}" for c in choices]
    count = "one appointment" if len(items) == 1 else f"{len(items)} appointments"
    return f"You have {count}: {_join(items)}."


def declined(action: PendingAction) -> str:
    verb = {"book": "booked", "cancel": "cancelled", "reschedule": "moved"}[action.kind]
    return f"All right, nothing was {verb}. What would you like to do instead?"


def not_pending(status: str) -> str:
    return {
        "done": "That was already done.",
        "executing": "That is being done right now.",
        "expired": "That request has expired; nothing was changed. Shall I check the free times again?",
    }.get(status, "That request is no longer open; nothing was changed.")
