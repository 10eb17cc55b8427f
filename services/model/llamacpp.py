"""The one door to llama-cpp-python, which has no type information we can rely on.

It is imported lazily (its import loads the native library) and only through the small
Protocols below, so the rest of the package is typed and mypy never needs llama_cpp itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, cast


class LlamaUnavailable(RuntimeError):
    """llama-cpp-python is not installed or its native library does not load."""


class SchemaConverter(Protocol):
    """llama_cpp.llama_grammar.SchemaConverter: JSON schema → GBNF rules."""

    def resolve_refs(self, schema: dict[str, Any], url: str) -> dict[str, Any]: ...

    def visit(self, schema: dict[str, Any], name: str) -> str: ...

    def format_grammar(self) -> str: ...


class Llama(Protocol):
    """The part of llama_cpp.Llama that the engine uses."""

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...

    def detokenize(
        self,
        tokens: list[int],
        prev_tokens: list[int] | None = None,
        special: bool = False,
    ) -> bytes: ...

    def set_seed(self, seed: int) -> None: ...

    def n_ctx(self) -> int: ...

    def generate(
        self,
        tokens: Sequence[int],
        *,
        top_k: int,
        top_p: float,
        min_p: float,
        temp: float,
        repeat_penalty: float,
        grammar: object | None,
    ) -> Iterator[int]: ...


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except (ImportError, OSError) as exc:
        raise LlamaUnavailable(f"llama-cpp-python is not usable ({exc}); run scripts/install_local_model.sh") from exc


def available() -> bool:
    """Whether llama-cpp-python imports (its native library included)."""
    try:
        _module("llama_cpp")
    except LlamaUnavailable:
        return False
    return True


def schema_converter() -> SchemaConverter:
    """A fresh converter: no remote refs, no dotall, patterns quoted as JSON strings."""
    grammar = _module("llama_cpp.llama_grammar")
    converter = grammar.SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    return cast(SchemaConverter, converter)


def compile_grammar(model: Llama, gbnf: str) -> object | None:
    """A LlamaGrammar for `gbnf`, or None if llama.cpp cannot parse it.

    llama-cpp-python adds a grammar sampler without checking it, and a grammar that fails to
    parse becomes a NULL sampler that crashes the process; so parse it once here first.
    """
    llama_cpp = _module("llama_cpp")
    vocab = llama_cpp.llama_model_get_vocab(cast(Any, model).model)
    probe = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    if not probe:
        return None
    llama_cpp.llama_sampler_free(probe)
    grammar = _module("llama_cpp.llama_grammar")
    return cast(object, grammar.LlamaGrammar.from_string(gbnf, verbose=False))


def load(path: str, *, n_ctx: int, n_threads: int, n_batch: int) -> Llama:
    """Load a GGUF model; raises LlamaUnavailable or ValueError (llama.cpp refused the file)."""
    llama_cpp = _module("llama_cpp")
    model = llama_cpp.Llama(
        model_path=path,
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        n_batch=n_batch,
        verbose=False,
    )
    return cast(Llama, model)


def end_of_generation(model: Llama) -> Callable[[int], bool]:
    """A test for tokens that end a turn (<|im_end|>, <|endoftext|>, ...)."""
    llama_cpp = _module("llama_cpp")
    vocab = llama_cpp.llama_model_get_vocab(cast(Any, model).model)
    is_eog = llama_cpp.llama_vocab_is_eog

    def check(token: int) -> bool:
        return bool(is_eog(vocab, token))

    return check
