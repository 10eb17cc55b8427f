"""GBNF grammars that constrain a reply to plain text OR exactly one valid tool call.

The tool-call branch is built from each tool's JSON schema with llama.cpp's own JSON-schema
converter, so the arguments always parse and match the schema's shape (types, required keys,
enums, date/date-time formats, anyOf with null). A call is either Qwen's native
`<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` or the same JSON object bare:
measured on Qwen2.5-Coder-1.5B, the model starts its calls with `{"` and, when forced to open
the tag, writes the JSON as a ```json text block instead, so both forms are accepted.

The text branch may not contain "<" (no tag, no ChatML marker inside a reply), may not start
with "{" (a bare call is never mistaken for text), and may not be empty or start with
whitespace.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.model import llamacpp
from services.model.prompt import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from services.model.schemas import AllowedToolsChoice, Tool, ToolChoice

TEXT_RULE = r"[^<{`\x00-\x20] [^<]*"

# String formats the converter lacks, as patterns it understands (anchored, no lookarounds).
FORMAT_PATTERNS: dict[str, str] = {
    "time": (
        r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
        r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
    ),
    "email": r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,4}$",
    "uri": r"^[a-z][a-z0-9+.-]{0,15}://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+$",
    "duration": r"^P([0-9]{1,4}D)?(T([0-9]{1,4}H)?([0-9]{1,4}M)?([0-9]{1,6}(\.[0-9]{1,6})?S)?)?$",
}
FORMAT_PATTERNS["url"] = FORMAT_PATTERNS["uri"]
# The converter writes these itself ("date-time" demands seconds and an offset).
NATIVE_FORMATS = frozenset({"date", "date-time", "uuid", "uuid1", "uuid3", "uuid4", "uuid5"})


class GrammarError(ValueError):
    """A schema or tool_choice we cannot turn into a grammar; the message names the cause."""


@dataclass(frozen=True)
class Plan:
    """What the reply may be: which tools may be called and whether text is allowed."""

    tools: tuple[Tool, ...]
    allow_text: bool


def plan(tools: Sequence[Tool], choice: ToolChoice | None) -> Plan:
    """Apply OpenAI's tool_choice rules: auto (default with tools), none, required, named,
    allowed_tools (a subset, auto or required)."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise GrammarError("tool_choice requires tools")
        return Plan((), True)
    if choice is None or choice == "auto":
        return Plan(tuple(tools), True)
    if choice == "none":
        return Plan((), True)
    if choice == "required":
        return Plan(tuple(tools), False)
    if isinstance(choice, AllowedToolsChoice):
        wanted = {t.function.name for t in choice.allowed_tools.tools}
        unknown = wanted - {t.function.name for t in tools}
        if unknown:
            raise GrammarError(f"allowed_tools names unknown functions: {sorted(unknown)!r}")
        return Plan(tuple(t for t in tools if t.function.name in wanted), choice.allowed_tools.mode == "auto")
    named = [t for t in tools if t.function.name == choice.function.name]
    if not named:
        raise GrammarError(f"tool_choice names an unknown function: {choice.function.name!r}")
    return Plan((named[0],), False)


def literal(text: str) -> str:
    """A GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


# What a shorthand class means inside the JSON string the pattern constrains. Negated sets
# also exclude '"', backslash and control characters, which would break the JSON string.
_NOT_IN_JSON = '"\\\\\\x00-\\x1F'
_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": " "}
_NEGATED_ESCAPES = {"D": "0-9", "W": "A-Za-z0-9_", "S": " "}


def translate_pattern(pattern: str) -> str:
    r"""Rewrite a regex into the subset llama.cpp's converter turns into valid GBNF.

    The converter copies escapes such as \. \d \w \s verbatim into GBNF, where llama.cpp
    rejects them; here they become character sets. A search pattern is also anchored (the
    converter needs ^...$), which only narrows what the model may write.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            i += 2
            if e in _CLASS_ESCAPES:
                out.append(f"[{_CLASS_ESCAPES[e]}]")
            elif e in _NEGATED_ESCAPES:
                out.append(f"[^{_NEGATED_ESCAPES[e]}{_NOT_IN_JSON}]")
            elif e == "b":
                continue  # a word boundary constrains no character
            elif e.isalnum() or e == "\\":
                raise GrammarError(f"unsupported escape \\{e} in pattern {pattern!r}")
            else:
                out.append(f"[{e}]")
        elif c == "[":
            end = _class_end(pattern, i + 1)
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                out.append(f"[^{_class_body(body[1:], pattern)}{_NOT_IN_JSON}]")
            else:
                out.append(f"[{_class_body(body, pattern)}]")
            i = end + 1
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    if not text.startswith("^"):
        text = "^" + text
    if not text.endswith("$"):
        text += "$"
    return text


