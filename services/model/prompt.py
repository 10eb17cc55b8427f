"""Render a chat as Qwen2.5 ChatML with the model's native tool format (pure, no model).

This is the model's own chat template (as shipped in its tokenizer config), written out in Python
so that we control it: tools go into the system turn inside <tools></tools>, past calls are
<tool_call>{"name": ..., "arguments": {...}}</tool_call> lines, and consecutive tool results
become one user turn of <tool_response></tool_response> blocks. The output is a pure function
of its input, so an unchanged conversation prefix renders to an unchanged text prefix and
llama.cpp can reuse its cached prefix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.model.schemas import RequestMessage, Tool, ToolCall

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

_TOOLS_INTRO = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
_JSON_INSTRUCTION = "\n\nAnswer with one JSON object that matches this JSON schema:\n"


class PromptError(ValueError):
    """The conversation cannot be rendered (e.g. a past tool call has invalid JSON)."""


def dumps(value: Any) -> str:
    """JSON as the template's `tojson` writes it: ', ' and ': ' separators, UTF-8 kept."""
    return json.dumps(value, ensure_ascii=False)


def render_tool_call(name: str, arguments: Any) -> str:
    """One call exactly as the model is asked (and constrained) to write it."""
    return f'{TOOL_CALL_OPEN}\n{{"name": {dumps(name)}, "arguments": {dumps(arguments)}}}\n{TOOL_CALL_CLOSE}'


_SUBSCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_DATA_KEYWORDS = frozenset({"default", "examples", "const"})
# Constraints that the grammar holds every call to (grammar.build), so listing them in the
# prompt only costs tokens: about a third of the tool schemas of the booking tools.
_ENFORCED = frozenset(
    {
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "uniqueItems",
        "required",
        # enums too: a caller that narrows them to the state of the moment (the calendars, the
        # offered slots) would otherwise change the prompt's tool block, and so the cached
        # prefix, at every call; the grammar holds each value to the enum all the same
        "enum",
    }
)


def _simple_types(options: Any) -> list[str] | None:
    """["integer", "null"] for an anyOf of bare {"type": ...} schemas, else None."""
    if not isinstance(options, list) or not options:
        return None
    types = [o["type"] for o in options if isinstance(o, dict) and set(o) == {"type"} and isinstance(o["type"], str)]
    return types if len(types) == len(options) else None


def compact_schema(node: Any) -> Any:
    """The schema as the model needs to read it: without "title" annotations (Pydantic adds
    one per field; they repeat the names), without the constraints the grammar enforces
    (`required` and `additionalProperties: false` included), and with an anyOf of bare types written as a type
    list. Property and definition names, descriptions, formats and data (default, examples,
    const, enum) are kept."""
    if isinstance(node, list):
        return [compact_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if (key == "title" and isinstance(value, str)) or key in _ENFORCED:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: compact_schema(sub) for name, sub in value.items()}
        elif key in _DATA_KEYWORDS:
            out[key] = value
        else:
            out[key] = compact_schema(value)
    types = _simple_types(out.get("anyOf"))
    if types is not None and "type" not in out:
        del out["anyOf"]
        out = {"type": types, **out}
    return out


def _tool_line(tool: Tool) -> str:
    data = tool.model_dump(exclude_none=True)
    data["function"].pop("strict", None)  # the grammar is always strict
    data["function"]["parameters"] = compact_schema(tool.function.parameters)
    return dumps(data)


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise PromptError(f"tool call {call.id} has arguments that are not valid JSON: {exc.msg}") from exc


def _system_text(messages: Sequence[RequestMessage]) -> str:
    return messages[0].text() if messages[0].role in ("system", "developer") else DEFAULT_SYSTEM


def render(
    messages: Sequence[RequestMessage],
    tools: Sequence[Tool] = (),
    *,
    json_schema: dict[str, Any] | None = None,
) -> str:
    """The full prompt, ending with the open assistant turn the model continues."""
    if not messages:
        raise PromptError("no messages")
    out: list[str] = ["<|im_start|>system\n", _system_text(messages)]
    if tools:
        out.append(_TOOLS_INTRO)
        for tool in tools:
            out.append("\n" + _tool_line(tool))
        out.append(_TOOLS_OUTRO)
    out.append("<|im_end|>\n")

    first_is_system = messages[0].role in ("system", "developer")
    for i, message in enumerate(messages):
        if i == 0 and first_is_system:
            continue
        role = message.role
        if role in ("system", "developer"):
            out.append(f"<|im_start|>system\n{message.text()}<|im_end|>\n")
        elif role == "user" or (role == "assistant" and not message.tool_calls):
            out.append(f"<|im_start|>{role}\n{message.text()}<|im_end|>\n")
        elif role == "assistant":
            out.append("<|im_start|>assistant")
            if message.text():
                out.append("\n" + message.text())
            for call in message.tool_calls or ():
                out.append("\n" + render_tool_call(call.function.name, _arguments(call)))
            out.append("<|im_end|>\n")
        else:  # tool / function results: a run of them is one user turn
            previous = messages[i - 1].role if i > 0 else None
            if previous not in ("tool", "function"):
                out.append("<|im_start|>user")
            out.append(f"\n<tool_response>\n{message.text()}\n</tool_response>")
            following = messages[i + 1].role if i + 1 < len(messages) else None
            if following not in ("tool", "function"):
                out.append("<|im_end|>\n")
    if json_schema is not None:
        # last, not in the first system turn: the conversation before it stays a cached prefix
        out.append(f"<|im_start|>system{_JSON_INSTRUCTION}{dumps(json_schema)}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)
