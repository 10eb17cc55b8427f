"""The model's tools: one spec per tool, and the strict schemas offered in each model call.

A spec holds what the model sends (`call`, a Pydantic model: its strict JSON schema and its
validation), the stream command it becomes, whether that writes and needs the user's approval,
its activity label, and `choices`: a function from the conversation's state to the enum values
the call may hold now (None: the tool cannot succeed now and is not offered). The enums are put
into the schema (OpenAI strict mode enforces them; the local model server turns the same schema
into a grammar), so the model can only name a calendar of the tenant, a slot this conversation
was offered, or a booking of this user. Adding a tool is one spec here plus its worker handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from openai import pydantic_function_tool
from openai.types.chat import ChatCompletionFunctionToolParam
from pydantic import BaseModel, Field, ValidationError, create_model

from runtime.worker import describe_validation_error
from services.chat.state import ConversationState
from shared.domain import Email
from shared.messages import ErrorCode, MessageType, ToolError
from shared.tools import FetchFreeSlots, ListMyBookings, ToolArgs

MAX_ARGUMENT_CHARS: Final = 8_000
Approval = Literal["never", "calendar", "always"]
"""never: runs when called; calendar: waits for the user's yes when the calendar requires
confirmation; always: waits for the user's yes (a cancellation cannot be undone)."""


class FetchFreeSlotsCall(FetchFreeSlots):
    """Check when calendars are free. Call it whenever the user asks for an appointment, a day or
    a time that no free-times result in this conversation covers."""

    preferred_time: str | None = Field(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="The time of day the user asked for, HH:MM in 24 h (10 am = 10:00); null if none.",
    )
    move_booking: str | None = Field(
        description="When the user wants to move one of their bookings to that day: the booking, exactly as "
        "listed under the user's bookings; else null."
    )

    def command(self) -> FetchFreeSlots:
        return FetchFreeSlots.model_validate(self.model_dump(exclude={"preferred_time", "move_booking"}))


class BookMeetingCall(ToolArgs):
    """Book one of the offered free slots for the user (the user is asked to confirm it first)."""

    slot: str = Field(description="The chosen slot, exactly as a free-times result listed it.")
    attendee_name: str | None = Field(
        max_length=100, description="The name the user gave for the booking; null if they gave none."
    )
    participants: list[Email] = Field(
        max_length=10, description="E-mail addresses the user asked to invite; usually empty."
    )


class CancelBookingCall(ToolArgs):
    """Cancel one of the user's bookings (the user is asked to confirm it first)."""

    booking: str = Field(description="The booking, exactly as listed under the user's bookings.")


class RescheduleBookingCall(ToolArgs):
    """Move one of the user's bookings to one of the offered free slots (the user confirms first)."""

    booking: str = Field(description="The booking to move, exactly as listed under the user's bookings.")
    new_slot: str = Field(description="The new slot, exactly as a free-times result listed it.")


class Answer(ToolArgs):
    """Reply to the user in words, when no other tool fits: a greeting or thanks, a question
    back (which day? which calendar? your name?), or a request that is not about appointments.
    Never state free times or bookings here: only the other tools know them."""

    topic: Literal["appointments", "greeting", "other"] = Field(
        description="appointments: about booking, free times or the user's bookings; greeting: hello, thanks, "
        "bye; other: anything else (medicine, weather, code, ...)."
    )
    message: str = Field(min_length=1, description="One or two short sentences to the user.")


def _calendars(state: ConversationState) -> dict[str, list[str]] | None:
    if not state.calendar_ids:
        return None
    choices = {"calendar_ids": state.calendar_ids}
    if state.bookings:  # without bookings it stays a free string the server ignores: the schema's
        choices["move_booking"] = [b.label for b in state.bookings]  # types (and prompt) do not change
    return choices


def _offered(state: ConversationState) -> dict[str, list[str]] | None:
    return {"slot": [s.label for s in state.slots]} if state.slots else None


def _bookings(state: ConversationState) -> dict[str, list[str]] | None:
    return {"booking": [b.label for b in state.bookings]} if state.bookings else None


def _move(state: ConversationState) -> dict[str, list[str]] | None:
    if not state.bookings or not state.slots:
        return None
    return {"booking": [b.label for b in state.bookings], "new_slot": [s.label for s in state.slots]}


def _always(state: ConversationState) -> dict[str, list[str]]:
    return {}


@dataclass(frozen=True, slots=True)
class ChatTool:
    name: str
    call: type[ToolArgs]
    activity: str
    command: MessageType | None
    """The stream message it becomes; None for `answer`, which the chat handles itself."""
    writes: bool
    approval: Approval
    choices: Callable[[ConversationState], dict[str, list[str]] | None]


