"""The web chat page in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
ask, pick a suggested slot, answer the confirmation question, see the booking card. Saves a screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from testkit.calendar_days import BERLIN, next_weekday
from tests.conftest import System
from tests.e2e.flows import book, fetch, stored_bookings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


async def test_user_books_through_the_web_page_by_clicking_a_suggested_slot_and_saying_yes(system: System) -> None:
    system.model.script(fetch(next_weekday()), book(0, name="Web User"))
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page()
        await page.goto(str(system.http.base_url) + "/")
        await page.fill("#text", "Is Dr. Lee free?")
        await page.click("button[type=submit]")
        first_slot = page.locator(".slots button").first
        await first_slot.wait_for(timeout=10_000)
        await first_slot.click()
        await page.locator(".assistant", has_text="Shall I book Dr. Lee").wait_for(timeout=10_000)
        assert await stored_bookings(system) == [], "a click on a slot only asks"
        await page.fill("#text", "Yes please")
        await page.click("button[type=submit]")
        card = page.locator(".card")
        await card.wait_for(timeout=10_000)
        assert "Booked" in await card.inner_text()
        transcript = await page.locator("#log").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "web-booking.png"), full_page=True)
        await browser.close()
    assert "Done: you're booked with Dr. Lee" in transcript
    assert "{" not in transcript and "book_meeting" not in transcript
    [booking] = await stored_bookings(system)
    assert booking.attendee_name == "Web User"
    assert len(system.model.requests) == 2, "the typed yes needs no model call"


async def test_the_confirmation_card_books_on_confirm_and_drops_the_action_on_change(system: System) -> None:
    day = next_weekday()
    system.model.script(fetch(day), book("10:00", name="Web User"), book("11:00", name="Web User"))
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page()
        await page.goto(str(system.http.base_url) + "/")
        for text, wait_for in (("Is Dr. Lee free?", ".slots button"), ("10:00 please", ".confirm")):
            await page.fill("#text", text)
            await page.click("button[type=submit]")
            await page.locator(wait_for).last.wait_for(timeout=10_000)
        first = page.locator(".confirm").last
        assert "Book: Dr. Lee" in await first.inner_text() and "10:00 for Web User" in await first.inner_text()
        await first.locator("button.no").click()
        await page.locator(".assistant", has_text="nothing was booked").wait_for(timeout=10_000)
        assert await stored_bookings(system) == []
        await page.fill("#text", "11:00 then")
        await page.click("button[type=submit]")
        await page.locator(".confirm", has_text="11:00").wait_for(timeout=10_000)
        await page.locator(".confirm").last.locator("button.yes").click()
        await page.locator(".card").wait_for(timeout=10_000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "web-confirmation.png"), full_page=True)
        transcript = await page.locator("#log").inner_text()
        await browser.close()
    assert "Done: you're booked with Dr. Lee" in transcript
    [booking] = await stored_bookings(system)
    assert f"{booking.start.astimezone(BERLIN):%H:%M}" == "11:00" and booking.attendee_name == "Web User"
    assert len(system.model.requests) == 3, "Confirm and Change need no model call"
