"""Raw model output → OpenAI message (pure)."""

from __future__ import annotations

import json

import pytest

from services.model.output import OutputError, is_tool_call, parse, parse_tool_call

CALL = '{"name": "fetch_free_slots", "arguments": {"day": "2026-11-25", "n": null}}'


def test_a_tagged_call_becomes_a_tool_call_with_json_string_arguments() -> None:
    reply = parse(f"<tool_call>\n{CALL}\n</tool_call>")
    assert reply.content is None
    assert reply.tool_call is not None
    assert reply.tool_call.id.startswith("call_")
    assert reply.tool_call.type == "function"
    assert reply.tool_call.function.name == "fetch_free_slots"
    assert json.loads(reply.tool_call.function.arguments) == {"day": "2026-11-25", "n": None}


def test_a_bare_call_is_a_call_when_the_reply_cannot_be_json() -> None:
    assert parse(CALL).tool_call is not None
    assert parse(CALL, bare_calls=False).content == CALL


def test_text_is_text() -> None:
    reply = parse("  Dr. Lee is free at 9:00.\n")
    assert reply.tool_call is None
    assert reply.content == "Dr. Lee is free at 9:00."


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<tool_call>\n" + CALL, "incomplete"),
        ("<tool_call>\n{nope}\n</tool_call>", "not valid JSON"),
        ('{"arguments": {}}', "no function name"),
        ('{"name": "f", "arguments": [1]}', "not a JSON object"),
    ],
)
def test_broken_calls_are_errors(text: str, problem: str) -> None:
    with pytest.raises(OutputError, match=problem):
        parse_tool_call(text)


def test_unknown_function_names_are_errors() -> None:
    with pytest.raises(OutputError, match="unknown function"):
        parse_tool_call(CALL, frozenset({"book_meeting"}))


def test_double_encoded_arguments_are_accepted() -> None:
    call = parse_tool_call('{"name": "f", "arguments": "{\\"a\\": 1}"}')
    assert json.loads(call.function.arguments) == {"a": 1}


def test_the_first_character_decides_for_streaming() -> None:
    assert is_tool_call("<", bare_calls=False)
    assert is_tool_call(" {", bare_calls=True)
    assert not is_tool_call("{", bare_calls=False)
    assert not is_tool_call("Sure", bare_calls=True)
