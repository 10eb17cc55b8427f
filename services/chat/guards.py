"""Checks on what the model says and does. Each is small, pure and tested alone.

- `find_leaks`: the user-facing text must hold no JSON, internal ids, slot references, tool or
  stream names, or legacy markers such as BOOKING_CONFIRMATION.
- `find_false_claim`: the text must not say a booking was made, cancelled or moved unless
  that effect was committed in this turn.
- `confirms`: a write runs only when the user's latest message confirms the proposed slot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared import streams
from shared.offers import REF_IN_TEXT
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


_YES = re.compile(
    r"\b(yes|yeah|yep|yup|sure|ok(?:ay)?|confirm(?:ed)?|correct|please do|go ahead|book (?:it|that|me)|"
    r"sounds good|perfect|great|that works|do it|ja|gerne|passt)\b",
    re.IGNORECASE,
)
_NO = re.compile(r"\b(no|nope|not|don't|do not|cancel|wait|stop|nein|rather|instead)\b", re.IGNORECASE)


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


_WEEKDAYS = (
    ("monday", "mon", "montag"),
    ("tuesday", "tues", "tue", "dienstag"),
    ("wednesday", "wed", "mittwoch"),
    ("thursday", "thurs", "thu", "donnerstag"),
    ("friday", "fri", "freitag"),
    ("saturday", "sat", "samstag"),
    ("sunday", "sun", "sonntag"),
)
_WEEKDAY = re.compile(r"\b(" + "|".join(n for names in _WEEKDAYS for n in names) + r")\b", re.IGNORECASE)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(jan|feb|m[aä]r|apr|ma[iy]|jun|jul|aug|sep|o[ck]t|nov|de[cz])[a-zä]*\.?"
_DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\.?\s+(?:of\s+)?" + _MONTH, re.IGNORECASE)
_MONTH_DAY = re.compile(r"\b" + _MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?\b", re.IGNORECASE)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_RELATIVE = {"today": 0, "tomorrow": 1, "heute": 0}
_RELATIVE_DAY = re.compile(r"\b(" + "|".join(_RELATIVE) + r")\b", re.IGNORECASE)


def _month(name: str) -> int:
    key = name.lower()[:3].replace("ä", "a").replace("mai", "may").replace("okt", "oct").replace("dez", "dec")
    return _MONTHS.index(key) + 1


@dataclass(frozen=True, slots=True)
class NamedDay:
    """A day as a text names it: any of its parts may be left open ("Monday", "30 Nov")."""

    year: int | None = None
    month: int | None = None
    day: int | None = None
    weekday: int | None = None

    def matches(self, d: date) -> bool:
        wanted = (self.year, self.month, self.day, self.weekday)
        return all(w is None or w == v for w, v in zip(wanted, (d.year, d.month, d.day, d.weekday()), strict=True))


def days_named(text: str, today: date | None = None) -> list[NamedDay]:
    """Every day the text names: a weekday, "30 Nov", "Nov 30", an ISO date, "tomorrow"."""
    found = [
        NamedDay(weekday=next(i for i, names in enumerate(_WEEKDAYS) if name.lower() in names))
        for name in _WEEKDAY.findall(text)
    ]
    found += [NamedDay(month=_month(month), day=int(day)) for day, month in _DAY_MONTH.findall(text)]
    found += [NamedDay(month=_month(month), day=int(day)) for month, day in _MONTH_DAY.findall(text)]
    found += [NamedDay(int(y), int(m), int(d)) for y, m, d in _ISO_DATE.findall(text)]
    if today is not None:
        for word in _RELATIVE_DAY.findall(text):
            named = today + timedelta(days=_RELATIVE[word.lower()])
            found.append(NamedDay(named.year, named.month, named.day))
    return found


def invitees_confirmed(user_text: str, proposal_text: str, invitees: Iterable[str]) -> bool:
    """True when every invitee's address is written in the confirming message or in the
    proposal it answers: nobody is invited whom the user did not see named."""
    seen = f"{user_text}\n{proposal_text}".lower()
    return all(address.lower() in seen for address in invitees)


def proposes(text: str, slot_local: datetime, today: date | None = None) -> bool:
    """True when the text proposes this one slot: the only clock time it names is the slot's,
    and every day it names is the slot's day."""
    return times_named(text) == {slot_local.hour * 60 + slot_local.minute} and all(
        day.matches(slot_local.date()) for day in days_named(text, today)
    )


def confirms(user_text: str, proposal_text: str, slot_local: datetime, today: date | None = None) -> bool:
    """True when the user's latest message says yes to this very slot, day and time.

    Either the user names the slot themselves, or they answer an assistant message that
    proposed exactly this one slot. A message that also says no, names another time or day, or
    answers a proposal of several times or days, does not confirm. `today` (in the slot's zone)
    lets "tomorrow" count as a day.
    """
    if not _YES.search(user_text) or _NO.search(user_text):
        return False
    slot_minutes = slot_local.hour * 60 + slot_local.minute
    slot_day = slot_local.date()
    user_days = days_named(user_text, today)
    if not all(day.matches(slot_day) for day in user_days):
        return False
    if not user_days and not all(day.matches(slot_day) for day in days_named(proposal_text, today)):
        return False
    named = times_named(user_text)
    if named:
        return named == {slot_minutes}
    return times_named(proposal_text) == {slot_minutes}


_BOOKING_WORDS = re.compile(
    r"\b(appointments?|book\w*|slots?|free|availab\w*|schedul\w*|reschedul\w*|cancel\w*|mov(?:e|ed|ing)|"
    r"calendars?|meetings?|confirm\w*|invit\w*|days?|dates?|times?|when|dr|doctor|termin\w*|buchen|frei)\b",
    re.IGNORECASE,
)
_COURTESY = re.compile(
    r"^\W*(hi|hello|hey|thanks?|thank you|cheers|bye|goodbye|ok(?:ay)?|great|perfect|no|yes|danke|hallo|tsch\w+)\b",
    re.IGNORECASE,
)


def off_topic(user_text: str, reply: str, calendar_names: Iterable[str]) -> bool:
    """True when neither the user's message nor the reply is about appointments (no booking
    word, no calendar's name) and the message is not a greeting or thanks: the reply then
    answers something the assistant must not answer (medical advice, weather, homework)."""
    if _COURTESY.search(user_text):
        return False
    names = [n.lower() for n in calendar_names if n]
    for text in (user_text, reply):
        if _BOOKING_WORDS.search(text) or any(name in text.lower() for name in names):
            return False
    return True
