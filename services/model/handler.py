"""Our tool-calling chat handler: OpenAI request → ChatML prompt + grammar → OpenAI response.

Over 300 lines because it is the one place where the OpenAI protocol's choices (tool_choice
none / auto / required / named / allowed_tools, response_format, streaming, the retry when a
model narrates instead of calling) meet the grammar: each case is a few lines, and they must agree.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from services.model import grammar, output, prompt
from services.model.engine import Engine, Generation, Sampling
from services.model.runtime import Runtime
from services.model.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    FinishReason,
    NamedFunction,
    NamedToolChoice,
    RequestMessage,
    ResponseMessage,
    Tool,
    ToolCall,
    Usage,
)
from services.model.settings import MODEL_ID

log = logging.getLogger("services.model.handler")

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


class ModelOutputError(RuntimeError):
    """The model's output broke the grammar's promise (→ HTTP 502); should not happen."""


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


@dataclass(frozen=True)
class Guards:
    """Second passes for two measured quirks of the 1.5B model (see `second_pass`)."""

    repeat: bool = True
    narration: bool = True


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


def is_repeat(call: ToolCall, answered: tuple[tuple[str, Any], ...]) -> bool:
    arguments = json.loads(call.function.arguments)
    return any(name == call.function.name and args == arguments for name, args in answered)


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


def to_message(gen: Generation, prepared: Prepared) -> tuple[ResponseMessage, FinishReason]:
    """The assistant message and finish_reason for a finished generation."""
    is_call = prepared.calls_possible and output.is_tool_call(gen.text, bare_calls=prepared.bare_calls)
    if gen.finish_reason in ("length", "cancelled"):
        # A cut-off call is no call; a cut-off text is still text.
        return ResponseMessage(content=None if is_call else gen.text.strip()), "length"
    if not is_call:
        return ResponseMessage(content=gen.text.strip()), "stop"
    try:
        call = output.parse_tool_call(gen.text, prepared.known_tools)
    except output.OutputError as exc:
        raise ModelOutputError(str(exc)) from exc
    return ResponseMessage(content=None, tool_calls=[call]), "tool_calls"


@dataclass(frozen=True)
class Outcome:
    """A served request: the message, why it ended, and the token counts."""

    message: ResponseMessage
    finish: FinishReason
    usage: Usage


class Restart:
    """Stream marker: the output so far is dropped and a second pass begins."""


RESTART = Restart()
Piece = str | Restart | None


def first_mentioned(text: str, tools: Sequence[Tool]) -> str | None:
    """The offered tool whose name appears first in `text`, if any."""
    found = [(text.find(t.function.name), t.function.name) for t in tools if t.function.name in text]
    return min(found)[1] if found else None


def second_pass(prepared: Prepared, message: ResponseMessage, guards: Guards) -> tuple[Prepared, str] | None:
    """The retry that a known quirk of the model calls for (and a note for the log), or None.

    Measured on Qwen2.5-Coder-1.5B, even without a grammar:
    - repeat: it answers a tool result by making the very same call again. A call identical to
      one whose result ends the conversation can only loop: ask again with calls switched off.
    - narration: asked for free times it may write "you can call `fetch_free_slots` ..." as a
      text reply. A reply that names an offered tool means the call: ask again with that
      tool's call required.
    """
    if (
        guards.repeat
        and message.tool_calls
        and prepared.text_grammar is not None
        and is_repeat(message.tool_calls[0], prepared.answered)
    ):
        note = "repeated an answered call; asking again without tools"
        return replace(prepared, grammar=prepared.text_grammar, calls_possible=False), note
    if narration_possible(prepared, guards) and message.content:
        name = first_mentioned(message.content, prepared.tools)
        if name is not None:
            forced = NamedToolChoice(function=NamedFunction(name=name))
            gbnf = grammar.build(prepared.tools, forced)
            note = f"named {name} in a text reply; asking for the call"
            return replace(prepared, grammar=gbnf, known_tools=frozenset({name})), note
    return None


def narration_possible(prepared: Prepared, guards: Guards) -> bool:
    """Whether a text reply may still be replaced by a call (so it cannot be streamed live)."""
    return guards.narration and prepared.free_text and bool(prepared.tools) and not prepared.answered


class _Halt(threading.Event):
    """Set on its own (a guard stops the output early) or when the request's event is set."""

    def __init__(self, outer: threading.Event | None) -> None:
        super().__init__()
        self._outer = outer

    def is_set(self) -> bool:
        return super().is_set() or (self._outer is not None and self._outer.is_set())


