"""The leak guard runs on every reply inside the chat's event loop: no reply, however long or
hostile, may stall it. Each check is timed on adversarial text built to make a backtracking
pattern rescan the rest of the text from every start (issue 19, defect 7)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import pytest

from services.chat.guards import find_leaks, strip_leaks

MB = 1_000_000
REPLY_BUDGET_S = 0.100
"""Per call, for a reply of a size a model sends (a few thousand characters)."""
ONE_MB_LIMIT_S = 5.0
"""Per call at 1 MB: generous for a loaded 2-core machine; a quadratic pattern needs minutes."""


def repeat(piece: str, size: int) -> str:
    return (piece * (size // len(piece) + 1))[:size]


# name -> text of the given size
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "brace then colons": lambda n: "{" + ":" * (n - 1),
    "bracket then whitespace": lambda n: "[" + " " * (n - 1),
    "quoted key then whitespace": lambda n: '{"start"' + " " * (n - 8),
    "key prefixes": lambda n: repeat("t:{", n),
    "key prefix then long tag": lambda n: "t:{" + "a" * (n - 3),
    # each removal joins the two halves around it into the next tool name
    "nested tool names": lambda n: "book_m" * (n // 12) + "book_meeting" + "eeting" * (n // 12),
    "legacy markers": lambda n: repeat("BOOKING_CONFIRMATION ", n),
    "hex run glued to a word": lambda n: "a" * (n - 1) + "_",
    "call ids with dashes": lambda n: repeat("call_-", n) + ".",
    "slot references": lambda n: repeat("s1 ", n),
    "natural reply": lambda n: repeat("Dr. Lee is free on Mon 30 Nov at 14:00 or 14:30. Shall I book it? ", n),
}


class TooSlowError(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (the regex engine checks signals while it matches),
    so a quadratic pattern fails the test instead of hanging it."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise TooSlowError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def seconds(check: Callable[[str], object], text: str, limit_s: float) -> float:
    with time_limit(limit_s):
        started = time.perf_counter()
        check(text)
        return time.perf_counter() - started


CHECKS = {"find_leaks": find_leaks, "strip_leaks": strip_leaks}


@pytest.mark.parametrize("family", ADVERSARIAL)
@pytest.mark.parametrize("check", CHECKS)
def test_each_leak_check_of_a_hostile_reply_of_10_000_characters_takes_under_100_ms(check: str, family: str) -> None:
    text = ADVERSARIAL[family](10_000)
    best = min(seconds(CHECKS[check], text, 5.0) for _ in range(3))
    assert best < REPLY_BUDGET_S, f"{check} on {family}: {best * 1000:.0f} ms"


@pytest.mark.parametrize("family", ADVERSARIAL)
@pytest.mark.parametrize("check", CHECKS)
def test_each_leak_check_of_1_mb_of_hostile_text_ends_in_time(check: str, family: str) -> None:
    seconds(CHECKS[check], ADVERSARIAL[family](MB), ONE_MB_LIMIT_S)


@pytest.mark.parametrize("family", ADVERSARIAL)
@pytest.mark.parametrize("check", CHECKS)
def test_each_leak_check_grows_linearly_with_the_text(check: str, family: str) -> None:
    texts = ADVERSARIAL[family](MB // 16), ADVERSARIAL[family](MB // 4)
    small = large = float("inf")
    for _ in range(3):  # interleaved, best of 3: a busy machine slows single runs, rarely all three
        small = min(small, seconds(CHECKS[check], texts[0], ONE_MB_LIMIT_S))
        large = min(large, seconds(CHECKS[check], texts[1], ONE_MB_LIMIT_S))
    # linear: 4x the text, about 4x the time; quadratic would be 16x (2 ms floor against timer noise)
    assert large < 12 * max(small, 0.002), f"{check} on {family}: {small * 1000:.1f} ms -> {large * 1000:.1f} ms"
