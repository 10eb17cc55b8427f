"""Turn the model's raw (grammar-constrained) output into an OpenAI message (pure)."""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass

from services.model.prompt import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from services.model.schemas import FunctionCall, ToolCall

_ID_ALPHABET = string.ascii_letters + string.digits


class OutputError(ValueError):
    """The output claims to be a tool call but is not a complete, valid one."""


@dataclass(frozen=True)
class ParsedOutput:
    """Either `content` (a text reply) or `tool_call`, never both."""

    content: str | None = None
    tool_call: ToolCall | None = None


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def is_tool_call(text: str, *, bare_calls: bool) -> bool:
    """Whether output starting with `text` (at least one character of it) is a tool call.

    The grammar decides on the first character: "<" opens the tag, and "{" is a bare call
    whenever the reply itself cannot be JSON (`bare_calls`).
    """
    stripped = text.lstrip()
    return stripped.startswith("<") or (bare_calls and stripped.startswith("{"))


def parse_tool_call(text: str, known: frozenset[str] | None = None) -> ToolCall:
    """Parse `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` or the bare object."""
    body = text.strip()
    if body.startswith(TOOL_CALL_OPEN):
        if not body.endswith(TOOL_CALL_CLOSE):
            raise OutputError("the tool call is incomplete")
        body = body[len(TOOL_CALL_OPEN) : -len(TOOL_CALL_CLOSE)]
    try:
        call = json.loads(body)
    except json.JSONDecodeError as exc:
        raise OutputError(f"the tool call is not valid JSON: {exc.msg}") from exc
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise OutputError("the tool call has no function name")
    name: str = call["name"]
    if known is not None and name not in known:
        raise OutputError(f"the tool call names an unknown function: {name!r}")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode; accept a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise OutputError("the tool call arguments are not valid JSON") from exc
    if not isinstance(arguments, dict):
        raise OutputError("the tool call arguments are not a JSON object")
    return ToolCall(
        id=new_call_id(),
        function=FunctionCall(name=name, arguments=json.dumps(arguments, ensure_ascii=False)),
    )


def parse(text: str, *, bare_calls: bool = True, known: frozenset[str] | None = None) -> ParsedOutput:
    """A complete output: a tool call (see `is_tool_call`), else a text reply."""
    if is_tool_call(text, bare_calls=bare_calls):
        return ParsedOutput(tool_call=parse_tool_call(text, known))
    return ParsedOutput(content=text.strip())
