"""Our tool-calling chat handler: OpenAI request → ChatML prompt + grammar → OpenAI response.

The request is made ready in request.py, the model's two known quirks get their second pass in
quirks.py; here a generation becomes a message (or a stream of chunks) in the OpenAI format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from services.model import output
from services.model.engine import Engine, Generation, Sampling
from services.model.quirks import Guards, Halt, NarrationWatch, narration_possible, second_pass
from services.model.request import BadRequest, Prepared, prepare, sampling_for
from services.model.runtime import Runtime
from services.model.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    FinishReason,
    ResponseMessage,
    Usage,
)
from services.model.settings import MODEL_ID

log = logging.getLogger("services.model.handler")


class ModelOutputError(RuntimeError):
    """The model's output broke the grammar's promise (→ HTTP 502); should not happen."""


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
    halt = Halt(cancel)
    watch = NarrationWatch(prepared.tools, on_text, halt) if narration_possible(prepared, guards) else None
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
