"""Booking worker: consumes booking.commands in group "booking". Run: python -m services.booking"""

from __future__ import annotations

import json

from faststream import FastStream
from faststream.redis import RedisBroker
from pydantic import BaseModel

from services.booking.service import BookingService
from services.booking.store import BookingStore
from shared import streams
from shared.domain import BookingOutcome
from shared.messages import DomainError, Envelope, ErrorCode, Reply
from shared.redis import connect
from shared.settings import Settings
from shared.tools import BookMeeting, CancelBooking, ListMyBookings, RescheduleBooking
from shared.worker import Handled, Handler, StreamWorker

EVENT_TYPES = {"confirmed": "created", "cancelled": "cancelled", "rescheduled": "rescheduled"}


def booking_event(envelope: Envelope, outcome: BookingOutcome) -> tuple[str, str]:
    """A booking.events entry; `event_id` is stable across redeliveries so consumers can dedupe."""
    kind = EVENT_TYPES[outcome.status]
    event = {
        "event_id": f"{envelope.idempotency_key}:{kind}",
        "type": kind,
        "tenant_id": envelope.tenant_id,
        "causation_id": envelope.message_id,
        "booking": outcome.booking.model_dump(mode="json"),
    }
    return streams.BOOKING_EVENTS, json.dumps(event)


def make_handler(service: BookingService) -> Handler:
    async def handle(envelope: Envelope, redelivered: bool) -> Handled:
        result: BaseModel
        created = False
        match envelope.type:
            case "book_meeting":
                result, created = await service.book(envelope, BookMeeting.model_validate(envelope.payload))
            case "cancel_booking":
                result, created = await service.cancel(envelope, CancelBooking.model_validate(envelope.payload))
            case "reschedule_booking":
                result, created = await service.reschedule(envelope, RescheduleBooking.model_validate(envelope.payload))
            case "list_my_bookings":
                result = await service.list_mine(envelope, ListMyBookings.model_validate(envelope.payload))
            case _:
                raise DomainError(ErrorCode.unknown_tool, f"The booking service does not handle {envelope.type}.")
        # A redelivered command may have committed before its worker died: publish its event
        # again (at-least-once; consumers dedupe on event_id).
        events = (
            [booking_event(envelope, result)] if isinstance(result, BookingOutcome) and (created or redelivered) else []
        )
        reply = Reply(
            correlation_id=envelope.correlation_id,
            message_id=envelope.message_id,
            type=envelope.type,
            result=result.model_dump(mode="json"),
        )
        return Handled(reply=reply, events=events)

    return handle


def build(settings: Settings) -> tuple[RedisBroker, FastStream]:
    """Compose the worker: broker, store, service, subscribers; groups ensured on start."""
    broker = RedisBroker(settings.redis_url, graceful_timeout=10.0)
    redis = connect(settings.redis_url)
    service = BookingService(BookingStore(redis, settings.idempotency_ttl_s))
    StreamWorker(settings, redis, streams.BOOKING_COMMANDS, streams.BOOKING_GROUP, make_handler(service)).register(
        broker
    )
    app = FastStream(broker)

    @app.on_startup
    async def prepare() -> None:
        await streams.ensure_groups(redis)

    @app.after_shutdown
    async def close() -> None:
        await redis.aclose()

    return broker, app
