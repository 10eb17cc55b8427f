"""The .ics invitations of booking changes, rendered off the booking's critical path.

A consumer group of its own (`invitations`) on booking.events renders each event's invitation
from the facts the event carries and stores it where users and mailers fetch it: the booking's
invitation hash (`TenantKeys.invitation`: its current version) and the tenant's invitations
stream (`TenantKeys.invitations`: one entry per stored version, a mailer's outbox). One Lua
script stores both, once: events arrive at least once (a reclaimed command republishes its
event, a killed consumer's entries are claimed again), and a copy of a version already stored,
or an older version arriving late, changes nothing. So every applied booking gets its
invitation exactly once in effect.

Runs inside every booking worker process (BOOKING_INVITATIONS=true, the default), or alone:
python -m services.booking.invitations
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging

from faststream import FastStream
from faststream.redis import RedisBroker
from pydantic import BaseModel
from redis.asyncio import Redis

from runtime import metrics
from runtime.logs import setup_logging
from runtime.redis import as_text, connect, ensure_groups
from runtime.redis import broker as make_broker
from runtime.worker import EventConsumer, observe
from services.booking import ics
from services.booking.events import BookingEvent
from services.booking.pipeline import AutoPipeline
from services.booking.scripts import StoreInvitation
from shared import streams
from shared.keys import TenantKeys
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)
OUTBOX_MAXLEN = 100_000


class IcsAttachment(BaseModel):
    """An iCalendar invitation, ready to attach to an e-mail."""

    content_type: str
    filename: str
    text: str


def render(event: BookingEvent, organizer: str = ics.ORGANIZER) -> IcsAttachment:
    """The invitation of one booking version: METHOD:CANCEL for a cancellation, else REQUEST."""
    method = "CANCEL" if event.type == "cancelled" else "REQUEST"
    text = ics.invite(
        event.booking,
        method=method,
        sequence=event.sequence,
        stamp=event.occurred_at,
        calendar_name=event.calendar_name,
        organizer=organizer,
    )
    return IcsAttachment.model_construct(
        content_type=f"{ics.MEDIA_TYPE}; charset=utf-8; method={method}",
        filename="cancel.ics" if method == "CANCEL" else "invite.ics",
        text=text,
    )


class Invitations:
    """Renders and stores invitations; `apply` is the consumer's handler for one event entry."""

    def __init__(self, redis: Redis, organizer: str = ics.ORGANIZER) -> None:
        self.redis = redis
        self.organizer = organizer
        self.auto = AutoPipeline(redis)

    async def apply(self, data: bytes) -> None:
        """Store the invitation of one booking.events entry (its JSON); ValueError if it is none."""
        event = BookingEvent.model_validate_json(data)
        invite = render(event, self.organizer)
        keys = TenantKeys(event.tenant_id)
        stored = await self.auto.script(
            StoreInvitation(
                invitation=keys.invitation(event.booking.booking_id),
                outbox=keys.invitations(),
                event_id=event.event_id,
                sequence=event.sequence,
                content_type=invite.content_type,
                filename=invite.filename,
                text=invite.text,
                maxlen=OUTBOX_MAXLEN,
                booking_id=event.booking.booking_id,
            )
        )
        if stored:
            metrics.INVITATIONS.inc()

    async def fetch(self, tenant_id: str, booking_id: str) -> IcsAttachment | None:
        """The booking's current invitation, if rendered yet."""
        raw = await self.redis.hmget(TenantKeys(tenant_id).invitation(booking_id), "content_type", "filename", "text")
        if any(v is None for v in raw):
            return None
        content_type, filename, text = (as_text(v) for v in raw if v is not None)
        return IcsAttachment(content_type=content_type, filename=filename, text=text)


def consumer(settings: Settings, redis: Redis) -> EventConsumer:
    """The invitations group's consumer of booking.events in this process."""
    invitations = Invitations(redis, settings.ics_organizer)
    return EventConsumer(settings, redis, streams.BOOKING_EVENTS, streams.INVITATIONS_GROUP, invitations.apply)


def build(settings: Settings) -> tuple[RedisBroker, FastStream]:
    """An invitations-only process."""
    broker = make_broker(
        settings.redis_url, cluster=settings.redis_cluster, graceful_timeout=10.0, log_level=logging.DEBUG
    )
    # pipelined: few connections
    redis = connect(settings.redis_url, cluster=settings.redis_cluster, wait_for_connection=False)
    worker = consumer(settings, redis)
    app = FastStream(broker)

    @app.on_startup
    async def prepare() -> None:
        await ensure_groups(redis, settings.stream_partitions)

    worker.attach(app)

    @app.after_shutdown
    async def close() -> None:
        await redis.aclose()

    observe(app, settings, worker)
    return broker, app


if __name__ == "__main__":
    setup_logging()
    _, app = build(get_settings())
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(app.run())
    else:
        asyncio.run(app.run())
