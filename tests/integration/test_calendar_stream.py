"""The calendar worker over the real stream and consumer group: fetch, ICS import, upsert."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from runtime.redis import as_text
from services.calendar.service import MAX_SLOTS
from services.chat.toolbus import ToolBus
from shared import streams
from shared.domain import BusyImported, CalendarDirectory, CalendarSaved, FreeSlots
from shared.keys import TenantKeys
from shared.messages import Envelope, MessageType, Reply
from shared.settings import Settings
from shared.tools import MAX_ICS_CHARS
from testkit.calendar_days import BERLIN, at, next_weekday

NEW_YORK = ZoneInfo("America/New_York")
DEMO = json.loads(Path("services/calendar/demo_calendars.json").read_text())
LEE = next(c for c in DEMO if c["calendar_id"] == "dr-lee")


@pytest.fixture
async def bus(settings: Settings, workers: None, redis: Redis) -> AsyncIterator[ToolBus]:
    tool_bus = ToolBus(redis, f"test-bus-{uuid.uuid4().hex[:6]}", block_ms=100, partitions=settings.stream_partitions)
    await tool_bus.start()
    yield tool_bus
    await tool_bus.stop()


def message(
    bus: ToolBus, kind: MessageType, payload: dict[str, Any], key: str | None = None, **fields: Any
) -> Envelope:
    values: dict[str, Any] = {
        "idempotency_key": key or uuid.uuid4().hex,
        "correlation_id": f"call_{uuid.uuid4().hex[:8]}",
        "tenant_id": "demo",
        "conversation_id": "conv-admin",
        "user_id": "alice",
        "type": kind,
        "payload": payload,
        "reply_to": bus.reply_to,
    }
    values.update(fields)
    return Envelope(**values)


async def ask(bus: ToolBus, kind: MessageType, payload: dict[str, Any], **fields: Any) -> Reply:
    return await bus.request(message(bus, kind, payload, **fields), 5)


async def free_slots(
    bus: ToolBus, day: date, calendars: tuple[str, ...] = ("dr-lee",), minutes: int | None = None
) -> FreeSlots:
    payload = {
        "calendar_ids": list(calendars),
        "date_from": day.isoformat(),
        "date_to": day.isoformat(),
        "duration_minutes": minutes,
        "timezone": None,
    }
    reply = await ask(bus, "fetch_free_slots", payload)
    assert reply.error is None, reply.error
    return FreeSlots.model_validate(reply.result)


def berlin_times(answer: FreeSlots) -> list[str]:
    return [s.start.astimezone(BERLIN).strftime("%H:%M") for s in answer.slots]


def vcalendar(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{e}\r\nEND:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n"


def busy_event(start: datetime, end: datetime, uid: str = "evt-1@clinic.example") -> str:
    fmt = "%Y%m%dT%H%M%S"
    return "\r\n".join(
        (
            f"UID:{uid}",
            "SUMMARY:Therapy session with Jane Doe",
            "ATTENDEE;CN=Jane Doe:mailto:jane.doe@example.com",
            "LOCATION:Room 4",
            f"DTSTART;TZID=Europe/Berlin:{start.strftime(fmt)}",
            f"DTEND;TZID=Europe/Berlin:{end.strftime(fmt)}",
        )
    )


async def import_ics(bus: ToolBus, text: str, calendar: str = "dr-lee", source: str = "default") -> Reply:
    return await ask(bus, "import_ics", {"calendar_id": calendar, "ics": text, "source": source})


# --- fetch_free_slots ---


async def test_fetch_over_the_stream_answers_free_starts_of_the_day_in_the_calendars_zone(bus: ToolBus) -> None:
    day = next_weekday(2)
    answer = await free_slots(bus, day)
    assert berlin_times(answer)[:3] == ["09:00", "09:30", "10:00"]
    assert len(answer.slots) <= MAX_SLOTS and not answer.more_available  # a whole working day fits
    assert berlin_times(answer)[-1] == "16:30"
    assert all(s.start.astimezone(BERLIN).date() == day for s in answer.slots)
    assert answer.timezone == "Europe/Berlin"


async def test_an_unknown_calendar_is_answered_with_a_typed_error(bus: ToolBus) -> None:
    payload = {"calendar_ids": ["dr-who"], "date_from": "2026-12-07", "date_to": "2026-12-07"}
    reply = await ask(bus, "fetch_free_slots", {**payload, "duration_minutes": None, "timezone": None})
    assert reply.error is not None and reply.error.code == "unknown_calendar"
    assert "dr-lee" in reply.error.message


async def test_intersection_of_dr_lee_and_dr_patel_offers_only_their_common_free_time(bus: ToolBus) -> None:
    day = next_weekday(2, weekdays=(0, 2))  # Monday or Wednesday: both doctors work
    both = await free_slots(bus, day, ("dr-lee", "dr-patel"))
    assert both.slots and not both.more_available
    for slot in both.slots:
        berlin, new_york = slot.start.astimezone(BERLIN), slot.start.astimezone(NEW_YORK)
        assert at(day, 13) <= berlin and berlin + timedelta(minutes=30) <= at(day, 17)
        assert at(day, 8, zone=NEW_YORK) <= new_york and new_york + timedelta(minutes=30) <= at(day, 16, zone=NEW_YORK)


async def test_describe_lists_the_tenants_calendars(bus: ToolBus) -> None:
    reply = await ask(bus, "describe_calendars", {})
    assert reply.error is None
    names = [c.calendar_id for c in CalendarDirectory.model_validate(reply.result).calendars]
    assert names == ["dr-lee", "dr-patel"]


# --- import_ics ---


async def test_an_imported_busy_event_hides_the_slots_it_covers(bus: ToolBus) -> None:
    day = next_weekday(2)
    reply = await import_ics(bus, vcalendar(busy_event(at(day, 10), at(day, 11))))
    assert reply.error is None, reply.error
    assert BusyImported.model_validate(reply.result).busy_blocks == 1
    assert berlin_times(await free_slots(bus, day))[:4] == ["09:00", "09:30", "11:00", "11:30"]


async def test_imported_events_leave_no_titles_attendees_or_uids_in_stored_data(bus: ToolBus, redis: Redis) -> None:
    day = next_weekday(2)
    assert (await import_ics(bus, vcalendar(busy_event(at(day, 10), at(day, 11))))).error is None
    stored = await stored_data(redis)
    assert TenantKeys("demo").external_busy("dr-lee") in stored
    for secret in ("Jane", "jane.doe", "Therapy", "Room 4", "evt-1", "clinic.example"):
        assert secret not in repr(stored)


async def test_the_imported_calendar_text_is_deleted_from_the_request_stream_once_handled(
    bus: ToolBus, redis: Redis
) -> None:
    day = next_weekday(2)
    assert (await import_ics(bus, vcalendar(busy_event(at(day, 10), at(day, 11))))).error is None
    await free_slots(bus, day)  # other requests stay in the stream as usual
    entries = await redis.xrange(streams.partition_of(streams.CALENDAR_REQUESTS, "demo", bus.partitions))
    assert entries and all(b"import_ics" not in fields[streams.DATA_FIELD.encode()] for _, fields in entries)
    assert "Jane" not in repr(entries)


async def stored_data(redis: Redis) -> dict[str, Any]:
    """Every key but the message streams (which carry commands, not state), with its value."""
    data: dict[str, Any] = {}
    async for raw in redis.scan_iter(count=500):
        key = as_text(raw)
        match as_text(await redis.type(key)):
            case "string":
                data[key] = await redis.get(key)
            case "hash":
                data[key] = await redis.hgetall(key)
            case "set":
                data[key] = await redis.smembers(key)
            case "zset":
                data[key] = await redis.zrange(key, 0, -1, withscores=True)
    return data


async def test_a_new_import_of_a_source_replaces_its_blocks_and_keeps_other_sources(bus: ToolBus) -> None:
    day = next_weekday(2)
    assert (await import_ics(bus, vcalendar(busy_event(at(day, 9), at(day, 10))), source="work")).error is None
    assert (await import_ics(bus, vcalendar(busy_event(at(day, 10), at(day, 11))), source="home")).error is None
    assert (await import_ics(bus, vcalendar(busy_event(at(day, 11), at(day, 12))), source="work")).error is None
    assert berlin_times(await free_slots(bus, day))[:3] == ["09:00", "09:30", "13:00"]


async def test_a_broken_ics_file_is_refused_with_a_typed_error(bus: ToolBus) -> None:
    reply = await import_ics(bus, "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:nope\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert reply.error is not None and reply.error.code == "invalid_arguments"


async def test_an_ics_file_over_the_size_limit_is_refused(bus: ToolBus, redis: Redis) -> None:
    reply = await import_ics(bus, "X" * (MAX_ICS_CHARS + 1))
    assert reply.error is not None and reply.error.code == "invalid_arguments"
    assert await redis.exists(TenantKeys("demo").external_busy("dr-lee")) == 0


async def test_importing_into_an_unknown_calendar_is_a_typed_error(bus: ToolBus) -> None:
    reply = await import_ics(bus, vcalendar(), calendar="dr-who")
    assert reply.error is not None and reply.error.code == "unknown_calendar"


async def test_a_tenant_in_the_import_payload_is_refused(bus: ToolBus) -> None:
    reply = await ask(bus, "import_ics", {"calendar_id": "dr-lee", "ics": vcalendar(), "tenant_id": "demo"})
    assert reply.error is not None and reply.error.code == "invalid_arguments"


# --- upsert_calendar ---


def lee_with(**changes: Any) -> dict[str, Any]:
    return {**LEE, **changes}


async def test_upserted_hours_show_in_the_next_fetch(bus: ToolBus) -> None:
    day = next_weekday(2)
    hours = {d: [{"start": "15:00", "end": "16:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}
    reply = await ask(bus, "upsert_calendar", lee_with(weekly_hours=hours))
    assert reply.error is None, reply.error
    saved = CalendarSaved.model_validate(reply.result)
    assert not saved.created and saved.calendar.tenant_id == "demo"
    assert berlin_times(await free_slots(bus, day)) == ["15:00", "15:30"]


async def test_a_new_calendar_needs_no_tenant_in_its_payload_and_is_bookable_at_once(bus: ToolBus) -> None:
    room = {k: v for k, v in LEE.items() if k != "tenant_id"} | {"calendar_id": "room-1", "name": "Room 1"}
    reply = await ask(bus, "upsert_calendar", room)
    assert reply.error is None, reply.error
    assert CalendarSaved.model_validate(reply.result).created
    assert (await free_slots(bus, next_weekday(2), ("room-1",))).slots


async def test_a_payload_naming_another_tenant_is_refused_and_stores_nothing(bus: ToolBus, redis: Redis) -> None:
    reply = await ask(bus, "upsert_calendar", lee_with(tenant_id="acme", calendar_id="spy"))
    assert reply.error is not None and reply.error.code == "invalid_arguments"
    assert await redis.exists(TenantKeys("acme").calendar("spy"), TenantKeys("demo").calendar("spy")) == 0


async def test_a_slot_length_off_the_granularity_is_refused(bus: ToolBus) -> None:
    reply = await ask(bus, "upsert_calendar", lee_with(slot_minutes=45, granularity_minutes=30))
    assert reply.error is not None and reply.error.code == "invalid_arguments"


async def test_a_malformed_calendar_is_refused_naming_the_field(bus: ToolBus) -> None:
    reply = await ask(bus, "upsert_calendar", lee_with(timezone="Europe/Atlantis"))
    assert reply.error is not None and reply.error.code == "invalid_arguments"
    assert "timezone" in reply.error.message


async def test_a_redelivered_old_upsert_does_not_undo_a_newer_one(bus: ToolBus) -> None:
    day = next_weekday(2)
    early = {d: [{"start": "09:00", "end": "10:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}
    late = {d: [{"start": "16:00", "end": "17:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}
    first = message(bus, "upsert_calendar", lee_with(weekly_hours=early), key="upsert-1")
    assert (await bus.request(first, 5)).error is None
    assert (await ask(bus, "upsert_calendar", lee_with(weekly_hours=late), key="upsert-2")).error is None
    again = await bus.request(first.model_copy(update={"message_id": uuid.uuid4().hex}), 5)
    assert again.error is None and again.result == (await bus.request(first, 5)).result
    assert berlin_times(await free_slots(bus, day)) == ["16:00", "16:30"]


async def test_an_idempotency_key_reused_with_another_calendar_is_a_conflict(bus: ToolBus) -> None:
    assert (await ask(bus, "upsert_calendar", lee_with(name="Dr. Lee"), key="k")).error is None
    reply = await ask(bus, "upsert_calendar", lee_with(name="Dr. Leigh"), key="k")
    assert reply.error is not None and reply.error.code == "idempotency_conflict"
