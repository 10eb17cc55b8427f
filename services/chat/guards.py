"""Checks on what the model says and does. Each is small, pure and tested alone.

- `find_leaks`: the user-facing text must hold no JSON, internal ids, slot references, tool or
  stream names, or legacy markers such as BOOKING_CONFIRMATION.
- `find_false_claim`: the text must not say a booking was made, cancelled or moved unless
  that effect was committed in this turn.
- `times_named`: the clock times a text names (an `answer` may name only offered ones).

None of them decides a write: writes wait as pending actions for the user's approval
(approvals.py); these only keep the model's own words honest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared import streams
from shared.domain import REF_IN_TEXT
from shared.tools import TOOLS

_NAMES = sorted(
    {*TOOLS, streams.CALENDAR_REQUESTS, streams.BOOKING_COMMANDS, streams.BOOKING_EVENTS, streams.DEAD_LETTERS},
    key=len,
    reverse=True,
)
# Every leak pattern is linear in the text: a repeat that can run unbounded is followed by a
# character it cannot match (so a failed start costs at most the run to the next such character)
# or is itself bounded. A reply of any size is checked in linear time (tests/unit/test_guards.py
# times 1 MB of adversarial text per pattern family).
LEAK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("legacy marker", re.compile(r"BOOKING[_ ]?CONFIRMATION\b[^\n]*", re.IGNORECASE)),
    ("json", re.compile(r"[{\[]\s*\"[^\"\n]{1,80}\"\s*:[^\n]*")),
    # the first run stops at the first ':' so that a failed start is one scan, not one per ':'
    ("json", re.compile(r"\{[^{}\n:]*:[^{}\n]*\}")),
    # the lookahead on the names' first letters lets the engine skip other positions quickly
    (
        "internal name",
        re.compile(
            "(?=[" + "".join(sorted({n[0] for n in _NAMES})) + "])(?:" + "|".join(re.escape(n) for n in _NAMES) + ")",
            re.IGNORECASE,
        ),
    ),
    ("identifier", re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.IGNORECASE)),
    ("identifier", re.compile(r"\b[0-9a-f]{16,}\b", re.IGNORECASE)),
    ("identifier", re.compile(r"\bcall_[A-Za-z0-9_-]{4,}\b")),
    ("identifier", re.compile(r"\b(?:booking_id|calendar_id|tenant_id|user_id|idempotency_key|correlation_id)\b")),
    # a key's hash tag is a tenant id (at most 63 characters): bounded, so no start scans the rest
    ("internal key", re.compile(r"\bt:\{[^{}\s]{0,100}\}\S*")),
    ("slot reference", REF_IN_TEXT),
)
STRIP_PASSES = 3
"""Removing a leak can join two halves of another into a new one; after this many passes a text
that still leaks is given up (empty), so stripping stays linear however the pieces nest."""


@dataclass(frozen=True, slots=True)
class Leak:
    kind: str
    text: str


def find_leaks(text: str) -> list[Leak]:
    """Every leaking span of the text (linear in its length)."""
    return [Leak(kind, m.group(0)) for kind, pattern in LEAK_PATTERNS for m in pattern.finditer(text)]


def _leaks(text: str) -> bool:
    return any(pattern.search(text) for _, pattern in LEAK_PATTERNS)


def strip_leaks(text: str) -> str:
    """Remove every leaking span; collapse the whitespace left behind. A removal can join two
    halves of a marker into a new one, so the removal repeats, at most STRIP_PASSES times: a
    text nested deeper than that is given up as a whole (""), the caller then answers from the
    facts."""
    for _ in range(STRIP_PASSES):
        if not _leaks(text):
            break
        for _, pattern in LEAK_PATTERNS:
            text = pattern.sub("", text)
    else:
        if _leaks(text):
            return ""
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip(" \n:-")


CLAIMS: dict[str, tuple[str, ...]] = {
    # effect -> phrases (lower case, per language) that claim it happened; kept as data.
    "confirmed": (
        r"\byou(?:'re| are) (?:all )?(?:booked|set|confirmed)\b",
        r"\b(?:i(?:'ve| have)|has been|is|was) (?:now )?booked\b",
        r"\bbooking (?:is|has been) (?:confirmed|made|created)\b",
        r"\b(?:i(?:'ve| have)?) (?:just )?(?:booked|scheduled|reserved)\b",
        r"(?:^|[.!?]\s*)booked\b",
        r"\bappointment (?:is|has been) (?:confirmed|booked|scheduled|set)\b",
        r"\bdone\b.{0,40}\bbooked\b",
        r"\b(?:you|we)(?:'ve| have) (?:now |just )?(?:successfully )?(?:booked|scheduled|reserved)\b",
        r"\bsuccessfully (?:booked|scheduled|reserved)\b",
        r"\bist gebucht\b",
        r"\bhabe .{0,40}gebucht\b",
    ),
    "cancelled": (
        r"\b(?:has been|is|was|i(?:'ve| have)?) (?:now |just )?cancell?ed\b",
        r"\bcancell?ation (?:is )?(?:confirmed|done)\b",
        r"\b(?:you|we)(?:'ve| have) (?:now |just )?(?:successfully )?cancell?ed\b",
        r"\bsuccessfully cancell?ed\b",
        r"\bist storniert\b",
    ),
    "rescheduled": (
        r"\b(?:has been|is|was|i(?:'ve| have)) (?:now )?(?:rescheduled|moved)\b",
        r"\bist verschoben\b",
        r"\b(?:you|we)(?:'ve| have) (?:now |just )?(?:successfully )?(?:rescheduled|moved)\b",
        r"\bsuccessfully (?:rescheduled|moved)\b",
    ),
}
_CLAIM_PATTERNS = {effect: re.compile("|".join(p), re.IGNORECASE) for effect, p in CLAIMS.items()}


def find_false_claim(text: str, committed: Iterable[str]) -> str | None:
    """The effect the text claims although it was not committed this turn, if any."""
    done = set(committed)
    for effect, pattern in _CLAIM_PATTERNS.items():
        if effect not in done and pattern.search(text):
            return effect
    return None


_TIME = re.compile(r"\b(\d{1,2})(?:[:.](\d{2}))?\s?(am|pm)\b|\b(\d{1,2})[:.](\d{2})\b", re.IGNORECASE)


def times_named(text: str) -> set[int]:
    """Minutes after midnight of every clock time written in the text."""
    found = set()
    for h12, m12, suffix, h24, m24 in _TIME.findall(text):
        if suffix:
            hour = int(h12) % 12 + (12 if suffix.lower() == "pm" else 0)
            found.add(hour * 60 + int(m12 or 0))
        else:
            found.add(int(h24) * 60 + int(m24))
    return found
