"""The availability service on real Redis with a frozen clock: reasons, caps, zones, typed errors.

The clock stands still on Monday 7 Dec 2026, 08:00 in Berlin, so every answer is exact.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from services.calendar.service import MAX_SLOTS, MAX_WINDOW_DAYS, AvailabilityService
from services.calendar.store import CalendarStore, load_calendars
from shared.domain import FreeSlots, NoSlotReason
from shared.keys import TenantKeys
from shared.messages import DomainError, Envelope, ErrorCode
from shared.tools import FetchFreeSlots

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY = date(2026, 12, 7)
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=BERLIN)
DEMO = Path("services/calendar/demo_calendars.json")


def offer_fields(offers: dict[bytes, bytes]) -> set[str]:
    """The `calendar|start` fields of a conversation's offers hash (not its refs)."""
    return {f.decode() for f in offers if f[:1].isalpha() and not f.startswith((b"ref|", b"at|"))}


def next_start(answer: FreeSlots) -> datetime | None:
    return None if answer.next_available is None else answer.next_available.start


def frozen_at(moment: datetime) -> type[datetime]:
    """A datetime class whose now() is always `moment`: the services take the clock as a class."""

    class Clock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Clock:
            return cls.fromtimestamp(moment.timestamp(), tz)

    return Clock


@pytest.fixture
async def store(redis: Redis) -> AsyncIterator[CalendarStore]:
    calendar_store = CalendarStore(redis)
    for calendar in load_calendars(DEMO):
        await calendar_store.put(calendar)
    yield calendar_store


@pytest.fixture
def service(store: CalendarStore) -> AvailabilityService:
    return AvailabilityService(store, clock=frozen_at(NOW))


def envelope(**payload: Any) -> Envelope:
    return Envelope(
        idempotency_key=uuid.uuid4().hex,
        correlation_id="call_test",
        tenant_id="demo",
        conversation_id="conv-1",
        user_id="alice",
        type="fetch_free_slots",
        payload=payload,
        reply_to="replies:test",
    )


async def fetch(
    service: AvailabilityService,
    first: date,
    last: date | None = None,
    *,
    calendars: tuple[str, ...] = ("dr-lee",),
    minutes: int | None = None,
    zone: str | None = None,
) -> FreeSlots:
    args = FetchFreeSlots(
        calendar_ids=list(calendars), date_from=first, date_to=last or first, duration_minutes=minutes, timezone=zone
    )
    return await service.fetch_free_slots(envelope(**args.model_dump(mode="json")), args)


def local(answer: FreeSlots, zone: ZoneInfo = BERLIN) -> list[str]:
    return [s.start.astimezone(zone).strftime("%a %H:%M") for s in answer.slots]


async def block(redis: Redis, start: datetime, end: datetime, calendar: str = "dr-lee") -> None:
    key = TenantKeys("demo").external_busy(calendar)
    await redis.zadd(key, {f"{int(end.timestamp())}|test:{int(start.timestamp())}": int(start.timestamp())})


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


# --- answers with slots ---


async def test_answer_holds_the_first_slots_in_the_calendars_zone_and_says_more_are_available(
    service: AvailabilityService,
) -> None:
    answer = await fetch(service, MONDAY + timedelta(days=1), MONDAY + timedelta(days=3))
    assert len(answer.slots) == MAX_SLOTS and answer.more_available
    assert local(answer)[:3] == ["Tue 09:00", "Tue 09:30", "Tue 10:00"]
    assert answer.timezone == "Europe/Berlin" and answer.duration_minutes == 30
    assert answer.reason is None and answer.next_available is None
    assert [s.ref for s in answer.slots] == [f"s{i}" for i in range(1, MAX_SLOTS + 1)]


