"""The real Qwen2.5-Coder-1.5B through the real `openai` SDK (temperature 0, fixed seed).

Slow (seconds per request on 2 cores); skipped with a reason when the llama-cpp-python wheel or
the weights are absent, run whenever they are present.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from openai import AsyncOpenAI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tests.model.conftest import complete, only_call, stream
from tests.model.test_grammar import FETCH

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(900)]  # loading the model alone can take minutes under load

SYSTEM = (
    "You book appointments. Today is Tuesday 2026-11-24, time zone Europe/Berlin (+01:00). "
    "Calendars: dr-lee (Dr. Lee). Use fetch_free_slots whenever the user asks when someone is free. "
    "After a tool result, tell the user the result in one short sentence."
)


class FetchFreeSlotsArgs(BaseModel):
    """The arguments of fetch_free_slots; its strict JSON schema is the tool's parameters."""

    model_config = ConfigDict(extra="forbid")
    calendar: str = Field(description="Calendar id, e.g. 'dr-lee'.")
    start: AwareDatetime = Field(description="Window start, ISO 8601 with offset.")
    end: AwareDatetime = Field(description="Window end, ISO 8601 with offset.")
    duration_minutes: int | None = Field(description="Slot length in minutes, or null for the default.")


TOOL = {
    "type": "function",
    "function": {
        "name": "fetch_free_slots",
        "description": "List the free slots of a calendar between two times.",
        "parameters": FetchFreeSlotsArgs.model_json_schema(),
        "strict": True,
    },
}
QUESTION = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What times are free tomorrow with Dr. Lee?"},
]


async def test_the_model_calls_the_tool_with_arguments_that_match_the_schema(local_client: AsyncOpenAI) -> None:
    reply = await complete(
        local_client, model="local", messages=QUESTION, tools=[TOOL], temperature=0, seed=42, max_tokens=256
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    assert choice.message.content is None
    call = only_call(reply)
    assert call.id.startswith("call_")
    assert call.function.name == "fetch_free_slots"
    args = FetchFreeSlotsArgs.model_validate_json(call.function.arguments)
    assert "lee" in args.calendar.lower()
    assert args.start.date() == date(2026, 11, 25)
    assert args.start < args.end
    assert reply.usage is not None and reply.usage.completion_tokens > 0


async def test_after_the_tool_result_the_model_answers_in_text(local_client: AsyncOpenAI) -> None:
    arguments = {
        "calendar": "dr-lee",
        "start": "2026-11-25T00:00:00+01:00",
        "end": "2026-11-25T23:59:59+01:00",
        "duration_minutes": 30,
    }
    slots = {"free_slots": ["2026-11-25T09:00:00+01:00", "2026-11-25T11:30:00+01:00"]}
    messages = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "fetch_free_slots", "arguments": json.dumps(arguments)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(slots)},
    ]
    reply = await complete(
        local_client, model="local", messages=messages, tools=[TOOL], temperature=0, seed=42, max_tokens=200
    )
    choice = reply.choices[0]
    assert choice.message.tool_calls is None
    assert choice.finish_reason in ("stop", "length")
    text = choice.message.content or ""
    assert text.strip()
    assert not text.lstrip().startswith(("{", "<", "`"))
    assert "9" in text


async def test_a_json_schema_response_format_yields_matching_json(local_client: AsyncOpenAI) -> None:
    class BookingRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        participant: str
        day: date
        duration_minutes: int

    reply = await complete(
        local_client,
        model="local",
        messages=[
            {"role": "system", "content": "Extract the booking request. Today is 2026-11-24."},
            {"role": "user", "content": "Anna Smith here: 45 minutes with Dr. Lee on Friday 2026-11-27, please."},
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "booking_request", "schema": BookingRequest.model_json_schema(), "strict": True},
        },
        temperature=0,
        seed=42,
        max_tokens=120,
    )
    assert reply.choices[0].finish_reason == "stop"
    request = BookingRequest.model_validate_json(reply.choices[0].message.content or "")
    assert request.day == date(2026, 11, 27)
    assert request.duration_minutes == 45


async def test_text_streams_in_pieces(local_client: AsyncOpenAI) -> None:
    replies = await stream(
        local_client,
        model="local",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello!"}],
        tools=[TOOL],
        tool_choice="none",
        temperature=0,
        seed=42,
        max_tokens=40,
    )
    pieces = [c.choices[0].delta.content async for c in replies if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1
    assert "".join(pieces).strip()


async def test_llama_cpp_accepts_the_grammar_of_a_rich_strict_schema(local_client: AsyncOpenAI) -> None:
    """Nested $defs, date, date-time, enum, anyOf null, email, a pattern with escapes."""
    reply = await complete(
        local_client,
        model="local",
        messages=QUESTION,
        tools=[FETCH.model_dump(exclude_none=True)],
        tool_choice="required",
        temperature=0,
        max_tokens=2,
    )
    assert reply.choices[0].finish_reason == "length"
