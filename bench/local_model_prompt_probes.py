"""Probe a model on the single moves of a booking, with the chat's real system prompt and tools.

    python -m bench.local_model_prompt_probes [--model-url http://127.0.0.1:8090/v1] [--policy FILE]

For tuning `services/chat/prompt.py` without whole conversations: each probe is one model call on
a fixed history (temperature 0) and passes or fails. --policy tries another policy text in
place of POLICY. Needs a running model server (`python -m services.model`). Probes: the first
move on three days (a fetch_free_slots call for the asked day), the reply to slots from 09:00
and from 11:00 (offered times only, plain text), a picked time (ask, do not book), the yes (a
book_meeting call), the booked result, a needs_confirmation refusal (speak to the user, do not
relay it) and the yes after it, an off-topic question.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageParam

from services.chat import prompt
from services.chat.guards import find_leaks
from services.demo import next_weekday, spoken_day
from shared.domain import CalendarDirectory, CalendarSummary
from shared.tools import openai_tools

ROOT = Path(__file__).resolve().parents[1]
BERLIN = ZoneInfo("Europe/Berlin")
HOURS = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30", "12:00", "12:30"]
Message = dict[str, Any]


def directory() -> CalendarDirectory:
    raw = json.loads((ROOT / "services" / "calendar" / "demo_calendars.json").read_text())
    return CalendarDirectory(
        calendars=[CalendarSummary.model_validate({k: c[k] for k in CalendarSummary.model_fields}) for c in raw]
    )


def call(call_id: str, name: str, args: dict[str, Any]) -> Message:
    function = {"name": name, "arguments": json.dumps(args)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


def result(call_id: str, body: dict[str, Any]) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(body)}


def slots(day: str, start: str) -> dict[str, Any]:
    starts = [f"{day}T{h}+01:00" for h in HOURS if h >= start]
    return {"timezone": "Europe/Berlin", "duration_minutes": 30, "slots": starts}


def plain(text: str) -> bool:
    """User-facing: no leak, and not talking about the user or the tools."""
    return bool(text) and not find_leaks(text) and not re.search(r"\bthe user\b|\btool\b", text)


def first_call(m: ChatCompletionMessage) -> tuple[str, dict[str, Any]] | None:
    if not m.tool_calls:
        return None
    function = getattr(m.tool_calls[0], "function", None)
    return None if function is None else (function.name, json.loads(function.arguments))


@dataclass
class Probes:
    client: AsyncOpenAI
    model: str
    calendars: CalendarDirectory
    passed: int = 0
    total: int = 0

    async def ask(self, now: datetime, history: list[Message]) -> ChatCompletionMessage:
        system: Message = {"role": "system", "content": prompt.system_prompt(self.calendars, now)}
        messages = cast(list[ChatCompletionMessageParam], [system, *history])
        create: Any = self.client.chat.completions.create
        reply = await create(model=self.model, messages=messages, tools=openai_tools(), temperature=0)
        return cast(ChatCompletionMessage, reply.choices[0].message)

    async def check(
        self, name: str, now: datetime, history: list[Message], ok: Callable[[ChatCompletionMessage], bool]
    ) -> ChatCompletionMessage:
        m = await self.ask(now, history)
        good = ok(m)
        self.passed += good
        self.total += 1
        shown = m.content if m.content is not None else first_call(m)
        print(f"{'PASS' if good else 'FAIL'}  {name:<34} {shown!r}", flush=True)
        return m

    async def run(self) -> None:
        for offset in (0, 1, 3):  # Thu -> Fri, Fri -> Mon, Sun -> Mon
            now = datetime(2026, 11, 26, 10, 0, tzinfo=BERLIN) + timedelta(days=offset)
            day = next_weekday(now)
            user: Message = {
                "role": "user",
                "content": f"Hi, I'm Alice Smith. When is Dr. Lee free on {spoken_day(day)}?",
            }

            def fetches(m: ChatCompletionMessage, iso: str = day.isoformat()) -> bool:
                found = first_call(m)
                return found is not None and found[0] == "fetch_free_slots" and found[1]["date_from"] == iso

            m = await self.check(f"first move {now:%a} -> {day:%a}", now, [user], fetches)
            found = first_call(m)
            if found is None:
                continue
            for start in ("09:00", "11:00"):
                offered = [h for h in HOURS if h >= start]
                history = [user, call("call_a", *found), result("call_a", slots(day.isoformat(), start))]

                def offers(m: ChatCompletionMessage, offered: list[str] = offered) -> bool:
                    times = re.findall(r"\d\d:\d\d", m.content or "")
                    return plain(m.content or "") and bool(times) and all(t in offered for t in times)

                await self.check(f"  reply to slots from {start}", now, history, offers)
        await self.booking_moves()

    async def booking_moves(self) -> None:
        now = datetime(2026, 11, 26, 10, 45, tzinfo=BERLIN)
        fetch: dict[str, Any] = {"calendar_ids": ["dr-lee"], "date_from": "2026-11-27", "date_to": "2026-11-27"}
        fetch |= {"duration_minutes": None, "timezone": "Europe/Berlin"}
        ask: Message = {"role": "user", "content": "Hi, I'm Alice Smith. When is Dr. Lee free on Friday 27 November?"}
        yes: Message = {"role": "user", "content": "Yes, please book Friday 27 November at 11:00."}
        history = [
            ask,
            call("call_a", "fetch_free_slots", fetch),
            result("call_a", slots("2026-11-27", "10:00")),
            {"role": "assistant", "content": "Dr. Lee is free on 27 November at 10:00, 10:30, 11:00 and 11:30."},
            {"role": "user", "content": "Friday 27 November at 11:00 suits me."},
        ]

        def books(m: ChatCompletionMessage) -> bool:
            found = first_call(m)
            return found is not None and found[0] == "book_meeting" and found[1]["start"].startswith("2026-11-27T11:00")

        await self.check(
            "picked -> asks, books nothing",
            now,
            history,
            lambda m: plain(m.content or "") and "11:00" in (m.content or ""),
        )
        history += [{"role": "assistant", "content": "Shall I book Dr. Lee on 27 November at 11:00 for you?"}, yes]
        m = await self.check("yes -> book_meeting", now, history, books)
        found = first_call(m) or ("book_meeting", {})
        booking: dict[str, Any] = {"calendar_id": "dr-lee", "start": "2026-11-27T11:00+01:00"}
        booking |= {"end": "2026-11-27T11:30+01:00"}
        booking |= {"attendee_name": "Alice Smith", "participants": [], "status": "confirmed"}
        done = [call("call_b", *found), result("call_b", {"status": "confirmed", "booking": booking})]
        await self.check(
            "booked -> says so", now, history + done, lambda m: plain(m.content or "") and "11:00" in (m.content or "")
        )

        book: dict[str, Any] = {"calendar_id": "dr-lee", "start": "2026-11-27T11:00:00+01:00", "duration_minutes": 30}
        book |= {"attendee_name": "Alice Smith", "participants": []}
        refusal = {
            "code": "needs_confirmation",
            # the confirmation gate's wording (services/chat/loop.py)
            "message": "Not done yet. Ask the user to confirm Dr. Lee on Fri 27 Nov at 11:00; "
            "call the tool again only after they say yes.",
        }
        history = [
            ask,
            call("call_a", "fetch_free_slots", fetch),
            result("call_a", slots("2026-11-27", "11:00")),
            call("call_b", "book_meeting", book),
            result("call_b", {"error": refusal}),
        ]
        m = await self.check(
            "refused -> asks the user", now, history, lambda m: plain(m.content or "") and "11:00" in (m.content or "")
        )
        history += [{"role": "assistant", "content": m.content or ""}, yes]
        await self.check("refused, then yes -> book_meeting", now, history, books)
        weather: Message = {"role": "user", "content": "What will the weather be tomorrow in Berlin?"}
        await self.check(
            "off topic -> declines",
            now,
            [weather],
            lambda m: plain(m.content or "") and not re.search(r"°|sunny|rain|cloud", m.content or "", re.I),
        )


async def main(args: argparse.Namespace) -> int:
    async with AsyncOpenAI(base_url=args.model_url, api_key="local", timeout=900, max_retries=0) as client:
        probes = Probes(client, args.model, directory())
        await probes.run()
    print(f"passed {probes.passed}/{probes.total}")
    return 0 if probes.passed == probes.total else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-url", default="http://127.0.0.1:8090/v1")
    parser.add_argument("--model", default="local")
    parser.add_argument("--policy", help="a file with another policy text to try instead of prompt.POLICY")
    arguments = parser.parse_args()
    if arguments.policy:
        prompt.POLICY = Path(arguments.policy).read_text().strip()
    raise SystemExit(asyncio.run(main(arguments)))
