"""Every Lua script's KEYS/ARGV header and its request object agree: a script and its caller
that drift apart fail here, not in a booking."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

import runtime.offers
import runtime.outcomes
import services.booking.scripts
import services.calendar.store
import services.chat.access
import services.chat.approvals
import services.chat.replay
from runtime.scripts import INCLUDE, Entry, Key, Script, ScriptRequest, contract_of

ROOT = Path(__file__).resolve().parents[2]
MODULES = (
    services.booking.scripts,
    services.calendar.store,
    services.chat.access,
    services.chat.approvals,
    services.chat.replay,
    runtime.offers,
    runtime.outcomes,
)


def requests() -> list[type[ScriptRequest]]:
    """The request classes of the modules above that name a script."""
    found = []
    for module in MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ScriptRequest) and "SCRIPT" in vars(value):
                found.append(value)
    return found


@pytest.mark.parametrize("request_type", requests(), ids=lambda r: r.__name__)
def test_a_request_has_the_fields_its_script_header_names_in_order(request_type: type[ScriptRequest]) -> None:
    assert request_type.contract() == list(request_type.SCRIPT.contract), request_type.SCRIPT.path


def test_every_script_has_a_request_and_every_library_is_included() -> None:
    scripts = {r.SCRIPT.path.resolve() for r in requests()}
    lua = {p.resolve() for folder in ("services", "shared", "runtime") for p in (ROOT / folder).rglob("*.lua")}
    included = {name for p in lua for name in INCLUDE.findall(p.read_text())}
    libraries = {p for p in lua if p.stem in included}
    assert lua - libraries == scripts
    assert all(not contract_of(p.read_text()) for p in libraries), "a library has no KEYS/ARGV of its own"


def test_a_request_whose_fields_are_out_of_order_disagrees(tmp_path: Path) -> None:
    path = tmp_path / "swap.lua"
    path.write_text("-- KEYS[1] a: one\n-- ARGV[1] x: one\n-- ARGV[2] y: two\nreturn 1")

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Swapped(ScriptRequest):
        SCRIPT: ClassVar[Script] = Script.from_file(path)
        a: Key
        y: int
        x: int

    assert list(Swapped.SCRIPT.contract) == [Entry("KEYS", "a"), Entry("ARGV", "x"), Entry("ARGV", "y")]
    assert Swapped.contract() != list(Swapped.SCRIPT.contract)
    assert "local A = {x = ARGV[1], y = ARGV[2]}" in Swapped.SCRIPT.source


def test_a_header_that_skips_a_position_or_uses_a_lua_word_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        contract_of("-- ARGV[1] x: one\n-- ARGV[3] y: three")
    with pytest.raises(ValueError, match="keyword"):
        contract_of("-- ARGV[1] end: the end")


def test_a_library_is_included_once_where_it_is_named() -> None:
    source = services.booking.scripts.BookRequest.SCRIPT.source
    assert source.count("local function past_deadline") == 1
    assert source.count("local function check_holds") == 1
    assert "--#include" not in source


CALL = re.compile(r"redis\.p?call\(\s*'([A-Z]+)'\s*(?:,\s*([^,)]+))?")
PARAMETERS = re.compile(r"local function \w+\(([^)]*)\)")
OVER_KEYS = re.compile(r"for \w+, (\w+) in ipairs\(KEYS\)")
KEYLESS = frozenset({"TIME"})


def touched_keys(source: str) -> list[tuple[str, str]]:
    """(command, key expression) of every redis.call / redis.pcall of a script's source."""
    return [(command, key.strip()) for command, key in CALL.findall(source) if command not in KEYLESS]


def key_refusals(script: Script) -> list[str]:
    """The calls whose key is not one of the script's KEYS by name, nor a variable running over
    KEYS, nor a library function's parameter (its callers pass their KEYS): a key built from
    ARGV or by `..` is refused, as Redis Cluster routes a script by the KEYS it is given."""
    named = {f"K.{e.name}" for e in script.contract if e.kind == "KEYS"} | set(OVER_KEYS.findall(script.source))
    parameters = {p.strip() for params in PARAMETERS.findall(script.source) for p in params.split(",")}
    return [f"{command} {key}" for command, key in touched_keys(script.source) if key not in named | parameters]


@pytest.mark.parametrize("request_type", requests(), ids=lambda r: r.__name__)
def test_every_key_a_script_touches_is_passed_in_its_keys(request_type: type[ScriptRequest]) -> None:
    assert touched_keys(request_type.SCRIPT.source), "no call found: the pattern no longer matches"
    assert key_refusals(request_type.SCRIPT) == []


def test_a_script_that_builds_a_key_from_its_arguments_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "built.lua"
    path.write_text(
        "-- KEYS[1] busy: one\n-- ARGV[1] prefix: a key prefix\n"
        "local id = redis.call('ZRANGE', K.busy, 0, 0)[1]\n"
        "return redis.call('GET', A.prefix .. id)"
    )
    assert key_refusals(Script.from_file(path)) == ["GET A.prefix .. id"]
