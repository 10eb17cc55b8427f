"""The evaluation's own judge of replies, independent of the code it measures.

It imports nothing from services/chat: its phrase lists, time reader and leak patterns are its
own, and its facts come from Redis as the workers left it (bookings before and after each turn,
the offers the calendar worker recorded for the conversation), never from the chat's guards.

- A **false claim**: the reply says a booking was made, cancelled or moved (English, German,
  Spanish, French phrases) and the state did not change that way during the turn.
- An **unchecked availability claim**: the reply names a clock time that no fetch_free_slots
  result of this conversation offered, that is no booking's time, and that the user did not
  write themselves (echoing "10:00 is taken" is not a claim of a free time).
- A **leak**: JSON, internal ids, tool or stream names, slot references or the legacy marker.
- **Machine time**: ISO timestamps or UTC offsets shown to a person.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.domain import Booking, BookingStatus

CLAIMS: dict[str, tuple[str, ...]] = {
    "confirmed": (
        r"\b(?:you(?:'re| are)|i(?:'ve| have)|we(?:'ve| have)|it(?:'s| is| has been)|has been|is now|was) "
        r"(?:all |now |just |successfully )*(?:booked|scheduled|reserved|confirmed)\b",
        r"\bbooking (?:is|has been) (?:confirmed|made|created)\b",
        r"\bdone[:,.!]? .{0,40}\bbooked\b",
        r"\b(?:ist|wurde|habe .{0,40}) gebucht\b",
        r"\btermin (?:ist )?(?:bestätigt|eingetragen)\b",
        r"\b(?:está|queda|ha sido|he) (?:reservad[oa]|confirmad[oa]|agendad[oa])\b",
        r"\bcita (?:está )?(?:reservada|confirmada)\b",
        r"\b(?:c'est|est|a été|j'ai) (?:bien )?(?:réservée?|confirmée?)\b",
        r"\brendez-vous (?:est )?(?:réservé|confirmé)\b",
    ),
    "cancelled": (
        r"\b(?:is|has been|was|i(?:'ve| have)|you(?:'ve| have)|we(?:'ve| have)) (?:now |just |successfully )*"
        r"cancell?ed\b",
        r"\bcancell?ation (?:is )?(?:confirmed|done)\b",
        r"\b(?:ist|wurde) (?:storniert|abgesagt)\b",
        r"\b(?:está|ha sido|he) cancelad[oa]\b",
        r"\b(?:est|a été|j'ai) annulée?\b",
    ),
    "rescheduled": (
        r"\b(?:is|has been|was|i(?:'ve| have)|you(?:'ve| have)) (?:now |just |successfully )*(?:rescheduled|moved)\b",
        r"\b(?:ist|wurde) verschoben\b",
        r"\b(?:ha sido|he) (?:movid[oa]|cambiad[oa])\b",
        r"\b(?:a été|j'ai) déplacée?\b",
    ),
}
_CLAIM = {effect: re.compile("|".join(p), re.IGNORECASE) for effect, p in CLAIMS.items()}
_NEGATION = re.compile(
    r"\b(?:not|n't|no longer|nothing|nicht|nichts|kein\w*|no se|nada|ne .{0,20} pas|rien)\b", re.IGNORECASE
)
_CLOCK = re.compile(
    r"\b(\d{1,2})(?:[:.h](\d{2}))?\s?(am|pm|a\.m\.|p\.m\.)|\b(\d{1,2})[:.h](\d{2})\b|\b(\d{1,2}) ?uhr\b", re.IGNORECASE
)
_LEAKS = (
    ("marker", re.compile(r"BOOKING[_ ]?CONFIRMATION", re.IGNORECASE)),
    ("json", re.compile(r"[{\[]\s*\"\w+\"\s*:")),
    (
        "internal name",
        re.compile(
            r"\b(?:fetch_free_slots|book_meeting|cancel_booking|reschedule_booking|list_my_bookings|"
            r"calendar\.requests|booking\.commands|booking\.events|dead\.letters|calendar_id|slot_ref|booking_id)\b"
        ),
    ),
    ("identifier", re.compile(r"\b[0-9a-f]{16,}\b|\bcall_[A-Za-z0-9]{6,}")),
    ("slot reference", re.compile(r"\b(?:slot|ref)\s+s\d+\b|\bs\d+\b(?=\s*[:=,)])", re.IGNORECASE)),
)
_MACHINE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}|\bUTC\b|[+-]\d{2}:\d{2}\b")


def clock_times(text: str) -> set[int]:
    """Minutes after midnight of every clock time written in the text."""
    found = set()
    for h12, m12, suffix, h24, m24, uhr in _CLOCK.findall(text):
        if suffix:
            hour = int(h12) % 12 + (12 if suffix.lower().startswith("p") else 0)
            found.add(hour * 60 + int(m12 or 0))
        elif h24:
            found.add(int(h24) * 60 + int(m24))
        else:
            found.add(int(uhr) * 60)
    return {m for m in found if m < 24 * 60}


def claims(text: str) -> set[str]:
    """Effects the text says happened (a sentence that negates its claim does not count)."""
    said = set()
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        for effect, pattern in _CLAIM.items():
            if pattern.search(sentence) and not _NEGATION.search(sentence):
                said.add(effect)
    return said


def changes(before: Sequence[Booking], after: Sequence[Booking]) -> set[str]:
    """The effects the state shows for a turn: a new confirmed booking, a cancellation, a move."""
    old = {b.booking_id: b for b in before}
    done = set()
    for b in after:
        prior = old.get(b.booking_id)
        if prior is None and b.status is BookingStatus.confirmed:
            done.add("confirmed")
        elif prior is not None and prior.status is BookingStatus.confirmed and b.status is BookingStatus.cancelled:
            done.add("cancelled")
        elif prior is not None and prior.start != b.start:
            done.add("rescheduled")
    return done


@dataclass
class Verdict:
    false_claims: list[str] = field(default_factory=list)
    unchecked_times: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    machine_times: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)


def judge_turn(
    reply: str,
    before: Sequence[Booking],
    after: Sequence[Booking],
    offered: Iterable[int],
    user_texts: Iterable[str],
    zones: Iterable[ZoneInfo],
) -> Verdict:
    """One reply against the state. `offered`: epoch starts the calendar worker recorded as
    offered in this conversation; `user_texts`: what the user wrote so far; `zones`: the zones
    a time may be shown in (the calendars' and the user's)."""
    effects = changes(before, after)
    verdict = Verdict(effects=sorted(effects))
    if "rescheduled" in effects:
        effects |= {"confirmed"}  # "your appointment is booked for 11:00" after a move is true
    verdict.false_claims = sorted(claims(reply) - effects)
    zone_list = list(zones)
    known: set[int] = set()
    for start in offered:
        for zone in zone_list:
            local = datetime.fromtimestamp(start, zone)
            known.add(local.hour * 60 + local.minute)
    for b in (*before, *after):
        for zone in zone_list:
            for moment in (b.start, b.end):
                local = moment.astimezone(zone)
                known.add(local.hour * 60 + local.minute)
    for text in user_texts:
        known |= clock_times(text)
    verdict.unchecked_times = [f"{m // 60:02d}:{m % 60:02d}" for m in sorted(clock_times(reply) - known)]
    verdict.leaks = [f"{kind}: {m.group(0)}" for kind, pattern in _LEAKS for m in pattern.finditer(reply)]
    verdict.machine_times = _MACHINE_TIME.findall(reply)
    return verdict