CHAT_TOOLS: Final[tuple[ChatTool, ...]] = (
    ChatTool(
        "fetch_free_slots", FetchFreeSlotsCall, "checking_availability", "fetch_free_slots", False, "never", _calendars
    ),
    ChatTool("book_meeting", BookMeetingCall, "booking", "book_meeting", True, "calendar", _offered),
    ChatTool("list_my_bookings", ListMyBookings, "listing_bookings", "list_my_bookings", False, "never", _always),
    ChatTool("cancel_booking", CancelBookingCall, "cancelling", "cancel_booking", True, "always", _bookings),
    ChatTool(
        "reschedule_booking", RescheduleBookingCall, "rescheduling", "reschedule_booking", True, "calendar", _move
    ),
    ChatTool("answer", Answer, "answering", None, False, "never", _always),
)
BY_NAME: Final[dict[str, ChatTool]] = {t.name: t for t in CHAT_TOOLS}
WRITES: Final = frozenset(t.name for t in CHAT_TOOLS if t.writes)


def with_choices(model: type[ToolArgs], choices: dict[str, list[str]]) -> type[ToolArgs]:
    """The call model with each named field narrowed to an enum of the given values."""
    if not choices:
        return model
    fields: dict[str, Any] = {}
    for name, values in choices.items():
        info = model.model_fields[name]
        nullable = not info.is_required() or type(None) in getattr(info.annotation, "__args__", ())
        if not values:  # nothing to choose from: only null
            fields[name] = (None, Field(description=info.description))
            continue
        enum = Literal[tuple(values)]  # type: ignore[valid-type]
        if nullable:
            fields[name] = (enum | None, Field(description=info.description))
        elif name == "calendar_ids":
            fields[name] = (list[enum], Field(description=info.description, min_length=1, max_length=5))  # type: ignore[valid-type]
        else:
            fields[name] = (enum, Field(description=info.description))
    narrowed: type[ToolArgs] = create_model(model.__name__, __base__=model, __doc__=model.__doc__, **fields)
    return narrowed


def _compact(schema: Any) -> Any:
    """Drop `title` keys (tokens the model never needs); a one-value enum stays an enum (Pydantic
    writes it as `const`, which fewer strict-schema dialects accept)."""
    if isinstance(schema, dict):
        return {
            ("enum" if k == "const" else k): ([v] if k == "const" else _compact(v))
            for k, v in schema.items()
            if k != "title"
        }
    if isinstance(schema, list):
        return [_compact(v) for v in schema]
    return schema


def definition(tool: ChatTool, model: type[BaseModel]) -> ChatCompletionFunctionToolParam:
    """The strict function-tool definition of one tool's (narrowed) call model."""
    param = pydantic_function_tool(model, name=tool.name, description=" ".join((tool.call.__doc__ or "").split()))
    params = _compact(param["function"].get("parameters", {}))
    params.pop("description", None)
    param["function"]["parameters"] = params
    return param


@dataclass(frozen=True, slots=True)
class Offer:
    """What one model call may do: the tool definitions to send, and the models to validate
    each call with (only the tools that can succeed now)."""

    definitions: list[ChatCompletionFunctionToolParam]
    allowed: dict[str, type[ToolArgs]]


def offer(state: ConversationState, *, all_listed: bool, only: str | frozenset[str] | None = None) -> Offer:
    """The tools the state allows now, narrowed to its enums. `all_listed`: list every tool
    (those not allowed now un-narrowed, so the list reads the same in every call) and let
    tool_choice say which may be called; otherwise list only the allowed ones."""
    definitions = []
    allowed: dict[str, type[ToolArgs]] = {}
    for tool in CHAT_TOOLS:
        choices = tool.choices(state)
        within = only is None or (tool.name == only if isinstance(only, str) else tool.name in only)
        usable = choices is not None and within
        if usable and choices is not None:
            allowed[tool.name] = with_choices(tool.call, choices)
        if usable or all_listed:
            definitions.append(definition(tool, allowed.get(tool.name, tool.call)))
    return Offer(definitions, allowed)


def parse(offered: Offer, name: str, arguments: str | None) -> ToolArgs | ToolError:
    """The model's call validated against what was offered, or a typed error it can act on.
    Pure: whatever the model sends, this returns, never raises."""
    model = offered.allowed.get(name)
    if model is None:
        known = ", ".join(offered.allowed)
        return ToolError(code=ErrorCode.unknown_tool, message=f"You cannot use {name[:60]!r} now; use one of: {known}.")
    if arguments is not None and len(arguments) > MAX_ARGUMENT_CHARS:
        return ToolError(code=ErrorCode.invalid_arguments, message="The arguments are far too long.")
    try:
        return model.model_validate_json(arguments or "{}")
    except ValidationError as exc:
        return ToolError(code=ErrorCode.invalid_arguments, message=describe_validation_error(exc)[:1000])
