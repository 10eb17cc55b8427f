"""The chat tool layer: whatever arguments a model sends, parsing returns a typed result."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.chat.calls import ParsedCall, parse_call
from shared.messages import ErrorCode, ToolError
from shared.offers import REF_PATTERN
from shared.tools import TOOLS, BookMeeting, openai_tools

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "calendar_id",
        "calendar_ids",
        "start",
        "new_start",
        "date_from",
        "date_to",
        "duration_minutes",
        "timezone",
        "attendee_name",
        "participants",
        "include_past",
        "extra",
    ]
)
plausible_args = st.dictionaries(field_names, json_values, max_size=8)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from([*TOOLS, "teleport", ""]), args=plausible_args)
def test_any_arguments_parse_to_a_call_or_a_typed_error(name: str, args: dict[str, object]) -> None:
    result = parse_call(name, json.dumps(args))
    assert isinstance(result, ParsedCall | ToolError)
    if isinstance(result, ToolError):
        assert result.code in (ErrorCode.unknown_tool, ErrorCode.invalid_arguments)
        assert result.message


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=200))
def test_garbage_argument_text_is_an_invalid_arguments_error(raw: str) -> None:
    result = parse_call("book_meeting", raw)
    assert isinstance(result, ToolError | ParsedCall)


def test_naive_datetime_is_refused_with_a_message_naming_the_field() -> None:
    result = parse_call(
        "book_meeting",
        json.dumps(
            {
                "calendar_id": "dr-lee",
                "start": "2026-12-01T10:00:00",
                "duration_minutes": None,
                "attendee_name": "A",
                "participants": [],
            }
        ),
    )
    assert isinstance(result, ToolError) and result.code is ErrorCode.invalid_arguments
    assert result.message.startswith("start:") and "timezone" in result.message


def test_internal_message_types_are_not_tools_for_the_model() -> None:
    result = parse_call("describe_calendars", "{}")
    assert isinstance(result, ToolError) and result.code is ErrorCode.unknown_tool
    assert "describe_calendars" not in {t["function"]["name"] for t in openai_tools()}


def test_tool_schemas_are_strict_and_generated_from_the_models() -> None:
    tools = {t["function"]["name"]: t["function"] for t in openai_tools()}
    book = tools["book_meeting"]
    assert book["strict"] is True
    params = book["parameters"]
    assert params["additionalProperties"] is False
    assert set(params["required"]) == set(BookMeeting.model_fields)
    assert {"format": "date-time", "type": "string"} in params["properties"]["start"]["anyOf"]
    assert {"pattern": REF_PATTERN, "type": "string"} in params["properties"]["slot_ref"]["anyOf"]


def test_a_booking_must_name_its_slot_by_ref_or_start() -> None:
    args = {"calendar_id": "dr-lee", "duration_minutes": None, "attendee_name": "A", "participants": []}
    neither = parse_call("book_meeting", json.dumps({**args, "slot_ref": None, "start": None}))
    assert isinstance(neither, ToolError) and "slot_ref" in neither.message
    bad_ref = parse_call("book_meeting", json.dumps({**args, "slot_ref": "slot three", "start": None}))
    assert isinstance(bad_ref, ToolError) and bad_ref.message.startswith("slot_ref:")
    by_ref = parse_call("book_meeting", json.dumps({**args, "slot_ref": "s3", "start": None}))
    assert isinstance(by_ref, ParsedCall) and by_ref.args == BookMeeting(**args, slot_ref="s3", start=None)
