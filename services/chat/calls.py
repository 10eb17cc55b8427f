"""The model's tool calls, parsed: a known tool with valid arguments, or a typed error the model
can act on. Pure: whatever the model sends, this returns, never raises."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from shared.messages import ErrorCode, ToolError
from shared.tools import TOOLS, ToolArgs, ToolSpec
from shared.worker import describe_validation_error

MAX_ARGUMENT_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class ParsedCall:
    spec: ToolSpec
    args: ToolArgs


def parse_call(name: str, arguments: str | None) -> ParsedCall | ToolError:
    spec = TOOLS.get(name)
    if spec is None or not spec.for_model:
        known = ", ".join(n for n, s in TOOLS.items() if s.for_model)
        return ToolError(code=ErrorCode.unknown_tool, message=f"There is no tool {name[:60]!r}; use one of: {known}.")
    if arguments is not None and len(arguments) > MAX_ARGUMENT_CHARS:
        return ToolError(code=ErrorCode.invalid_arguments, message="The arguments are far too long.")
    try:
        return ParsedCall(spec, spec.args.model_validate_json(arguments or "{}"))
    except ValidationError as exc:
        return ToolError(code=ErrorCode.invalid_arguments, message=describe_validation_error(exc)[:1000])
