"""One chat-completions request made ready for the model, without the model: the prompt
rendered, the grammar built, the sampling settings fitted into the context window; what cannot
be served as asked is a BadRequest (HTTP 400)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.model import grammar, prompt
from services.model.engine import Sampling
from services.model.schemas import ChatCompletionRequest, RequestMessage, Tool

# OpenAI's default is 1.0; a 1.5B model wanders at that heat, so without a request value we
# sample cooler.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.95


class BadRequest(ValueError):
    """The request is well-formed JSON but cannot be served as asked (→ HTTP 400)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Prepared:
    """Everything needed to run one request, computed without the model."""

    prompt: str
    grammar: str | None
    calls_possible: bool
    bare_calls: bool
    known_tools: frozenset[str]
    requested_max: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    # The tools that may be called, whether a reply is free text (not JSON), the calls whose
    # results end the conversation, and a text-only grammar: what the guards need (see run).
    tools: tuple[Tool, ...] = ()
    free_text: bool = True
    answered: tuple[tuple[str, Any], ...] = ()
    text_grammar: str | None = None


def answered_calls(messages: Sequence[RequestMessage]) -> tuple[tuple[str, Any], ...]:
    """(name, arguments) of the assistant's last calls, if tool results end the chat."""
    i = len(messages) - 1
    while i >= 0 and messages[i].role in ("tool", "function"):
        i -= 1
    if i == len(messages) - 1 or i < 0 or not messages[i].tool_calls:
        return ()
    calls = []
    for call in messages[i].tool_calls or ():
        try:
            calls.append((call.function.name, json.loads(call.function.arguments or "{}")))
        except json.JSONDecodeError:
            continue
    return tuple(calls)


def prepare(request: ChatCompletionRequest) -> Prepared:
    """Render the prompt and build the grammar; BadRequest for what cannot be served."""
    tools = request.tools or []
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise BadRequest("tool names must be unique", param="tools")
    fmt = request.response_format
    json_schema = None
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        json_schema = fmt.json_schema.json_schema
    json_object = fmt is not None and fmt.type == "json_object"
    answered = answered_calls(request.messages)
    try:
        allowed = grammar.plan(tools, request.tool_choice)
        instruction = json_schema if json_schema is not None else None
        if json_object:
            instruction = {"type": "object"}
        text = prompt.render(request.messages, tools, json_schema=instruction)
        gbnf = grammar.build(tools, request.tool_choice, json_schema=json_schema, json_object=json_object)
        text_grammar = None
        if answered and allowed.tools and allowed.allow_text:
            text_grammar = grammar.build(tools, "none", json_schema=json_schema, json_object=json_object)
    except (prompt.PromptError, grammar.GrammarError) as exc:
        raise BadRequest(str(exc)) from exc
    json_reply = allowed.allow_text and (json_schema is not None or json_object)
    return Prepared(
        prompt=text,
        grammar=gbnf,
        calls_possible=bool(allowed.tools),
        bare_calls=not json_reply,
        known_tools=frozenset(t.function.name for t in allowed.tools),
        requested_max=request.max_completion_tokens or request.max_tokens,
        temperature=(request.temperature if request.temperature is not None else DEFAULT_TEMPERATURE),
        top_p=request.top_p if request.top_p is not None else DEFAULT_TOP_P,
        seed=request.seed,
        stop=tuple(s for s in request.stop_list() if s),
        tools=allowed.tools,
        free_text=allowed.allow_text and not (json_schema is not None or json_object),
        answered=answered,
        text_grammar=text_grammar,
    )


def sampling_for(prepared: Prepared, prompt_tokens: int, n_ctx: int, default_max: int) -> Sampling:
    """Sampling settings, with max_tokens fitted into the context window."""
    room = n_ctx - prompt_tokens
    if prepared.requested_max is not None and prepared.requested_max > room:
        raise BadRequest(
            f"the prompt has {prompt_tokens} tokens and max_tokens is {prepared.requested_max}; "
            f"together they exceed the context window of {n_ctx} tokens",
            param="messages",
            code="context_length_exceeded",
        )
    if room < 1:
        raise BadRequest(
            f"the prompt has {prompt_tokens} tokens; the context window is {n_ctx}",
            param="messages",
            code="context_length_exceeded",
        )
    return Sampling(
        max_tokens=prepared.requested_max or min(default_max, room),
        temperature=prepared.temperature,
        top_p=prepared.top_p,
        seed=prepared.seed,
        stop=prepared.stop,
    )