class _NarrationWatch:
    """Stops a text reply as soon as it names an offered tool: that reply is replaced by the
    call anyway (see `second_pass`), so the rest of the sentence is not worth generating."""

    def __init__(self, tools: Sequence[Tool], on_text: Callable[[str], None] | None, halt: _Halt) -> None:
        self._tools = tools
        self._on_text = on_text
        self._halt = halt
        self._text = ""
        self.named: str | None = None

    def __call__(self, piece: str) -> None:
        if self._on_text is not None:
            self._on_text(piece)
        if self.named is not None:
            return
        self._text += piece
        if self._text.lstrip()[:1] in ("{", "<"):  # a call: nothing to watch
            self.named = ""
            return
        name = first_mentioned(self._text, self._tools)
        if name is not None:
            self.named = name
            self._halt.set()


def run(
    engine: Engine,
    prepared: Prepared,
    sampling: Sampling,
    *,
    guards: Guards,
    on_text: Callable[[str], None] | None = None,
    on_restart: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
) -> Outcome:
    """Generate (in a worker thread, holding the engine) and turn the output into a message,
    with at most one second pass (see `second_pass`)."""
    halt = _Halt(cancel)
    watch = _NarrationWatch(prepared.tools, on_text, halt) if narration_possible(prepared, guards) else None
    gen = engine.generate(prepared.prompt, prepared.grammar, sampling, watch or on_text, halt)
    if watch is not None and watch.named and gen.finish_reason == "cancelled" and not (cancel and cancel.is_set()):
        gen = replace(gen, finish_reason="stop")  # stopped by the watch, not by the client
    message, finish = to_message(gen, prepared)
    completion_tokens = gen.completion_tokens
    retry = None if finish == "length" else second_pass(prepared, message, guards)
    if retry is not None and not (cancel is not None and cancel.is_set()):
        again, note = retry
        _log(gen, finish, note=note)
        if on_restart is not None:
            on_restart()
        gen = engine.generate(again.prompt, again.grammar, sampling, on_text, cancel)
        message, finish = to_message(gen, again)
        completion_tokens += gen.completion_tokens
    _log(gen, finish)
    usage = Usage(
        prompt_tokens=gen.prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=gen.prompt_tokens + completion_tokens,
    )
    return Outcome(message, finish, usage)


def _log(gen: Generation, finish: FinishReason, note: str = "") -> None:
    log.info(
        "%s: prompt %d tok (%d cached) %.2f s | gen %d tok %.2f s (%.1f tok/s)%s",
        finish,
        gen.prompt_tokens,
        gen.cached_tokens,
        gen.prompt_seconds,
        gen.completion_tokens,
        gen.generation_seconds,
        gen.tokens_per_second,
        f" | {note}" if note else "",
    )


def _completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


