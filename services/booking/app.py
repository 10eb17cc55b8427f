"""Booking worker: consumes booking.commands in group "booking". Run: python -m services.booking"""

from __future__ import annotations

import logging

from faststream import FastStream
from faststream.redis import RedisBroker

from runtime import metrics
from runtime.redis import broker as make_broker
from runtime.redis import connect, ensure_groups
from runtime.worker import Handled, Handler, observe, partition_workers
from services.booking import invitations
from services.booking.events import Change, booking_event
from services.booking.service import BookingService
from services.booking.store import BookingStore
from shared import streams
from shared.messages import DomainError, Envelope, ErrorCode, Reply
from shared.settings import Settings
from shared.tools import BookMeeting, CancelBooking, ListMyBookings, RescheduleBooking


def make_handler(service: BookingService) -> Handler:
    """The booking worker's dispatch: one message type, one typed payload, one service call."""

    async def handle(envelope: Envelope, redelivered: bool) -> Handled:
        change: Change
        match envelope.type:
            case "book_meeting":
                change = await service.book(envelope, BookMeeting.model_validate(envelope.payload))
            case "cancel_booking":
                change = await service.cancel(envelope, CancelBooking.model_validate(envelope.payload))
            case "reschedule_booking":
                change = await service.reschedule(envelope, RescheduleBooking.model_validate(envelope.payload))
            case "list_my_bookings":
                listed = await service.list_mine(envelope, ListMyBookings.model_validate(envelope.payload))
                return Handled(reply=Reply.ok_json(envelope, listed.model_dump_json()))
            case _:
                raise DomainError(ErrorCode.unknown_tool, f"The booking service does not handle {envelope.type}.")
        events: list[tuple[str, str]] = []
        if change.applied:  # counted once per effect: replays and redeliveries do not count
            metrics.BOOKINGS.labels(change.outcome.status).inc()
        # A reclaimed command may have written before its worker died unpublished: publish its
        # event again (at-least-once, same event_id). A duplicate that merely replays a write
        # another delivery published stays silent.
        if change.meta is not None and (change.applied or redelivered):
            events.append(booking_event(envelope.tenant_id, envelope.idempotency_key, change))
        # the outcome as the write stored it, spliced into the reply without parsing it again
        return Handled(reply=Reply.ok_json(envelope, change.outcome_json()), events=events)

    return handle


def build(settings: Settings) -> tuple[RedisBroker, FastStream]:
    """Compose the worker: broker, store, service, subscribers; groups and scripts ensured on start."""
    # per-batch access logs ("Received"/"Processed") only at DEBUG: at thousands of commands a
    # second they cost more than they tell
    broker = make_broker(
        settings.redis_url, cluster=settings.redis_cluster, graceful_timeout=10.0, log_level=logging.DEBUG
    )
    # pipelined: few connections
    redis = connect(settings.redis_url, cluster=settings.redis_cluster, wait_for_connection=False)
    store = BookingStore(redis, settings.idempotency_ttl_s)
    service = BookingService(store)
    handler = make_handler(service)
    workers = partition_workers(settings, redis, streams.BOOKING_COMMANDS, streams.BOOKING_GROUP, handler)
    app = FastStream(broker)
    for worker in workers:
        worker.attach(app)
    if settings.booking_invitations:  # after the replies, off their path (services/booking/invitations.py)
        invitations.consumer(settings, redis).attach(app)

    @app.on_startup
    async def prepare() -> None:
        await ensure_groups(redis, settings.stream_partitions)
        await store.load_scripts()

    @app.after_shutdown
    async def close() -> None:
        await redis.aclose()

    observe(app, settings, *workers)
    return broker, app
