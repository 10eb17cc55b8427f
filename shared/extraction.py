"""Structured outputs: a booking request read from free text, for pipelines without chat."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class BookingRequest(BaseModel):
    """What a person asked to book, as written in an e-mail or a form. Unknown parts are null."""

    model_config = ConfigDict(extra="forbid")

    attendee_name: str | None = Field(description="Name of the person who wants the appointment.")
    attendee_email: EmailStr | None = Field(description="Their e-mail address, if given.")
    calendar_hint: str | None = Field(description="Who or what to book with, as written (e.g. 'Dr. Lee').")
    preferred_dates: list[date] = Field(description="Dates they asked for, YYYY-MM-DD; empty if none.")
    time_of_day: Literal["morning", "afternoon", "evening", "any"] = Field(description="Preferred part of the day.")
    duration_minutes: int | None = Field(description="Requested length in minutes, if given.")
    participants: list[EmailStr] = Field(description="Other e-mail addresses to invite.")
    notes: str | None = Field(description="Anything else relevant to the booking, briefly.")
