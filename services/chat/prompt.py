"""The system prompt, built from data: the policy, the calendars, today's date and the days ahead.

Laid out for prefix caching and for small models:
- the policy text comes first and never changes; the calendars follow (they change only when an
  operator edits them); the dates come last and change once a day (no clock time, which would
  change the prompt every minute and make a local model evaluate it again each time);
- the policy says which tool fits which request: every model call must call one (the server
  writes the replies that state facts), so the model only picks the tool and fills its enums;
- the next days written out with their weekdays and ISO dates, so "on Friday" becomes a date
  without the model doing calendar arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.chat.state import ConversationState
from shared.domain import WEEKDAYS, CalendarDirectory, CalendarSummary, TimeRange

POLICY = """You are a booking assistant for the calendars below. Every reply of yours is one tool call.
Which tool:
- fetch_free_slots: the user wants an appointment, or asks when someone is free, or names a day or a time. \
Fill in the calendar, the days (a date range for "next week") and the time the user asked for as preferred_time.
- book_meeting: the user picks one of the free slots a fetch_free_slots result listed (slot: exactly as listed).
- list_my_bookings: the user asks which appointments they have.
- cancel_booking / reschedule_booking: the user wants to cancel or move one of their bookings.
- answer: only for a greeting or thanks with no request, a question back, or a request that is not about \
appointments (topic other). Never state free times or bookings in answer: you do not know them.
Examples:
"Is Dr. Lee free on Friday?" -> fetch_free_slots
"Book me with Dr. Lee tomorrow at 10" -> fetch_free_slots with preferred_time 10:00
"11:30 please" (after free times were listed) -> book_meeting
"Which appointments do I have?" -> list_my_bookings
"Please cancel my appointment" -> cancel_booking
"Move my appointment to Friday at 11" -> fetch_free_slots with preferred_time 11:00 and move_booking
"Thanks, bye!" -> answer
"What's the weather?" -> answer with topic other"""

DAYS_AHEAD = 8


def _ranges(ranges: list[TimeRange]) -> str:
    return ", ".join(f"{r.start:%H:%M}-{r.end:%H:%M}" for r in ranges)


def _hours(c: CalendarSummary) -> str:
    """Working hours with runs of days that share their hours merged: "Mon-Thu 09:00-12:00; Fri ..."."""
    runs: list[tuple[str, str, str]] = []  # (first day, last day, hours)
    for day in WEEKDAYS:
        ranges = c.weekly_hours.get(day)
        if not ranges:
            continue
        hours = _ranges(ranges)
        previous = runs[-1] if runs else None
        if previous and previous[2] == hours and WEEKDAYS.index(day) == WEEKDAYS.index(previous[1]) + 1:
            runs[-1] = (previous[0], day, hours)
        else:
            runs.append((day, day, hours))
    parts = [(f"{a.title()}-{b.title()}" if a != b else a.title()) + f" {h}" for a, b, h in runs]
    return "; ".join(parts) or "no regular hours"


def _calendar_line(c: CalendarSummary) -> str:
    return f"- {c.name} (calendar_id {c.calendar_id}): {c.slot_minutes} min slots, {_hours(c)}, time zone {c.timezone}"


def _days(today: date) -> str:
    days = [today + timedelta(days=i) for i in range(DAYS_AHEAD)]
    return ", ".join(f"{d:%a %d %b} = {d.isoformat()}" for d in days)


def system_prompt(directory: CalendarDirectory, now: datetime) -> str:
    lines = [POLICY, "", "Calendars:"]
    lines += [_calendar_line(c) for c in directory.calendars]
    if not directory.calendars:
        lines.append("- none configured: tell the user booking is not available yet.")
        return "\n".join(lines)
    # One zone's date (the first calendar's), so the text changes once a day, not once per zone.
    zone = directory.calendars[0].timezone
    today = now.astimezone(ZoneInfo(zone)).date()
    monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
    lines += [
        "",
        f"Today is {today:%A %d %B %Y} ({zone}).",
        f"Dates: {_days(today)}.",
        f"Next week: {monday.isoformat()} to {(monday + timedelta(days=6)).isoformat()}.",
    ]
    return "\n".join(lines)


def state_note(state: ConversationState, user_name: str | None) -> str:
    """What the server knows now that the model needs to pick and fill a call: whether free
    times were offered (book_meeting books only those), the user's bookings (by the labels
    cancel_booking and reschedule_booking take) and the user's name if known. Sent after the
    conversation, so that the long stable prefix stays cached."""
    if state.slots:
        text = "Free times were offered in this conversation: book_meeting books one of them."
    else:
        text = (
            "No free times were offered yet: to book, or to move a booking, first get them from fetch_free_slots "
            "(with move_booking for a move)."
        )
    if state.bookings:
        text += f" The user's bookings: {'; '.join(b.label for b in state.bookings)}."
    else:
        text += " The user has no bookings yet."
    if user_name:
        text += f" The user's name: {user_name}."
    return text
