"""Every Lua script's KEYS/ARGV header and its request object agree: a script and its caller
that drift apart fail here, not in a booking."""

from __future__ import annotations

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
