"""JSON schema → GBNF for "text or exactly one tool call" (no model; building needs the wheel)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from services.model.grammar import (
    TEXT_RULE,
    GrammarError,
    build,
    normalize_schema,
    plan,
    translate_pattern,
)
from services.model.schemas import NamedToolChoice, Tool
from tests.model.conftest import needs_llama_cpp


class Window(BaseModel):
    start: AwareDatetime = Field(description="Window start, with offset.")
    end: AwareDatetime


class FetchFreeSlots(BaseModel):
    """A strict tool model as the chat service writes them."""

    model_config = ConfigDict(extra="forbid")
    calendars: list[str] = Field(min_length=1)
    window: Window
    day: date
    duration_minutes: int | None
    kind: Literal["visit", "call"]
    contact: EmailStr | None
    code: str = Field(pattern=r"^[A-Z]{2}\d{3}$")


def tool(name: str, parameters: dict[str, Any]) -> Tool:
    return Tool.model_validate({"type": "function", "function": {"name": name, "parameters": parameters}})


FETCH = tool("fetch_free_slots", FetchFreeSlots.model_json_schema())
BOOK = tool(
    "book_meeting",
    {
        "type": "object",
        "properties": {"slot": {"$ref": "#/$defs/Window"}},
        "required": ["slot"],
        "$defs": {"Window": {"type": "object", "properties": {"at": {"type": "string"}}, "required": ["at"]}},
    },
)


def rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())


# --- pure parts ----------------------------------------------------------------------------


def test_tool_choice_rules() -> None:
    assert plan([], None).allow_text
    assert plan([FETCH], None).tools == (FETCH,)
    assert plan([FETCH], "none").tools == ()
    assert not plan([FETCH], "required").allow_text
    named = plan([FETCH, BOOK], NamedToolChoice.model_validate({"function": {"name": "book_meeting"}}))
    assert named.tools == (BOOK,)
    assert not named.allow_text
    with pytest.raises(GrammarError, match="unknown function"):
        plan([FETCH], NamedToolChoice.model_validate({"function": {"name": "nope"}}))
    with pytest.raises(GrammarError, match="requires tools"):
        plan([], "required")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^a\.b$", "^a[.]b$"),
        (r"\d{3}", "^[0-9]{3}$"),
        (r"^[\w\-]+$", r"^[A-Za-z0-9_\-]+$"),
        (r"^x\b$", "^x$"),
        (r"^[^,]+$", '^[^,"\\\\\\x00-\\x1F]+$'),
    ],
)
def test_patterns_are_rewritten_for_the_converter(pattern: str, expected: str) -> None:
    assert translate_pattern(pattern) == expected


def test_rewritten_patterns_mean_the_same_inside_json_strings() -> None:
    rewritten = translate_pattern(r"^[A-Z]{2}\d{3}\.\w$")
    assert re.fullmatch(rewritten[1:-1], "AB123.x")
    assert not re.fullmatch(rewritten[1:-1], "AB12.x")


def test_unsupported_escapes_are_refused() -> None:
    with pytest.raises(GrammarError, match="unsupported escape"):
        translate_pattern(r"^\p{L}$")


def test_formats_become_patterns_and_defs_get_unique_names() -> None:
    schema = normalize_schema(
        {
            "properties": {
                "t": {"type": "string", "format": "time"},
                "d": {"type": "string", "format": "date-time"},
                "u": {"type": "string", "format": "hostname"},
                "w": {"$ref": "#/$defs/Window"},
            },
            "$defs": {"Window": {"type": "object"}},
        },
        "call0-",
    )
    props = schema["properties"]
    assert "format" not in props["t"]
    assert re.fullmatch(props["t"]["pattern"][1:-1], "14:30")
    assert props["d"] == {"type": "string", "format": "date-time"}  # the converter's own rule
    assert props["u"] == {"type": "string"}  # unknown format: a plain string
    assert props["w"] == {"$ref": "#/$defs/call0-Window"}
    assert set(schema["$defs"]) == {"call0-Window"}


# --- built grammars (the converter lives in llama-cpp-python) ------------------------------


@needs_llama_cpp
def test_no_tools_and_free_text_needs_no_grammar() -> None:
    assert build([], None) is None


@needs_llama_cpp
def test_auto_allows_text_or_a_call_of_any_tool() -> None:
    r = rules(build([FETCH, BOOK], "auto") or "")
    assert r["root"] == "tool-call | reply"
    assert r["reply"] == TEXT_RULE
    assert r["tool-call"] == "tagged-call | call"
    assert r["tagged-call"] == '<tool_call> "\\n" call "\\n" </tool_call>'
    assert '"{\\"name\\": \\"fetch_free_slots\\", \\"arguments\\": " call0-args "}"' in r["call"]
    assert '"{\\"name\\": \\"book_meeting\\", \\"arguments\\": " call1-args "}"' in r["call"]


@needs_llama_cpp
def test_the_schema_shapes_the_arguments() -> None:
    r = rules(build([FETCH], "required") or "")
    assert r["root"] == "tool-call"
    assert "reply" not in r
    assert "date-time-string" in r  # AwareDatetime → format date-time, offset required
    assert "Z" in r["time"]
    assert "date-string" in r
    assert '"\\"visit\\""' in r["call0-args-kind"]
    assert "null" in r["call0-args-duration-minutes"]
    assert r["call0-args"].startswith('"{" space call0-args-calendars-kv')


@needs_llama_cpp
def test_none_forbids_calls() -> None:
    r = rules(build([FETCH], "none") or "")
    assert r["root"] == "reply"
    assert "tool-call" not in r


@needs_llama_cpp
def test_a_json_reply_competes_only_with_tagged_calls() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    r = rules(build([FETCH], "auto", json_schema=schema) or "")
    assert r["reply"] == "reply-json"
    assert r["tool-call"] == "tagged-call"
    only_json = rules(build([], None, json_schema=schema) or "")
    assert only_json["root"] == "reply"


@needs_llama_cpp
def test_two_tools_with_same_named_defs_do_not_share_rules() -> None:
    other = tool(
        "cancel",
        {
            "type": "object",
            "properties": {"slot": {"$ref": "#/$defs/Window"}},
            "$defs": {"Window": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        },
    )
    r = rules(build([BOOK, other], "auto") or "")
    assert '"\\"at\\""' in " ".join(v for k, v in r.items() if k.startswith("call0-args"))
    assert '"\\"id\\""' in " ".join(v for k, v in r.items() if k.startswith("call1-args"))


@needs_llama_cpp
def test_unsupported_schemas_are_grammar_errors() -> None:
    with pytest.raises(GrammarError, match="unsupported JSON schema in tool 'x'"):
        build([tool("x", {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})], "auto")
