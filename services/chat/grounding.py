"""The model's reading of the user held to the state and the user's own words: a number the
model filled in counts only if the user wrote it, a move stays on its booking's calendar and
length, and the booking being moved is read back from the conversation's stored tool calls.
Pure functions, tested as units (tests/unit/test_chat_policy.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import timedelta

from services.chat.conversations import Message
from services.chat.state import BookingChoice, ConversationState
from services.chat.tools import FetchFreeSlotsCall


def _numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"(?<!\d)(\d{1,3})(?!\d)", text)}


def hour_written(text: str, hhmm: str) -> bool:
    """Whether the user's message holds the hour of the time the model read from it (as 10, 10:30,
    3 pm for 15:00, "10h", "10 Uhr"): the model's reading is checked against the words, it is not
    taken on trust."""
    hour = int(hhmm[:2])
    numbers = _numbers(text)
    return hour in numbers or (hour % 12 or 12) in numbers


def grounded(call: FetchFreeSlotsCall, said: str, state: ConversationState) -> FetchFreeSlotsCall:
    """The model's fetch, held to what the state and the user's words support: a move searches
    the booking's own calendar for its own length; a length counts only if the user wrote it (in
    minutes, or hours for whole hours), else the calendar's default (a small model fills in 45 or
    60 unasked, and the calendar then refuses or offers the wrong length)."""
    moving = state.booking(call.move_booking) if call.move_booking else None
    if moving is not None:
        length = int((moving.booking.end - moving.booking.start).total_seconds() // 60)
        return call.model_copy(update={"calendar_ids": [moving.booking.calendar_id], "duration_minutes": length})
    minutes, numbers = call.duration_minutes, _numbers(said)
    if minutes is not None and not (minutes in numbers or (minutes % 60 == 0 and minutes // 60 in numbers)):
        minutes = None
    return call.model_copy(update={"move_booking": None, "duration_minutes": minutes})


def moving(history: Sequence[Message], state: ConversationState) -> BookingChoice | None:
    """The booking the latest free-times check of this conversation was made to move, while it
    stands as it was then and those offers live (the call's own arguments, read back from the
    stored conversation; a later check without a move ends it)."""
    if not state.slots:
        return None
    for message in reversed(history):
        for call in reversed(message.get("tool_calls") or []):
            function = call.get("function") or {}
            if function.get("name") != "fetch_free_slots":
                continue
            try:
                label = json.loads(function.get("arguments") or "{}").get("move_booking")
            except (json.JSONDecodeError, AttributeError):
                return None
            return state.booking(label) if isinstance(label, str) else None
    return None


def already_offered(state: ConversationState, call: FetchFreeSlotsCall) -> bool:
    """A fetch without a wanted time or a booking to move, whose every day already holds live
    offers of exactly these calendars in this conversation (asking again lists the same)."""
    if call.preferred_time is not None or call.move_booking is not None or not state.slots:
        return False  # without live offers book_meeting is not offered: nothing to send the model to
    wanted = tuple(call.calendar_ids)
    days = {s.start.date() for s in state.slots if s.offer.calendar_ids == wanted}
    span = (call.date_to - call.date_from).days + 1
    return 0 < span <= 7 and all(call.date_from + timedelta(days=i) in days for i in range(span))
