"""One loaded model and one generation at a time: prompt in, constrained text out.

The Llama object is kept for the life of the process; llama.cpp reuses the KV cache for the
longest common token prefix with the previous call, so a stable prompt prefix (system turn,
tools, earlier messages) is not evaluated again.
"""

from __future__ import annotations

import codecs
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from services.model import llamacpp, weights
from services.model.settings import ModelSettings

log = logging.getLogger("services.model.engine")

FinishReason = Literal["stop", "length", "cancelled"]
# Grammars are plain text until sampling; caching the checked ones saves a parse per request.
_GRAMMAR_CACHE = 32


class GenerationError(ValueError):
    """The request cannot be generated (grammar rejected, prompt too long)."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.2
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        # The first token comes out of the prompt pass; the rest are decode steps.
        steps = max(self.completion_tokens - 1, 0)
        return steps / self.generation_seconds if self.generation_seconds > 0 else 0.0


class Engine(Protocol):
    """What the chat handler needs from a model; tests substitute a scripted one."""

    @property
    def n_ctx(self) -> int: ...

    def check(self, prompt: str, grammar: str | None) -> int:
        """The prompt's length in tokens; GenerationError if llama.cpp rejects the grammar."""
        ...

    def generate(
        self,
        prompt: str,
        grammar: str | None,
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation: ...


@dataclass
class _StopScanner:
    """Finds stop strings in streamed text and holds back what might start one."""

    stops: tuple[str, ...]
    text: str = ""
    emitted: int = 0
    stopped: bool = field(default=False)

    def feed(self, piece: str) -> str:
        """Add `piece`; return the text that is now safe to emit."""
        self.text += piece
        for stop in self.stops:
            at = self.text.find(stop)
            if at >= 0:
                self.text = self.text[:at]
                self.stopped = True
        hold = 0 if self.stopped else max((len(s) - 1 for s in self.stops), default=0)
        safe = max(len(self.text) - hold, self.emitted)
        out = self.text[self.emitted : safe]
        self.emitted = safe
        return out

    def flush(self) -> str:
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaEngine:
    """The real engine around llama_cpp.Llama (not thread-safe: callers serialize)."""

    def __init__(self, model: llamacpp.Llama) -> None:
        self._model = model
        self._is_eog = llamacpp.end_of_generation(model)
        self._history: list[int] = []
        self._grammars: dict[str, object] = {}

    @classmethod
    def load(cls, settings: ModelSettings) -> LlamaEngine:
        """Verify the weights and load them; raises WeightsError / LlamaUnavailable / ValueError."""
        if settings.verify_hash:
            weights.verify(settings.path)
        elif not settings.path.is_file():
            raise weights.WeightsError(f"model file {settings.path} is missing")
        started = time.monotonic()
        model = llamacpp.load(
            str(settings.path),
            n_ctx=settings.ctx,
            n_threads=settings.threads,
            n_batch=settings.batch,
        )
        log.info("model loaded from %s in %.1f s", settings.path, time.monotonic() - started)
        return cls(model)

    @property
    def n_ctx(self) -> int:
        return self._model.n_ctx()

    def _tokens(self, prompt: str) -> list[int]:
        return self._model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _grammar(self, grammar: str) -> object:
        compiled = self._grammars.get(grammar)
        if compiled is None:
            compiled = llamacpp.compile_grammar(self._model, grammar)
            if compiled is None:
                raise GenerationError("the schema produced a grammar that llama.cpp rejects")
            if len(self._grammars) >= _GRAMMAR_CACHE:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[grammar] = compiled
        return compiled

    def check(self, prompt: str, grammar: str | None) -> int:
        if grammar is not None:
            self._grammar(grammar)
        return len(self._tokens(prompt))

    def generate(
        self,
        prompt: str,
        grammar: str | None,
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        tokens = self._tokens(prompt)
        if len(tokens) + sampling.max_tokens > self.n_ctx:
            raise GenerationError(
                f"the prompt ({len(tokens)} tokens) plus max_tokens ({sampling.max_tokens}) "
                f"exceeds the context window of {self.n_ctx} tokens"
            )
        compiled = self._grammar(grammar) if grammar is not None else None
        cached = common_prefix(self._history, tokens)
        self._model.set_seed(sampling.seed if sampling.seed is not None else secrets.randbits(31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = _StopScanner(sampling.stop)
        produced: list[int] = []
        finish: FinishReason = "length"
        started = time.perf_counter()
        first: float | None = None
        steps = self._model.generate(
            tokens,
            top_k=40,
            top_p=sampling.top_p,
            min_p=0.05,
            temp=sampling.temperature,
            repeat_penalty=1.0,
            grammar=compiled,
        )
        try:
            for token in steps:
                if first is None:
                    first = time.perf_counter()
                if self._is_eog(token):
                    finish = "stop"
                    break
                produced.append(token)
                piece = decoder.decode(self._model.detokenize([token]))
                safe = scanner.feed(piece)
                if safe and on_text is not None:
                    on_text(safe)
                if scanner.stopped:
                    finish = "stop"
                    break
                if len(produced) >= sampling.max_tokens:
                    break
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
        finally:
            close = getattr(steps, "close", None)
            if callable(close):
                close()
            self._history = tokens + produced
        if not scanner.stopped:
            scanner.feed(decoder.decode(b"", final=True))
        rest = scanner.flush()
        if rest and on_text is not None:
            on_text(rest)
        ended = time.perf_counter()
        first = first or ended
        return Generation(
            text=scanner.text,
            finish_reason=finish,
            prompt_tokens=len(tokens),
            completion_tokens=len(produced),
            cached_tokens=cached,
            prompt_seconds=first - started,
            generation_seconds=ended - first,
        )