async def test_a_slot_offered_again_keeps_its_ref_and_new_slots_get_new_ones(service: AvailabilityService) -> None:
    tuesday = await fetch(service, MONDAY + timedelta(days=1))
    again = await fetch(service, MONDAY + timedelta(days=1))
    wednesday = await fetch(service, MONDAY + timedelta(days=2))
    assert again.slots == tuesday.slots
    count = len(tuesday.slots)
    assert [s.ref for s in wednesday.slots] == [f"s{i}" for i in range(count + 1, count + len(wednesday.slots) + 1)]


async def test_answer_carries_free_starts_only(service: AvailabilityService) -> None:
    payload = (await fetch(service, MONDAY + timedelta(days=1))).model_dump(mode="json")
    assert set(payload) == {"timezone", "duration_minutes", "slots", "more_available", "reason", "next_available"}
    assert all(set(slot) == {"ref", "start"} for slot in payload["slots"])


async def test_a_small_remainder_is_answered_whole_without_more_available(service: AvailabilityService) -> None:
    answer = await fetch(service, MONDAY, minutes=180)  # 3 h fit 09:00-12:00 once and 13:00-17:00 thrice
    assert local(answer) == ["Mon 09:00", "Mon 13:00", "Mon 13:30", "Mon 14:00"]
    assert not answer.more_available


async def test_minimum_notice_hides_starts_too_close_to_now(service: AvailabilityService) -> None:
    late = AvailabilityService(service.store, clock=frozen_at(at(MONDAY, 10, 10)))
    assert local(await fetch(late, MONDAY))[0] == "Mon 11:30"


async def test_busy_blocks_and_their_neighbours_are_left_out(service: AvailabilityService, redis: Redis) -> None:
    day = MONDAY + timedelta(days=1)
    await block(redis, at(day, 9, 15), at(day, 10, 0))
    assert local(await fetch(service, day))[:3] == ["Tue 10:00", "Tue 10:30", "Tue 11:00"]


async def test_a_display_zone_shows_the_same_instants_at_its_own_offset(service: AvailabilityService) -> None:
    berlin = await fetch(service, MONDAY + timedelta(days=1))
    shown = await fetch(service, MONDAY + timedelta(days=1), zone="Asia/Tokyo")
    assert shown.timezone == "Asia/Tokyo"
    # Tokyo's Tuesday runs from Monday 16:00 to Tuesday 16:00 in Berlin
    assert local(shown, BERLIN)[:3] == ["Mon 16:00", "Mon 16:30", "Tue 09:00"]
    assert all(s.start.utcoffset() == timedelta(hours=9) for s in shown.slots)
    assert berlin.slots[0].start == shown.slots[2].start


async def test_intersection_offers_only_times_both_doctors_are_free(service: AvailabilityService) -> None:
    answer = await fetch(service, MONDAY + timedelta(days=2), calendars=("dr-lee", "dr-patel"))  # Wednesday
    assert local(answer) == ["Wed 14:00", "Wed 14:30", "Wed 15:00", "Wed 15:30", "Wed 16:00", "Wed 16:30"]


async def test_offered_starts_are_recorded_for_the_conversation(service: AvailabilityService, redis: Redis) -> None:
    answer = await fetch(service, MONDAY + timedelta(days=1))
    assert offer_fields(await redis.hgetall(TenantKeys("demo").offers("conv-1"))) == {
        f"dr-lee|{int(s.start.timestamp())}" for s in answer.slots
    }


# --- empty answers: reason and next available ---


async def test_a_closed_day_is_outside_working_hours_and_points_to_the_next_open_slot(
    service: AvailabilityService,
) -> None:
    answer = await fetch(service, MONDAY + timedelta(days=5))  # Saturday
    assert answer.slots == [] and answer.reason is NoSlotReason.outside_working_hours
    assert next_start(answer) == at(MONDAY + timedelta(days=7), 9)


async def test_a_past_day_is_in_the_past_and_points_to_the_first_slot_from_now(service: AvailabilityService) -> None:
    answer = await fetch(service, MONDAY - timedelta(days=1))
    assert answer.reason is NoSlotReason.in_the_past
    assert next_start(answer) == at(MONDAY, 9)


