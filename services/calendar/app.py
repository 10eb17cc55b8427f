"""Calendar worker: consumes calendar.requests in group "calendar". Run: python -m services.calendar"""

from __future__ import annotations

import logging
from pathlib import Path

from faststream import FastStream
from faststream.redis import RedisBroker
from pydantic import BaseModel

from runtime.redis import broker as make_broker
from runtime.redis import connect, ensure_groups
from runtime.worker import Handled, Handler, observe, partition_workers
from services.calendar.admin import CalendarAdmin
from services.calendar.service import AvailabilityService
from services.calendar.store import CalendarStore, load_calendars
from shared import streams
from shared.messages import DomainError, Envelope, ErrorCode, Reply
from shared.settings import Settings
from shared.tools import DescribeCalendars, FetchFreeSlots, ImportIcs, UpsertCalendar

log = logging.getLogger(__name__)


def make_handler(service: AvailabilityService, admin: CalendarAdmin | None = None) -> Handler:
    """The calendar worker's dispatch: one message type, one typed payload, one service call."""
    admin = admin or CalendarAdmin(service.store, clock=service.clock)

    async def handle(envelope: Envelope, redelivered: bool) -> Handled:
        result: BaseModel
        match envelope.type:
            case "fetch_free_slots":
                result = await service.fetch_free_slots(envelope, FetchFreeSlots.model_validate(envelope.payload))
            case "describe_calendars":
                DescribeCalendars.model_validate(envelope.payload)
                result = await service.describe(envelope.tenant_id)
            case "upsert_calendar":
                result = await admin.upsert(envelope, UpsertCalendar.model_validate(envelope.payload))
            case "import_ics":
                result = await admin.import_ics(envelope, ImportIcs.model_validate(envelope.payload))
            case _:
                raise DomainError(ErrorCode.unknown_tool, f"The calendar service does not handle {envelope.type}.")
        return Handled(
            reply=Reply(
                correlation_id=envelope.correlation_id,
                message_id=envelope.message_id,
                type=envelope.type,
                result=result.model_dump(mode="json"),
            )
        )

    return handle


def build(settings: Settings) -> tuple[RedisBroker, FastStream]:
    """Compose the worker: broker, store, service, subscribers; groups and demo data on start."""
    broker = make_broker(settings.redis_url, cluster=settings.redis_cluster, graceful_timeout=10.0)
    # pipelined: few connections
    redis = connect(settings.redis_url, cluster=settings.redis_cluster, wait_for_connection=False)
    store = CalendarStore(redis, settings.idempotency_ttl_s)
    workers = partition_workers(
        settings,
        redis,
        streams.CALENDAR_REQUESTS,
        streams.CALENDAR_GROUP,
        make_handler(AvailabilityService(store)),
        forget=frozenset({"import_ics"}),  # the calendar's text is private: keep only its busy blocks
    )
    app = FastStream(broker)
    for worker in workers:
        worker.attach(app)

    @app.on_startup
    async def prepare() -> None:
        await ensure_groups(redis, settings.stream_partitions)
        if settings.seed_calendars_file:
            for calendar in load_calendars(Path(settings.seed_calendars_file)):
                await store.put(calendar, only_if_new=True)

    @app.after_shutdown
    async def close() -> None:
        await redis.aclose()

    observe(app, settings, *workers)
    return broker, app
