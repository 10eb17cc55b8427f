"""The system prompt, built from data: today in the calendars' zones, the calendars, the policy.

Kept short and stable (the policy text never changes between turns) so a local model's
prefix cache is reused.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from shared.domain import WEEKDAYS, CalendarDirectory, CalendarSummary

POLICY = """You book appointments. Rules:
1. Call fetch_free_slots before proposing times; propose only times it returned.
2. Before book_meeting or reschedule_booking, ask the user to confirm one exact day, time and calendar;
   call the tool only after they say yes.
3. Reply in plain friendly sentences. Never show JSON, ids, tool names or codes. Say times like "Thu 27 Nov at 14:00".
4. Never say something is booked, cancelled or moved unless a tool result said so.
5. Only help with appointments; politely decline anything else."""


def _hours(c: CalendarSummary) -> str:
    days = []
    for day in WEEKDAYS:
        ranges = c.weekly_hours.get(day)
        if ranges:
            days.append(f"{day.title()} " + ", ".join(f"{r.start:%H:%M}-{r.end:%H:%M}" for r in ranges))
    return "; ".join(days) or "no regular hours"


def system_prompt(directory: CalendarDirectory, now: datetime) -> str:
    lines = [POLICY, "", "Calendars:"]
    for c in directory.calendars:
        local = now.astimezone(ZoneInfo(c.timezone))
        lines.append(
            f"- {c.name}: calendar_id {c.calendar_id}, zone {c.timezone} (now {local:%a %Y-%m-%d %H:%M}), "
            f"{c.slot_minutes} min slots, hours {_hours(c)}"
        )
    if not directory.calendars:
        lines.append("- none configured: tell the user booking is not available yet.")
    return "\n".join(lines)
