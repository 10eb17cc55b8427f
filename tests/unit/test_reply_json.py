"""A reply whose result is spliced in as JSON (`Reply.ok_json`) is the very JSON the Reply model
writes, whatever the ids hold, and reads back as the same Reply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.domain import Booking, BookingOutcome, BookingStatus
from shared.messages import Envelope, Reply

START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OUTCOME = BookingOutcome(
    status="confirmed",
    booking=Booking(
        booking_id="b1",
        tenant_id="demo",
        calendar_id="dr-lee",
        user_id="alice",
        attendee_name='Ann "the" Lee \u00e9\u2028',
        participants=["ann@example.com"],
        start=START,
        end=START + timedelta(minutes=30),
        status=BookingStatus.confirmed,
        created_at=START - timedelta(days=1),
    ),
)


@given(correlation_id=st.text(min_size=1, max_size=40), message_id=st.text(max_size=40))
def test_a_spliced_reply_is_the_json_the_reply_model_writes(correlation_id: str, message_id: str) -> None:
    envelope = Envelope(
        message_id=message_id,
        idempotency_key="k",
        correlation_id=correlation_id,
        tenant_id="demo",
        conversation_id="c1",
        user_id="alice",
        type="book_meeting",
        payload={},
        reply_to="replies:chat-1",
    )
    spliced = Reply.ok_json(envelope, OUTCOME.model_dump_json())
    built = Reply(
        correlation_id=correlation_id,
        message_id=message_id,
        type="book_meeting",
        result=OUTCOME.model_dump(mode="json"),
    )
    assert spliced == built.model_dump_json()
    assert Reply.model_validate_json(spliced) == built