def _class_end(pattern: str, start: int) -> int:
    i = start
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i
        i += 1
    raise GrammarError(f"unbalanced [ in pattern {pattern!r}")


def _class_body(body: str, pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            e = body[i + 1]
            i += 2
            if e in _CLASS_ESCAPES:
                out.append(_CLASS_ESCAPES[e])
            elif e in "\\]^-":
                out.append("\\" + e)
            elif e.isalnum():
                raise GrammarError(f"unsupported escape \\{e} in pattern {pattern!r}")
            else:
                out.append(e)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def normalize_schema(schema: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A copy the converter handles: formats mapped to patterns, $defs names made unique.

    The converter names a rule after the last segment of a $ref, so two tools with a
    `$defs/Slot` each would share one rule; prefixing the definition names keeps them apart.
    """

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "definitions") and isinstance(value, dict):
                out[key] = {f"{prefix}{name}": visit(sub) for name, sub in value.items()}
            elif key == "$ref" and isinstance(value, str):
                out[key] = _prefixed_ref(value, prefix)
            elif key == "pattern" and isinstance(value, str):
                out[key] = translate_pattern(value)
            else:
                out[key] = visit(value)
        fmt = out.get("format")
        if isinstance(fmt, str) and out.get("type", "string") == "string":
            if fmt in FORMAT_PATTERNS and "pattern" not in out:
                out["pattern"] = translate_pattern(FORMAT_PATTERNS[fmt])
                del out["format"]
            elif fmt not in NATIVE_FORMATS:
                del out["format"]  # an unknown format constrains nothing: a plain string
        return out

    if not isinstance(schema, dict):
        raise GrammarError("a JSON schema must be an object")
    result = visit(copy.deepcopy(schema))
    assert isinstance(result, dict)
    return result


def _prefixed_ref(ref: str, prefix: str) -> str:
    for root in ("#/$defs/", "#/definitions/"):
        if ref.startswith(root):
            name, _, rest = ref[len(root) :].partition("/")
            return f"{root}{prefix}{name}" + (f"/{rest}" if rest else "")
    return ref


def _visit(converter: llamacpp.SchemaConverter, schema: dict[str, Any], name: str, where: str) -> str:
    try:
        resolved = converter.resolve_refs(normalize_schema(schema, f"{name}-"), name)
        return converter.visit(resolved, name)
    except GrammarError:
        raise
    except (AssertionError, KeyError, ValueError, TypeError, RecursionError) as exc:
        raise GrammarError(f"unsupported JSON schema in {where}: {exc or type(exc).__name__}") from exc


def build(
    tools: Sequence[Tool],
    choice: ToolChoice | None,
    *,
    json_schema: dict[str, Any] | None = None,
    json_object: bool = False,
) -> str | None:
    """The grammar for one reply, or None when nothing needs constraining.

    root is `tool-call` and/or `reply`; `reply` is free text, or the JSON that the
    response_format asks for.
    """
    allowed = plan(tools, choice)
    constrained_reply = json_schema is not None or json_object
    if not tools and not constrained_reply:
        return None
    converter = llamacpp.schema_converter()
    extra: list[str] = []
    branches: list[str] = []
    if allowed.tools:
        calls = []
        for i, tool in enumerate(allowed.tools):
            name = tool.function.name
            args = _visit(converter, tool.function.parameters, f"call{i}-args", f"tool {name!r}")
            head = literal(f'{{"name": "{name}", "arguments": ')
            calls.append(f'{head} {args} "}}"')
        extra.append("call ::= " + " | ".join(calls))
        # <tool_call> and </tool_call> are single special tokens: a quoted literal would
        # only match them spelled out in plain tokens.
        extra.append(f'tagged-call ::= {TOOL_CALL_OPEN} "\\n" call "\\n" {TOOL_CALL_CLOSE}')
        # A JSON reply also starts with "{": then only the tagged form is a call.
        json_reply = allowed.allow_text and constrained_reply
        extra.append("tool-call ::= tagged-call" + ("" if json_reply else " | call"))
        branches.append("tool-call")
    if allowed.allow_text:
        if json_schema is not None:
            reply = _visit(converter, json_schema, "reply-json", "response_format")
        elif json_object:
            reply = _visit(converter, {"type": "object"}, "reply-json", "response_format")
        else:
            reply = TEXT_RULE
        extra.append(f"reply ::= {reply}")
        branches.append("reply")
    extra.append("root ::= " + " | ".join(branches))
    return converter.format_grammar() + "\n" + "\n".join(extra) + "\n"
