"""The chat's policy objects as units: reading a yes (consent.py), the checks on the model's own
words (checks.py), the model's reading held to the state and the user's words (grounding.py),
and the pending actions they build (proposals.py). No Redis, no model: the state is built here."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from services.chat import checks, consent, facts, grounding, proposals
from services.chat.approvals import PendingAction
from services.chat.state import ConversationState
from services.chat.tools import Answer, FetchFreeSlotsCall
from services.chat.turn import Progress
from shared.domain import Booking, BookingOutcome, CalendarDirectory
from testkit.chat_state import BERLIN, LEE, booking, conversation_state

DAY = date(2026, 12, 1)


def _at(hhmm: str) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=BERLIN)


def _booking(hhmm: str) -> Booking:
    return booking(_at(hhmm))


def _state(offered: tuple[str, ...] = (), booked: tuple[str, ...] = ()) -> ConversationState:
    return conversation_state([_at(t) for t in offered], [_at(t) for t in booked])


def _action(kind: str = "book", hhmm: str = "10:00", participants: tuple[str, ...] = ()) -> PendingAction:
    return PendingAction(
        action_id="a" * 32,
        kind=kind,  # type: ignore[arg-type]
        calendar_name="Dr. Lee",
        start=_at(hhmm),
        attendee_name="Alice Smith",
        participants=list(participants),
        question="Shall I book Dr. Lee on Tue 1 Dec at 10:00 for Alice Smith?",
        expires_at=_at(hhmm),
    )


def _reading(
    answer: str, time: str | None = None, emails: tuple[str, ...] = (), name: str | None = None
) -> consent.ApprovalAnswer:
    return consent.ApprovalAnswer(time_named=time, emails_named=list(emails), name_given=name, answer=answer)  # type: ignore[arg-type]


# ---------------------------------------------------------------- consent


async def test_an_exact_short_yes_or_no_is_read_by_rule_in_four_languages() -> None:
    action = _action()
    for said in ("Yes!", "yes please", "Ja, bitte.", "sí", "oui merci", "OK"):
        assert await consent.by_rule(said, action) == "yes", said
    for said in ("No.", "nein danke", "non"):
        assert await consent.by_rule(said, action) == "no", said


async def test_anything_but_an_exact_short_answer_is_left_to_the_next_reader() -> None:
    action = _action()
    for said in ("No problem, go ahead", "yes, but at 11:00", "okay so what about Friday", "sí, resérvalo"):
        assert await consent.by_rule(said, action) is None, said


async def test_the_rule_decides_first_and_the_model_is_asked_only_when_it_cannot() -> None:
    asked: list[str] = []

    async def read(question: str) -> consent.ApprovalAnswer | None:
        asked.append(question)
        return _reading("yes")

    readers = (consent.by_rule, consent.ByModel(read))
    assert await consent.decide(readers, "yes", _action()) == "yes" and asked == []
    assert await consent.decide(readers, "No problem, go ahead", _action()) == "yes"
    assert len(asked) == 1 and "Shall I book Dr. Lee" in asked[0]


async def test_no_reader_able_to_tell_means_something_else() -> None:
    async def cannot(question: str) -> consent.ApprovalAnswer | None:
        return None

    assert await consent.decide((consent.by_rule, consent.ByModel(cannot)), "hmm, maybe", _action()) == "other"


def test_a_yes_that_names_another_time_is_no_yes() -> None:
    assert _reading("yes", time="11:00").decision(_action(hhmm="10:00"), "yes, at 11:00") == "other"
    assert _reading("yes", time="10:00").decision(_action(hhmm="10:00"), "yes, 10:00 is fine") == "yes"


def test_an_address_counts_only_if_the_user_wrote_it() -> None:
    invented = _reading("yes", emails=("alice.smith@example.com",))
    assert invented.decision(_action(), "Yes please") == "yes"
    written = _reading("yes", emails=("bob@example.com",))
    assert written.decision(_action(), "yes, and invite bob@example.com") == "other"
    invited = _reading("yes", emails=("bob@example.com",))
    assert invited.decision(_action(participants=("bob@example.com",)), "yes, with bob@example.com") == "yes"


def test_another_name_changes_a_booking_but_not_a_move() -> None:
    named = _reading("yes", name="Carol Jones")
    assert named.decision(_action("book"), "yes, but under Carol Jones") == "other"
    assert named.decision(_action("reschedule"), "yes, Carol Jones here") == "yes"
    assert named.decision(_action("book"), "yes") == "yes", "a name the user never wrote changes nothing"


def test_a_no_and_something_else_are_not_yes() -> None:
    assert _reading("no").decision(_action(), "no") == "no"
    assert _reading("something_else").decision(_action(), "what about Friday?") == "other"


# ---------------------------------------------------------------- checks


def _answer(message: str, topic: str = "appointments") -> Answer:
    return Answer(topic=topic, message=message)  # type: ignore[arg-type]


def test_an_answer_about_something_else_gets_the_policy_reply() -> None:
    verdict = checks.check_answer(_answer("It will rain.", "other"), Progress(_state()))
    assert verdict.reply == facts.OFF_TOPIC


def test_leaks_are_removed_and_an_answer_of_nothing_but_leaks_is_no_answer() -> None:
    clean = checks.check_answer(_answer('Sure. {"slot_ref": "s1"}'), Progress(_state()))
    assert clean.reply is None and clean.text.strip() == "Sure."
    empty = checks.check_answer(_answer('{"slot_ref": "s1"}'), Progress(_state()))
    assert empty.reply == facts.GAVE_UP


def test_a_claimed_booking_that_was_not_made_ends_the_turn_with_a_question() -> None:
    verdict = checks.check_answer(_answer("You're booked with Dr. Lee."), Progress(_state()))
    assert verdict.reply == facts.GAVE_UP
    made = Progress(_state())
    made.outcomes.append(BookingOutcome(status="confirmed", booking=_booking("10:00")))
    assert checks.check_answer(_answer("You're booked with Dr. Lee."), made).reply is None


def test_a_time_no_offer_holds_sends_the_model_to_fetch_and_an_offered_one_passes() -> None:
    unchecked = checks.check_answer(_answer("Dr. Lee is free at 14:00."), Progress(_state(("10:00",))))
    assert unchecked.force == "fetch_free_slots" and unchecked.reply == facts.ASK_DAY
    offered = checks.check_answer(_answer("10:00 it is then?"), Progress(_state(("10:00",))))
    assert offered.force is None and offered.reply is None and offered.text == "10:00 it is then?"


def test_without_calendars_an_unchecked_time_gets_a_plain_question() -> None:
    state = ConversationState(CalendarDirectory(calendars=[]))
    verdict = checks.check_answer(_answer("How about 3 pm?"), Progress(state))
    assert verdict.force is None and verdict.reply == facts.ASK_DAY


# ---------------------------------------------------------------- grounding


def _fetch(
    minutes: int | None = None, move: str | None = None, calendars: tuple[str, ...] = ("dr-lee",)
) -> FetchFreeSlotsCall:
    return FetchFreeSlotsCall(
        calendar_ids=list(calendars),
        date_from=DAY,
        date_to=DAY,
        duration_minutes=minutes,
        timezone=None,
        preferred_time=None,
        move_booking=move,
    )


def test_a_time_counts_as_a_wish_only_if_the_user_wrote_its_hour() -> None:
    assert grounding.hour_written("3 pm please", "15:00")
    assert grounding.hour_written("um 10 Uhr", "10:00")
    assert not grounding.hour_written("in the afternoon", "14:00")


def test_a_length_counts_only_if_the_user_wrote_it() -> None:
    state = _state()
    assert grounding.grounded(_fetch(45), "Is Dr. Lee free on Tuesday?", state).duration_minutes is None
    assert grounding.grounded(_fetch(45), "I need 45 minutes", state).duration_minutes == 45
    assert grounding.grounded(_fetch(120), "for 2 hours", state).duration_minutes == 120


def test_a_move_searches_the_bookings_own_calendar_for_its_own_length() -> None:
    state = _state(booked=("10:00",))
    label = state.bookings[0].label
    call = grounding.grounded(_fetch(60, move=label, calendars=("dr-patel",)), "move it", state)
    assert call.calendar_ids == ["dr-lee"] and call.duration_minutes == 30 and call.move_booking == label
    assert grounding.grounded(_fetch(move="Dr. Lee, Fri 04 Dec 09:00"), "move it", state).move_booking is None


def _history(*moves: str | None) -> list[dict[str, object]]:
    def fetch(move: str | None) -> dict[str, object]:
        arguments = json.dumps({"calendar_ids": ["dr-lee"], "move_booking": move})
        return {"role": "assistant", "tool_calls": [{"function": {"name": "fetch_free_slots", "arguments": arguments}}]}

    return [fetch(m) for m in moves]


def test_the_booking_being_moved_is_the_one_the_latest_check_named_while_its_offers_live() -> None:
    state = _state(offered=("15:30",), booked=("10:00",))
    label = state.bookings[0].label
    assert grounding.moving(_history(label), state) == state.bookings[0]
    assert grounding.moving(_history(label, None), state) is None, "a later check without a move ends it"
    assert grounding.moving(_history(label), _state(booked=("10:00",))) is None, "no live offers"
    assert (
        grounding.moving(
            [{"role": "assistant", "tool_calls": [{"function": {"name": "fetch_free_slots", "arguments": "{oops"}}]}],
            state,
        )
        is None
    )


def test_a_window_already_listed_is_recognised_and_a_new_day_is_not() -> None:
    state = _state(offered=("10:00", "10:30"))
    assert grounding.already_offered(state, _fetch())
    later = _fetch().model_copy(update={"date_from": DAY + timedelta(days=1), "date_to": DAY + timedelta(days=1)})
    assert not grounding.already_offered(state, later)


# ---------------------------------------------------------------- proposals


def test_one_builder_makes_the_question_and_the_exact_command_of_each_write() -> None:
    state = _state(offered=("15:30",), booked=("10:00",))
    slot, mine = state.slots[0], state.bookings[0]
    action, command = proposals.book(slot, "Alice Smith", [], 900)
    assert action.question == "Shall I book Dr. Lee on Tue 1 Dec at 15:30 for Alice Smith?"
    assert command.tool == "book_meeting" and command.payload["slot_ref"] == "s1" and command.hold is not None
    action, command = proposals.move(mine, slot, LEE, 900)
    assert (
        action.question == "Shall I move your appointment with Dr. Lee from Tue 1 Dec at 10:00 to Tue 1 Dec at 15:30?"
    )
    assert command.tool == "reschedule_booking" and command.payload["new_slot_ref"] == "s1"
    action, command = proposals.cancel(mine, LEE, 900)
    assert action.question == "Shall I cancel your appointment with Dr. Lee on Tue 1 Dec at 10:00?"
    assert command.tool == "cancel_booking" and command.hold is None
    assert action.expires_at > datetime.now(UTC)
