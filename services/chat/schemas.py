"""The chat API's request and response bodies (they are its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from services.chat.approvals import PendingAction
from services.chat.turn import TurnResult
from shared.domain import Booking


class ChatRequest(BaseModel):
    """One user message."""

    text: str = Field(min_length=1, max_length=4000)


class ChatResponse(BaseModel):
    """The natural reply, and beside it the structured outcome for the client app to render."""

    reply: str
    bookings: list[Booking] = Field(description="Bookings created, moved or cancelled in this turn.")
    suggested_slots: list[datetime] = Field(description="Free slots offered in this turn, in the calendar's zone.")
    pending_action: PendingAction | None = Field(
        default=None,
        description="A write waiting for the user's yes: approve or decline it by its action_id "
        "(POST .../actions/{action_id}/approve or /decline), or answer the question in a message.",
    )

    @classmethod
    def of(cls, result: TurnResult) -> ChatResponse:
        return cls(
            reply=result.reply,
            bookings=result.bookings,
            suggested_slots=result.suggested_slots,
            pending_action=result.pending_action,
        )
