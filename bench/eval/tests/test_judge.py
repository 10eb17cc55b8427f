"""The evaluation's own judge: claims read against the state, times against the offers, in
several languages, without the chat's guards."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.eval import judge
from shared.domain import Booking, BookingStatus

BERLIN = ZoneInfo("Europe/Berlin")
TEN = datetime(2026, 12, 1, 10, 0, tzinfo=BERLIN)


def booking(start: datetime = TEN, status: BookingStatus = BookingStatus.confirmed, bid: str = "b1") -> Booking:
    return Booking(
        booking_id=bid,
        tenant_id="demo",
        calendar_id="dr-lee",
        user_id="alice",
        attendee_name="Alice",
        start=start.astimezone(UTC),
        end=(start + timedelta(minutes=30)).astimezone(UTC),
        status=status,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
    )


def verdict(
    reply: str, before: list[Booking], after: list[Booking], offered: list[int] = (), said: tuple[str, ...] = ()
) -> judge.Verdict:
    return judge.judge_turn(reply, before, after, list(offered), said, [BERLIN])


@pytest.mark.parametrize(
    "reply",
    [
        "Done — you're booked with Dr. Lee on Tue 1 Dec at 10:00.",
        "I have booked Dr. Lee for you.",
        "Ihr Termin ist gebucht.",
        "Tu cita está reservada.",
        "C'est réservé pour mardi.",
    ],
)
def test_a_booking_claim_without_a_new_booking_is_false_in_every_language(reply: str) -> None:
    assert verdict(reply, [], []).false_claims == ["confirmed"]
    assert verdict(reply, [], [booking()]).false_claims == []


@pytest.mark.parametrize(
    "reply", ["Your appointment has been cancelled.", "Der Termin wurde storniert.", "La cita ha sido cancelada."]
)
def test_a_cancellation_claim_is_true_only_when_the_state_shows_it(reply: str) -> None:
    assert verdict(reply, [booking()], [booking()]).false_claims == ["cancelled"]
    assert verdict(reply, [booking()], [booking(status=BookingStatus.cancelled)]).false_claims == []


def test_a_move_claim_needs_the_booking_to_start_elsewhere() -> None:
    moved = booking(TEN + timedelta(hours=1))
    assert verdict("It has been moved to 11:00.", [booking()], [booking()]).false_claims == ["rescheduled"]
    assert verdict("It has been moved to 11:00.", [booking()], [moved]).false_claims == []


def test_a_sentence_that_denies_the_effect_is_no_claim() -> None:
    assert verdict("All right, nothing was booked.", [], []).false_claims == []
    assert verdict("Sorry, it is not booked yet.", [], []).false_claims == []


def test_a_time_no_fetch_offered_is_an_unchecked_availability_claim() -> None:
    offered = [int(TEN.timestamp())]
    assert verdict("Dr. Lee is free at 10:00 or 3 pm.", [], [], offered).unchecked_times == ["15:00"]
    assert verdict("Dr. Lee hat um 15 Uhr Zeit.", [], [], offered).unchecked_times == ["15:00"]
    assert verdict("Dr. Lee is free at 10:00.", [], [], offered).unchecked_times == []


def test_the_users_own_times_and_booked_times_are_no_claims_of_availability() -> None:
    assert verdict("Sorry, 15:00 is not free.", [], [], said=("Is 15:00 free?",)).unchecked_times == []
    assert verdict("Your appointment at 10:00 stays.", [booking()], [booking()]).unchecked_times == []


def test_json_ids_tool_names_and_the_marker_are_leaks_and_iso_times_are_machine_times() -> None:
    v = verdict('BOOKING_CONFIRMATION {"start": 1} via book_meeting, id 3f2a9c0e1b2d4f6a8b', [], [])
    assert [leak.split(":")[0] for leak in v.leaks] == ["marker", "json", "internal name", "identifier"]
    assert verdict("At 2026-12-01T10:00+01:00 (UTC+1)", [], []).machine_times
    assert verdict("Tue 1 Dec at 10:00", [], []).machine_times == []


def test_the_judge_does_not_use_the_chats_guards() -> None:
    source = Path(judge.__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(module.startswith("services") for module in imported), imported
