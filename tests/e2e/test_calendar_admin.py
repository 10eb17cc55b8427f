"""Calendar admin over HTTP: commands travel the calendar stream like every other message."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from services.chat.access import ApiKeys
from testkit.calendar_days import at, next_weekday
from tests.conftest import System
from tests.e2e.flows import answer, enum_of, fetch

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
    system.model.script(fetch(day, "room-7"))
    body = (await system.say("When is room 7 free?", **admin)).json()
    assert "room-7" in enum_of(system.model.requests[-1], "fetch_free_slots", "calendar_ids")
    assert [datetime.fromisoformat(s) for s in body["suggested_slots"]] == [at(day, 10), at(day, 11)]
    assert body["reply"] == f"Room 7 is free on {at(day, 10):%a} {day.day} {at(day, 10):%b} at 10:00 or 11:00. " + (
        "Which time suits you?"
    )


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
    system.model.script(fetch(day, "room-7"), answer("Which time suits you?"))
    body = (await system.say("When is room 7 free?", **admin)).json()
    assert [datetime.fromisoformat(s) for s in body["suggested_slots"]] == [at(day, 11)]
    assert "10:00" not in body["reply"] and "Private meeting" not in body["reply"]
    await system.say("Hmm.", **admin)  # the next model call carries the fetch result: free slots only
    [result] = [json.loads(m["content"]) for m in system.model.requests[-1]["messages"] if m["role"] == "tool"]
    assert result == {"free": {f"Room 7, {at(day, 11):%a %d %b}": f"{at(day, 11):%H:%M}"}}
    assert "Private meeting" not in json.dumps(system.model.requests) and "secret-1" not in json.dumps(
        system.model.requests
    )


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


async def test_the_longest_idempotency_key_the_api_accepts_works(system: System, admin: dict[str, str]) -> None:
    key = {"Idempotency-Key": "k" * 200}
    first = await system.http.put("/v1/calendars", json=ROOM, headers={**admin, **key})
    again = await system.http.put("/v1/calendars", json=ROOM, headers={**admin, **key})
    assert first.status_code == 200, first.text
    assert again.json() == first.json()  # the stored first result, not a second write
    assert first.json()["created"] is True