async def test_a_day_with_only_close_starts_left_is_too_short_notice(service: AvailabilityService) -> None:
    late = AvailabilityService(service.store, clock=frozen_at(at(MONDAY, 16, 5)))
    answer = await fetch(late, MONDAY)
    assert answer.reason is NoSlotReason.too_short_notice
    assert next_start(answer) == at(MONDAY + timedelta(days=1), 9)


async def test_a_day_past_the_horizon_is_beyond_horizon_without_a_next_slot(service: AvailabilityService) -> None:
    answer = await fetch(service, MONDAY + timedelta(days=61))
    assert answer.reason is NoSlotReason.beyond_horizon and answer.next_available is None


async def test_a_blocked_day_is_fully_booked_and_points_to_the_next_day(
    service: AvailabilityService, redis: Redis
) -> None:
    day = MONDAY + timedelta(days=1)
    await block(redis, at(day, 0), at(day, 23))
    answer = await fetch(service, day)
    assert answer.reason is NoSlotReason.fully_booked
    assert next_start(answer) == at(day + timedelta(days=1), 9)


async def test_the_next_available_slot_is_recorded_as_an_offer(service: AvailabilityService, redis: Redis) -> None:
    answer = await fetch(service, MONDAY + timedelta(days=5))
    assert answer.next_available is not None
    assert offer_fields(await redis.hgetall(TenantKeys("demo").offers("conv-1"))) == {
        f"dr-lee|{int(answer.next_available.start.timestamp())}"
    }


@pytest.mark.parametrize(
    ("first", "reason"),
    [(date(1, 1, 1), NoSlotReason.in_the_past), (date(9999, 12, 31), NoSlotReason.beyond_horizon)],
)
async def test_extreme_dates_get_a_reason_not_a_crash(
    service: AvailabilityService, first: date, reason: NoSlotReason
) -> None:
    answer = await fetch(service, first)
    assert answer.slots == [] and answer.reason is reason


# --- typed errors ---


async def expect_error(code: ErrorCode, service: AvailabilityService, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(DomainError) as caught:
        await fetch(service, *args, **kwargs)
    assert caught.value.error.code is code
    return caught.value.error.message


async def test_an_unknown_calendar_is_a_typed_error_naming_the_known_ones(service: AvailabilityService) -> None:
    message = await expect_error(ErrorCode.unknown_calendar, service, MONDAY, calendars=("dr-lee", "dr-who"))
    assert "dr-who" in message and "dr-lee, dr-patel" in message


async def test_a_window_longer_than_the_limit_is_window_too_large(service: AvailabilityService) -> None:
    await expect_error(ErrorCode.window_too_large, service, MONDAY, MONDAY + timedelta(days=MAX_WINDOW_DAYS))
    assert (await fetch(service, MONDAY, MONDAY + timedelta(days=MAX_WINDOW_DAYS - 1))).slots


async def test_a_duration_off_the_granularity_is_invalid(service: AvailabilityService) -> None:
    message = await expect_error(ErrorCode.invalid_arguments, service, MONDAY, minutes=45)
    assert "multiple of 30" in message


async def test_the_default_duration_of_the_first_calendar_must_fit_the_others(service: AvailabilityService) -> None:
    await expect_error(ErrorCode.invalid_arguments, service, MONDAY, calendars=("dr-patel", "dr-lee"))


async def test_a_reversed_window_is_invalid(service: AvailabilityService) -> None:
    await expect_error(ErrorCode.invalid_arguments, service, MONDAY, MONDAY - timedelta(days=1))


async def test_an_unknown_display_zone_is_invalid(service: AvailabilityService) -> None:
    message = await expect_error(ErrorCode.invalid_arguments, service, MONDAY, zone="Mars/Olympus")
    assert "IANA" in message
