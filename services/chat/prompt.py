"""The system prompt, built from data: the policy, the calendars, today's date and the days ahead.

Laid out for prefix caching and for small models:
- the policy text comes first and never changes; the calendars follow (they change only when an
  operator edits them); the dates come last and change once a day (no clock time, which would
  change the prompt every minute and make a local model evaluate it again each time);
- the steps of a booking as conditions ("You got the fetch_free_slots result: ..."), which a 1.5B
  model follows and a large model reads as plain instructions; no example of an availability
  answer (the small model then answered from the example instead of calling the tool), and
  examples without a weekday (it copied the example's weekday onto other dates);
- the next days written out with their weekdays and ISO dates, so "on Friday" becomes a date
  without the model doing calendar arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.domain import WEEKDAYS, CalendarDirectory, CalendarSummary, TimeRange

POLICY = """You are a booking assistant for the calendars below. You do not know anyone's free times until \
fetch_free_slots tells you.
Steps of a booking:
1. The user asks when someone is free: call fetch_free_slots for that calendar and day.
2. You got the fetch_free_slots result: write its day and first times (a slot "s1": "2026-03-03T09:30+01:00" is \
3 March at 09:30), then ask which time suits the user.
3. The user picks a time, or a tool result says needs_confirmation: do not book yet. Ask like "Shall I book \
Dr. Lee on 3 March at 09:30 for you?"
4. The user says yes: reply with only a book_meeting tool call (slot_ref: the chosen slot's ref like "s1", \
the user's name). Only its result books; never say booked before it.
Always answer the user directly ("you") in one or two short sentences; tool messages are for you, never repeat \
them. Never write JSON, ids, refs, codes or tool names. Never say something is \
booked, cancelled or moved unless a tool result said so. If the user asks about anything other than appointments, \
say politely that you can only help with appointments."""

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
    lines += ["", f"Today is {today:%A %d %B %Y} ({zone}).", f"Dates: {_days(today)}."]
    return "\n".join(lines)
