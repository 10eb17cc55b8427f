"""Lua scripts: how every script of ours is written, loaded and run.

A script is a `.lua` file whose header states its contract, one line per key and argument, in
order (`..` marks the last entry when it takes all the remaining values):

    -- KEYS[1] idempotency: the command's idempotency hash
    -- ARGV[1] fingerprint: the request's fingerprint
    -- ARGV[2..] starts: start epochs

The loader binds each single entry to its name (`K.idempotency`, `A.fingerprint`), so a body
never counts positions, and replaces a line `--#include <name>` with the library `<name>.lua`
(beside the script, else in runtime/lua): every script includes a library the same way.

The caller's side of the contract is a `ScriptRequest`: a dataclass beside the script with the
same fields in the same order, `Key` fields being KEYS and the others ARGV (a tuple field is
spread); tests/unit/test_script_contracts.py fails when the two disagree.

Running: EVALSHA by the source's SHA-1, and on NOSCRIPT (never loaded, or the server lost its
cache) SCRIPT LOAD and EVALSHA again, a NOSCRIPT reply meaning it did not run (on a cluster
SCRIPT LOAD goes to every master). `Direct` sends each call on its own; a caller that batches
(services/booking/pipeline.py) queues the same calls into a shared pipeline, which on a cluster
is split by node. Both go through `run_script`.

Every key a script touches is one of its KEYS (Redis Cluster routes a script by its KEYS;
a key built inside from ARGV would break that contract even with the right hash tag):
tests/unit/test_script_contracts.py checks every `redis.call` of every script.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Protocol, get_type_hints

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

LIBRARIES: Final = Path(__file__).with_name("lua")
HEADER: Final = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.)?\] (\w+):", re.MULTILINE)
INCLUDE: Final = re.compile(r"^--#include (\w+)$", re.MULTILINE)
_LUA_WORDS = (
    "and break do else elseif end false for function goto if in local nil not or repeat return then true until while"
)
LUA_WORDS: Final = frozenset(_LUA_WORDS.split())

KEY: Final = "KEYS"
Key = Annotated[str, KEY]
"""A request field that is a Redis key (KEYS); every other field is an argument (ARGV)."""
Keys = Annotated[tuple[str, ...], KEY]
"""The remaining KEYS."""

Queue = Callable[[Pipeline], object]
"""Adds one command to a pipeline (e.g. `lambda p: p.get(key)`)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a script's contract: KEYS or ARGV, its name, whether it takes the rest."""

    kind: str
    name: str
    rest: bool = False


def contract_of(source: str) -> list[Entry]:
    """The KEYS/ARGV entries a script's header documents; ValueError when they skip a position
    or an entry follows one that takes the rest."""
    entries: list[Entry] = []
    for kind in (KEY, "ARGV"):
        own = [(int(n), name, bool(rest)) for k, n, rest, name in HEADER.findall(source) if k == kind]
        for i, (n, name, rest) in enumerate(own, start=1):
            if n != i or (rest and i != len(own)):
                raise ValueError(f"{kind}[{n}] {name}: the header's {kind} must count 1, 2, ... with `..` last")
            if name in LUA_WORDS:
                raise ValueError(f"{kind}[{n}] {name}: a Lua keyword cannot name an entry")
            entries.append(Entry(kind, name, rest))
    return entries


def _bindings(entries: list[Entry]) -> str:
    """`local K = {name = KEYS[1], ...}` and `local A = {...}` for the single entries."""
    lines = []
    for kind, var in ((KEY, "K"), ("ARGV", "A")):
        own = [e for e in entries if e.kind == kind]
        named = ", ".join(f"{e.name} = {kind}[{i}]" for i, e in enumerate(own, start=1) if not e.rest)
        lines.append(f"local {var} = {{{named}}}\n")
    return "".join(lines)


