"""Scripted-model building blocks shared by the end-to-end tests."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from shared.domain import Booking
from shared.keys import TenantKeys
from tests.conftest import System
from tests.support.scripted_model import Step, call, last_tool_result


def fetch(day: date, calendar: str = "dr-lee") -> Step:
    return call(
        "fetch_free_slots",
        {
            "calendar_ids": [calendar],
            "date_from": day.isoformat(),
            "date_to": day.isoformat(),
            "duration_minutes": None,
            "timezone": None,
        },
    )


class Offer:
    """Remembers the slot the scripted model proposed, so later steps can book it."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.ref = ""
        self.start = ""

    def propose(self, req: dict[str, Any]) -> dict[str, Any]:
        self.ref, self.start = list(last_tool_result(req)["slots"].items())[self.index]
        local = datetime.fromisoformat(self.start)
        return {
            "role": "assistant",
            "content": f"Dr. Lee is free on {local:%a %d %b} at {local:%H:%M}. Shall I book it?",
        }

    @property
    def hhmm(self) -> str:
        return f"{datetime.fromisoformat(self.start):%H:%M}"

    def book(self, name: str = "Alice Smith", start: str | None = None, *, by_ref: bool = False) -> Step:
        """book_meeting for the proposed slot (or `start`), naming it by its start or its ref."""
        return call(
            "book_meeting",
            lambda _req: {
                "calendar_id": "dr-lee",
                "slot_ref": self.ref if by_ref else None,
                "start": None if by_ref else start or self.start,
                "duration_minutes": None,
                "attendee_name": name,
                "participants": [],
            },
        )


async def stored_bookings(system: System, tenant: str = "demo") -> list[Booking]:
    keys = await system.redis.keys(TenantKeys(tenant).booking("*"))
    return [Booking.model_validate_json(await system.redis.get(k)) for k in keys]


def tool_errors(request: dict[str, Any]) -> list[str]:
    """Error codes of the tool results in one model request."""
    codes = []
    for m in request["messages"]:
        if m["role"] == "tool":
            body = json.loads(m["content"])
            if "error" in body:
                codes.append(body["error"]["code"])
    return codes
