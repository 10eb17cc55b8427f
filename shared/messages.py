"""The envelope every stream message travels in, and the reply shape."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.domain import Identifier

MessageType = Literal[
    "fetch_free_slots",
    "book_meeting",
    "cancel_booking",
    "reschedule_booking",
    "list_my_bookings",
    "describe_calendars",
    "upsert_calendar",
    "import_ics",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """One command or query on a stream. `payload` holds the typed tool arguments as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(default_factory=lambda: uuid4().hex)
    idempotency_key: str = Field(min_length=1, max_length=200)
    correlation_id: str = Field(min_length=1, max_length=200, description="The model's tool_call id.")
    tenant_id: Identifier
    conversation_id: str = Field(min_length=1, max_length=100)
    user_id: Identifier
    request_id: str | None = Field(default=None, max_length=100)
    sent_at: AwareDatetime = Field(default_factory=utcnow)
    type: MessageType
    payload: dict[str, Any]
    reply_to: str = Field(min_length=1, max_length=200, description="Stream the reply goes to.")
    deadline: AwareDatetime | None = Field(
        default=None,
        description="When the caller stops waiting (its timeout). A worker that gets the command later "
        "answers `expired` and changes nothing; the write scripts check it against the Redis server's clock.",
    )

    def deadline_ms(self) -> int:
        """The deadline as epoch milliseconds, 0 for none (the write scripts' argument)."""
        return 0 if self.deadline is None else int(self.deadline.timestamp() * 1000)

    def payload_fingerprint(self) -> str:
        """Digest of type + payload: the same idempotency key with another fingerprint is a conflict."""
        canonical = json.dumps({"type": self.type, "payload": self.payload}, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


class ErrorCode(StrEnum):
    """Typed errors the model can act on."""

    invalid_arguments = "invalid_arguments"
    invalid_time = "invalid_time"
    unknown_tool = "unknown_tool"
    unknown_calendar = "unknown_calendar"
    outside_hours = "outside_hours"
    slot_taken = "slot_taken"
    not_found = "not_found"
    window_too_large = "window_too_large"
    idempotency_conflict = "idempotency_conflict"
    slot_not_offered = "slot_not_offered"
    offer_expired = "offer_expired"
    needs_confirmation = "needs_confirmation"
    daily_limit = "daily_limit"
    timeout = "timeout"
    expired = "expired"
    internal = "internal"


class ToolError(BaseModel):
    """A typed error with a message written for the model to act on."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str


class Reply(BaseModel):
    """The answer to one envelope, correlated by `correlation_id`: a result or an error."""

    model_config = ConfigDict(frozen=True)

    correlation_id: str
    message_id: str
    type: MessageType
    result: dict[str, Any] | None = None
    error: ToolError | None = None

    @staticmethod
    def ok_json(envelope: Envelope, result_json: str) -> str:
        """The JSON of `Reply(result=...)` for `envelope`, with a result that is already JSON
        spliced in as it is (a worker that holds its result as JSON does not parse and dump it
        again; tests/unit/test_reply_json.py checks it against the model's own JSON)."""
        head = Reply(correlation_id=envelope.correlation_id, message_id=envelope.message_id, type=envelope.type)
        return f'{head.model_dump_json(exclude={"result", "error"})[:-1]},"result":{result_json},"error":null}}'


class DomainError(Exception):
    """Raised by service logic for an expected, typed failure that becomes an error reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = ToolError(code=code, message=message)
