"""The model's tools: offered from the state with enums, strict schemas generated from the
models, and whatever arguments a model sends, parsing returns a call or a typed error."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.chat import tools
from services.chat.state import ConversationState
from shared.messages import ErrorCode, ToolError
from shared.tools import ToolArgs
from testkit.chat_state import BERLIN, conversation_state

TEN = datetime(2026, 12, 1, 10, 0, tzinfo=BERLIN)


def state(offers: int = 0, bookings: int = 0) -> ConversationState:
    """Offers every 30 minutes from 10:00, bookings every hour from 10:00 the next day."""
    return conversation_state(
        offered=[TEN + timedelta(minutes=30 * i) for i in range(offers)],
        booked=[TEN + timedelta(days=1, hours=i) for i in range(bookings)],
    )


def names(offer: tools.Offer) -> set[str]:
    return set(offer.allowed)


def test_without_offers_or_bookings_only_asking_listing_and_answering_are_offered() -> None:
    assert names(tools.offer(state(), all_listed=False)) == {"fetch_free_slots", "list_my_bookings", "answer"}


def test_offers_bring_book_meeting_and_bookings_bring_cancel_and_with_offers_reschedule() -> None:
    assert "book_meeting" in names(tools.offer(state(offers=2), all_listed=False))
    assert names(tools.offer(state(bookings=1), all_listed=False)) >= {"cancel_booking"}
    assert "reschedule_booking" not in names(tools.offer(state(bookings=1), all_listed=False))
    assert "reschedule_booking" in names(tools.offer(state(offers=1, bookings=1), all_listed=False))


def test_the_enums_are_the_states_labels_in_a_strict_schema() -> None:
    offer = tools.offer(state(offers=2, bookings=1), all_listed=False)
    by_name = {d["function"]["name"]: d["function"] for d in offer.definitions}
    book = by_name["book_meeting"]
    assert book["strict"] is True and book["parameters"]["additionalProperties"] is False
    assert book["parameters"]["properties"]["slot"]["enum"] == [
        "Dr. Lee, Tue 01 Dec 10:00",
        "Dr. Lee, Tue 01 Dec 10:30",
    ]
    assert by_name["cancel_booking"]["parameters"]["properties"]["booking"]["enum"] == ["Dr. Lee, Wed 02 Dec 10:00"]
    assert by_name["fetch_free_slots"]["parameters"]["properties"]["calendar_ids"]["items"]["enum"] == ["dr-lee"]


def test_a_single_value_enum_stays_an_enum() -> None:
    offer = tools.offer(state(offers=1), all_listed=False)
    book = next(d for d in offer.definitions if d["function"]["name"] == "book_meeting")
    assert book["function"]["parameters"]["properties"]["slot"]["enum"] == ["Dr. Lee, Tue 01 Dec 10:00"]


def test_all_listed_keeps_one_tool_list_and_only_narrows_what_may_be_called() -> None:
    empty, full = tools.offer(state(), all_listed=True), tools.offer(state(offers=1, bookings=1), all_listed=True)
    assert [d["function"]["name"] for d in empty.definitions] == [d["function"]["name"] for d in full.definitions]
    assert "book_meeting" not in empty.allowed and "book_meeting" in full.allowed


def test_a_forced_tool_is_the_only_one_allowed() -> None:
    assert names(tools.offer(state(offers=1), all_listed=True, only="fetch_free_slots")) == {"fetch_free_slots"}


def test_a_slot_outside_the_enum_an_unknown_tool_and_a_tool_not_offered_now_are_typed_errors() -> None:
    offer = tools.offer(state(offers=1), all_listed=False)
    args = {"slot": "Dr. Lee, Tue 01 Dec 16:30", "attendee_name": None, "participants": []}
    wrong = tools.parse(offer, "book_meeting", json.dumps(args))
    assert isinstance(wrong, ToolError) and wrong.code is ErrorCode.invalid_arguments
    assert tools.parse(offer, "cancel_booking", json.dumps({"booking": "x"})).code is ErrorCode.unknown_tool  # type: ignore[union-attr]
    assert tools.parse(offer, "describe_calendars", "{}").code is ErrorCode.unknown_tool  # type: ignore[union-attr]
    ok = tools.parse(offer, "book_meeting", json.dumps({**args, "slot": "Dr. Lee, Tue 01 Dec 10:00"}))
    assert isinstance(ok, tools.BookMeetingCall) and ok.slot == "Dr. Lee, Tue 01 Dec 10:00"


def test_fetch_keeps_the_worker_contract_apart_from_the_models_extras() -> None:
    offer = tools.offer(state(bookings=1), all_listed=False)
    args = {
        "calendar_ids": ["dr-lee"],
        "date_from": "2026-12-02",
        "date_to": "2026-12-02",
        "duration_minutes": None,
        "timezone": None,
        "preferred_time": "11:00",
        "move_booking": "Dr. Lee, Wed 02 Dec 10:00",
    }
    call = tools.parse(offer, "fetch_free_slots", json.dumps(args))
    assert isinstance(call, tools.FetchFreeSlotsCall) and call.move_booking == "Dr. Lee, Wed 02 Dec 10:00"
    assert set(call.command().model_dump()) == {"calendar_ids", "date_from", "date_to", "duration_minutes", "timezone"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["calendar_ids", "date_from", "slot", "booking", "new_slot", "attendee_name", "participants", "topic", "extra"]
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from([t.name for t in tools.CHAT_TOOLS] + ["teleport", ""]),
    args=st.dictionaries(field_names, json_values, max_size=8),
)
def test_any_arguments_parse_to_a_call_or_a_typed_error(name: str, args: dict[str, object]) -> None:
    result = tools.parse(tools.offer(state(offers=2, bookings=1), all_listed=True), name, json.dumps(args))
    assert isinstance(result, ToolArgs | ToolError)
    if isinstance(result, ToolError):
        assert result.code in (ErrorCode.unknown_tool, ErrorCode.invalid_arguments) and result.message


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=200))
def test_garbage_argument_text_is_an_invalid_arguments_error(raw: str) -> None:
    result = tools.parse(tools.offer(state(offers=1), all_listed=False), "book_meeting", raw)
    assert isinstance(result, ToolError | tools.BookMeetingCall)
