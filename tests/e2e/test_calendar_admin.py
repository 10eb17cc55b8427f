"""Calendar admin over HTTP: commands travel the calendar stream like every other message."""

from __future__ import annotations

import pytest

from services.chat.access import ApiKeys
from tests.conftest import System
from tests.e2e.flows import fetch
from tests.support.calendar_days import at, next_weekday
from tests.support.scripted_model import last_tool_result, say

ROOM = {
    "calendar_id": "room-7",
    "name": "Room 7",
    "timezone": "Europe/Berlin",
    "weekly_hours": {d: [{"start": "10:00", "end": "12:00"}] for d in ("mon", "tue", "wed", "thu", "fri")},
    "slot_minutes": 60,
    "granularity_minutes": 60,
    "min_notice_minutes": 0,
}


@pytest.fixture
async def admin(system: System) -> dict[str, str]:
    return {"Authorization": f"Bearer {await ApiKeys(system.redis).create('demo')}"}


async def test_admin_creates_a_calendar_and_the_assistant_offers_its_hours(
    system: System, admin: dict[str, str]
) -> None:
    saved = await system.http.put("/v1/calendars", json=ROOM, headers=admin)
    assert saved.status_code == 200, saved.text
    assert saved.json()["created"] is True and saved.json()["calendar"]["tenant_id"] == "demo"
    listed = await system.http.get("/v1/calendars", headers=admin)
    assert "room-7" in {c["calendar_id"] for c in listed.json()["calendars"]}
    day = next_weekday()
    system.model.script(fetch(day, "room-7"), say("Room 7 is free at 10:00 and 11:00."))
    await system.say("When is room 7 free?", **admin)
    assert list(last_tool_result(system.model.requests[-1])["slots"].values()) == [
        at(day, 10).isoformat(timespec="minutes"),
        at(day, 11).isoformat(timespec="minutes"),
    ]


async def test_an_imported_ics_event_makes_its_time_busy(system: System, admin: dict[str, str]) -> None:
    await system.http.put("/v1/calendars", json=ROOM, headers=admin)
    day = next_weekday()
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:secret-1\r\n"
        f"DTSTART;TZID=Europe/Berlin:{day:%Y%m%d}T100000\r\nDTEND;TZID=Europe/Berlin:{day:%Y%m%d}T110000\r\n"
        "SUMMARY:Private meeting\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    imported = await system.http.post("/v1/calendars/busy", json={"calendar_id": "room-7", "ics": ics}, headers=admin)
    assert imported.status_code == 200, imported.text
    assert imported.json()["busy_blocks"] == 1
    system.model.script(fetch(day, "room-7"), say("Room 7 is free at 11:00."))
    await system.say("When is room 7 free?", **admin)
    result = last_tool_result(system.model.requests[-1])
    assert list(result["slots"].values()) == [at(day, 11).isoformat(timespec="minutes")]
    assert "Private meeting" not in str(system.model.requests[-1])


async def test_calendar_admin_requires_a_key_and_gives_reasons(system: System, admin: dict[str, str]) -> None:
    assert (await system.http.put("/v1/calendars", json=ROOM)).status_code == 401
    other_tenant = await system.http.put("/v1/calendars", json={**ROOM, "tenant_id": "acme"}, headers=admin)
    assert other_tenant.status_code == 422 and other_tenant.json()["detail"]
    unknown = await system.http.post(
        "/v1/calendars/busy", json={"calendar_id": "nope", "ics": "BEGIN:VCALENDAR"}, headers=admin
    )
    assert unknown.status_code in (404, 422) and unknown.json()["detail"]
    bad_zone = await system.http.put("/v1/calendars", json={**ROOM, "timezone": "Mars/Olympus"}, headers=admin)
    assert bad_zone.status_code == 422