def _expand(source: str, folder: Path, included: set[str]) -> str:
    """The source with each `--#include <name>` replaced by that library (the script's own
    folder first, then runtime/lua), each library once."""

    def library(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in included:
            return f"-- {name}: included above"
        included.add(name)
        path = folder / f"{name}.lua"
        path = path if path.exists() else LIBRARIES / f"{name}.lua"
        return _expand(path.read_text(), path.parent, included)

    return INCLUDE.sub(library, source)


@dataclass(frozen=True, slots=True)
class Script:
    """A script as sent to Redis: its file's header bindings, then its body with libraries in."""

    path: Path
    contract: tuple[Entry, ...]
    source: str
    sha: str

    @classmethod
    def from_file(cls, path: Path) -> Script:
        text = path.read_text()
        contract = contract_of(text)
        source = _bindings(contract) + _expand(text, path.parent, set())
        return cls(path, tuple(contract), source, hashlib.sha1(source.encode()).hexdigest())

    async def preload(self, redis: Redis) -> None:
        """SCRIPT LOAD, so that the first call does not pay a NOSCRIPT round trip."""
        await redis.script_load(self.source)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptRequest:
    """One call of a script: `Key` fields are its KEYS, the others its ARGV, in field order."""

    SCRIPT: ClassVar[Script]

    def keys(self) -> list[str]:
        return [str(k) for k in _flatten(self, _fields(type(self))[0])]

    def argv(self) -> list[str | int]:
        return _flatten(self, _fields(type(self))[1])

    def queue(self, pipe: Pipeline) -> None:
        """EVALSHA of this call, added to a pipeline. Through `execute_command`: a cluster
        pipeline refuses its `evalsha` method (a guard from before it routed scripts by their
        keys), but sends the command itself to the node of its keys' slot, grouped by node, and
        hands each caller its own reply or error (NOSCRIPT included) like a plain pipeline."""
        keys = self.keys()
        pipe.execute_command("EVALSHA", self.SCRIPT.sha, len(keys), *keys, *self.argv())

    @classmethod
    def contract(cls) -> list[Entry]:
        """The contract the fields describe, to compare with the script's header."""
        keys, argv = _fields(cls)
        hints = get_type_hints(cls)
        return [
            Entry(kind, name, rest=getattr(hints[name], "__origin__", None) is tuple)
            for kind, names in ((KEY, keys), ("ARGV", argv))
            for name in names
        ]


_FIELDS: dict[type[ScriptRequest], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _fields(cls: type[ScriptRequest]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of a request's KEYS fields and of its ARGV fields, in order."""
    if cls in _FIELDS:
        return _FIELDS[cls]
    hints = get_type_hints(cls, include_extras=True)
    names = [f.name for f in fields(cls)]
    keys = tuple(n for n in names if KEY in getattr(hints[n], "__metadata__", ()))
    _FIELDS[cls] = keys, tuple(n for n in names if n not in keys)
    return _FIELDS[cls]


def _flatten(request: ScriptRequest, names: tuple[str, ...]) -> list[str | int]:
    out: list[str | int] = []
    for name in names:
        value = getattr(request, name)
        if isinstance(value, tuple):
            out.extend(value)
        else:
            out.append(value)
    return out


class Runner(Protocol):
    """Where a caller's Redis commands go: on their own (`Direct`) or batched."""

    def call(self, queue: Queue) -> Awaitable[Any]: ...

    async def script(self, request: ScriptRequest) -> Any: ...


async def run_script(evalsha: Callable[[ScriptRequest], Awaitable[Any]], redis: Redis, request: ScriptRequest) -> Any:
    """The request's EVALSHA sent by `evalsha`; on NOSCRIPT, load the script and send it again."""
    try:
        return await evalsha(request)
    except NoScriptError:
        await request.SCRIPT.preload(redis)
        return await evalsha(request)


class Direct:
    """Each command in its own round trip."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def call(self, queue: Queue) -> Any:
        pipe = self.redis.pipeline(transaction=False)
        queue(pipe)
        (result,) = await pipe.execute()
        return result

    async def script(self, request: ScriptRequest) -> Any:
        return await run_script(self._evalsha, self.redis, request)

    async def _evalsha(self, request: ScriptRequest) -> Any:
        keys = request.keys()
        # a plain command, not a pipeline: a cluster client refuses EVALSHA in a pipeline
        return await self.redis.evalsha(request.SCRIPT.sha, len(keys), *keys, *request.argv())