class ChatHandler:
    """Serves chat completions from the runtime's one engine, one generation at a time."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        settings = runtime.settings
        self._guards = Guards(repeat=settings.repeat_guard, narration=settings.narration_guard)

    def _start(self, request: ChatCompletionRequest) -> tuple[Engine, Prepared, Sampling]:
        """Checks before any work is queued; tokenizing and parsing a grammar only read the
        vocabulary, so they need not wait for the lock."""
        prepared = prepare(request)
        engine = self._runtime.engine()
        try:
            prompt_tokens = engine.check(prepared.prompt, prepared.grammar)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        sampling = sampling_for(prepared, prompt_tokens, engine.n_ctx, self._runtime.settings.max_tokens)
        return engine, prepared, sampling

    async def _locked_run(
        self,
        engine: Engine,
        prepared: Prepared,
        sampling: Sampling,
        cancel: threading.Event,
        on_text: Callable[[str], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> Outcome:
        async with self._runtime.lock:
            return await asyncio.to_thread(
                partial(
                    run,
                    engine,
                    prepared,
                    sampling,
                    guards=self._guards,
                    on_text=on_text,
                    on_restart=on_restart,
                    cancel=cancel,
                )
            )

    async def complete(self, request: ChatCompletionRequest) -> ChatCompletion:
        engine, prepared, sampling = self._start(request)
        cancel = threading.Event()
        # The generation runs in its own task: if this request is cancelled, the thread must
        # still finish before the lock is released, so we only stop waiting and ask it to end.
        task = asyncio.create_task(self._locked_run(engine, prepared, sampling, cancel))
        try:
            outcome = await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()
            raise
        return ChatCompletion(
            id=_completion_id(),
            created=int(time.time()),
            model=MODEL_ID,
            choices=[Choice(message=outcome.message, finish_reason=outcome.finish)],
            usage=outcome.usage,
        )

    def stream(self, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """Start generating now (errors raise here, before any byte is sent) and return the
        SSE lines: text as content deltas, a tool call as one delta at the end."""
        engine, prepared, sampling = self._start(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece] = asyncio.Queue()
        cancel = threading.Event()

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        def on_restart() -> None:
            loop.call_soon_threadsafe(queue.put_nowait, RESTART)

        async def produce() -> Outcome:
            try:
                return await self._locked_run(engine, prepared, sampling, cancel, on_text, on_restart)
            finally:
                queue.put_nowait(None)

        # Started here, not when the body is first read: the lock is always released.
        task = asyncio.create_task(produce())
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        live = not narration_possible(prepared, self._guards)
        return _sse(task, queue, cancel, prepared, include_usage=include_usage, live=live)


def _chunk(cid: str, created: int, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(
    task: asyncio.Task[Outcome],
    queue: asyncio.Queue[Piece],
    cancel: threading.Event,
    prepared: Prepared,
    *,
    include_usage: bool,
    live: bool,
) -> AsyncIterator[str]:
    """Text streams live unless a guard may still replace it; a call is sent whole."""
    cid, created = _completion_id(), int(time.time())
    sent_text = False
    try:
        yield _chunk(cid, created, {"role": "assistant", "content": ""})
        mode: str | None = None  # "text" or "call", decided by the first visible character
        pending = ""
        calls_possible = prepared.calls_possible
        while (piece := await queue.get()) is not None:
            if isinstance(piece, Restart):
                mode, pending, calls_possible = None, "", False
                continue
            if mode is None:
                pending += piece
                if not pending.strip():
                    continue
                call = calls_possible and output.is_tool_call(pending, bare_calls=prepared.bare_calls)
                mode = "call" if call else "text"
                piece = pending.lstrip()
            if mode == "text" and live:
                sent_text = True
                yield _chunk(cid, created, {"content": piece})
        try:
            outcome = await task
        except (ValueError, RuntimeError) as exc:
            log.error("stream failed: %s", exc)
            error = {"error": {"message": str(exc), "type": "server_error"}}
            yield f"data: {json.dumps(error)}\n\n"
            return
        if outcome.message.content and not sent_text:
            yield _chunk(cid, created, {"content": outcome.message.content})
        if outcome.message.tool_calls:
            call_delta = {"index": 0, **outcome.message.tool_calls[0].model_dump()}
            yield _chunk(cid, created, {"tool_calls": [call_delta]})
        yield _chunk(cid, created, {}, outcome.finish)
        if include_usage:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": MODEL_ID,
                "choices": [],
                "usage": outcome.usage.model_dump(),
            }
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if not task.done():
            cancel.set()
