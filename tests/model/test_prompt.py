"""ChatML rendering in Qwen2.5's native tool format (pure, no model)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from services.model.prompt import DEFAULT_SYSTEM, PromptError, render
from services.model.schemas import RequestMessage, Tool

TOOL = Tool.model_validate(
    {
        "type": "function",
        "function": {
            "name": "fetch_free_slots",
            "description": "Free slots of a calendar.",
            "parameters": {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]},
        },
    }
)


def msgs(*items: Mapping[str, object]) -> list[RequestMessage]:
    return [RequestMessage.model_validate(m) for m in items]


def test_plain_chat_is_chatml_with_the_default_system_turn() -> None:
    text = render(msgs({"role": "user", "content": "Hi"}))
    assert text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_tools_are_listed_in_the_system_turn_as_json_lines() -> None:
    text = render(msgs({"role": "system", "content": "Book things."}, {"role": "user", "content": "x"}), [TOOL])
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nBook things.\n\n# Tools\n")
    listed = system.split("<tools>\n")[1].split("\n</tools>")[0]
    expected = TOOL.model_dump(exclude_none=True)
    del expected["function"]["parameters"]["required"]  # the grammar enforces it
    assert json.loads(listed) == expected
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in system


def test_a_past_call_and_its_results_render_in_the_native_format() -> None:
    text = render(
        msgs(
            {"role": "user", "content": "Free tomorrow?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "fetch_free_slots", "arguments": '{"day":"2026-11-25"}'},
                    },
                    {"id": "c2", "type": "function", "function": {"name": "fetch_free_slots", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"slots": ["09:00"]}'},
            {"role": "tool", "tool_call_id": "c2", "content": "none"},
        ),
        [TOOL],
    )
    assert (
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "fetch_free_slots", "arguments": {"day": "2026-11-25"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "fetch_free_slots", "arguments": {}}\n</tool_call><|im_end|>\n'
    ) in text
    # Consecutive tool results are one user turn.
    assert text.endswith(
        "<|im_start|>user\n<tool_response>\n"
        '{"slots": ["09:00"]}\n</tool_response>\n<tool_response>\nnone\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n"
    )


def test_a_later_system_message_keeps_its_place() -> None:
    text = render(msgs({"role": "user", "content": "a"}, {"role": "system", "content": "note"}))
    assert "<|im_start|>user\na<|im_end|>\n<|im_start|>system\nnote<|im_end|>\n" in text


def test_text_parts_are_joined_and_unicode_is_kept() -> None:
    text = render(
        msgs({"role": "user", "content": [{"type": "text", "text": "Grüß "}, {"type": "text", "text": "dich"}]})
    )
    assert "Grüß dich" in text


def test_a_json_schema_reply_is_asked_for_in_a_last_system_turn_after_the_conversation() -> None:
    schema = {"type": "object", "properties": {"day": {"type": "string"}}}
    history = msgs({"role": "system", "content": "S"}, {"role": "user", "content": "x"})
    text = render(history, json_schema=schema)
    turns = text.split("<|im_end|>\n")
    assert turns[-1] == "<|im_start|>assistant\n"
    assert turns[-2].startswith("<|im_start|>system\n") and turns[-2].endswith(json.dumps(schema))
    assert json.dumps(schema) not in turns[0]
    # the conversation before the instruction renders as it does without one: a cached prefix
    assert text.startswith(render(history).removesuffix("<|im_start|>assistant\n"))


def test_an_unchanged_conversation_renders_an_unchanged_prefix() -> None:
    history = [{"role": "system", "content": "S"}, {"role": "user", "content": "one"}]
    shorter = render(msgs(*history), [TOOL])
    longer = render(msgs(*history, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "two"}), [TOOL])
    assert longer.startswith(shorter)


def test_past_call_arguments_that_are_not_json_are_refused() -> None:
    bad = msgs(
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{no"}}],
        },
    )
    with pytest.raises(PromptError, match="not valid JSON"):
        render(bad)


def test_tool_schemas_are_listed_without_title_annotations() -> None:
    parameters = {
        "title": "Args",
        "type": "object",
        "properties": {
            "title": {"title": "Title", "type": "string", "default": {"title": "kept"}},
            "when": {"$ref": "#/$defs/When"},
        },
        "$defs": {"When": {"title": "When", "type": "string"}},
    }
    tool = Tool.model_validate({"type": "function", "function": {"name": "book", "parameters": parameters}})
    listed = json.loads(
        render(msgs({"role": "user", "content": "x"}), [tool]).split("<tools>\n")[1].split("\n</tools>")[0]
    )
    assert listed["function"]["parameters"] == {
        "type": "object",
        "properties": {"title": {"type": "string", "default": {"title": "kept"}}, "when": {"$ref": "#/$defs/When"}},
        "$defs": {"When": {"type": "string"}},
    }


def test_tool_schemas_are_listed_without_the_constraints_the_grammar_enforces() -> None:
    parameters = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "calendar_ids": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "minItems": 1},
            "minutes": {"anyOf": [{"type": "integer", "minimum": 5}, {"type": "null"}], "description": "Length."},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "Free text."},
            "required": {"type": "boolean"},
        },
        "required": ["calendar_ids", "minutes", "note", "required"],
    }
    tool = Tool.model_validate(
        {"type": "function", "function": {"name": "find", "parameters": parameters, "strict": True}}
    )
    listed = json.loads(
        render(msgs({"role": "user", "content": "x"}), [tool]).split("<tools>\n")[1].split("\n</tools>")[0]
    )
    assert listed == {
        "type": "function",
        "function": {
            "name": "find",
            "parameters": {
                "type": "object",
                "properties": {
                    "calendar_ids": {"type": "array", "items": {"type": "string"}},
                    "minutes": {"type": ["integer", "null"], "description": "Length."},
                    "note": {"type": ["string", "null"], "description": "Free text."},
                    "required": {"type": "boolean"},
                },
            },
        },
    }
