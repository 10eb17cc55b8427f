"""Second passes for two measured quirks of the 1.5B model (see `second_pass`): a call that
repeats one already answered, and a text reply that names a tool instead of calling it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.model import grammar
from services.model.request import Prepared
from services.model.schemas import NamedFunction, NamedToolChoice, ResponseMessage, Tool, ToolCall


@dataclass(frozen=True)
class Guards:
    """Second passes for two measured quirks of the 1.5B model (see `second_pass`)."""

    repeat: bool = True
    narration: bool = True


def is_repeat(call: ToolCall, answered: tuple[tuple[str, Any], ...]) -> bool:
    arguments = json.loads(call.function.arguments)
    return any(name == call.function.name and args == arguments for name, args in answered)


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


class Halt(threading.Event):
    """Set on its own (a guard stops the output early) or when the request's event is set."""

    def __init__(self, outer: threading.Event | None) -> None:
        super().__init__()
        self._outer = outer

    def is_set(self) -> bool:
        return super().is_set() or (self._outer is not None and self._outer.is_set())


class NarrationWatch:
    """Stops a text reply as soon as it names an offered tool: that reply is replaced by the
    call anyway (see `second_pass`), so the rest of the sentence is not worth generating."""

    def __init__(self, tools: Sequence[Tool], on_text: Callable[[str], None] | None, halt: Halt) -> None:
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
