"""Tokens and model round trips per booking conversation, against a real model endpoint.

Run: .venv/bin/python -m bench.chat_tokens [--k 3] [--base-url URL] [--model NAME] [--scenarios ...]
     .venv/bin/python -m bench.chat_tokens --scripted      # offline smoke run (fixed usage per call)

Plays booking scenarios of the evaluation harness (bench/eval) through the real services: the
chat service talks to OPENAI_BASE_URL through the harness's counting proxy, which sums the
`usage` (prompt + completion tokens) of every model answer and counts the round trips. Replies
are built from facts, so a booking needs one round trip per user request: one when the user
names the time (the check becomes the proposal, an exact "yes" needs none), two when they pick
from the offered times, plus one to read a "yes" written in other words. The local model server:
`python -m services.model` (port 8090), see
services/model/README.md. Redis: REDIS_URL (default 127.0.0.1:6379), database --redis-db (11),
flushed before every run; or --private-redis for a throw-away server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from contextlib import AsyncExitStack
from statistics import mean

from bench.eval import scenario
from bench.eval.__main__ import open_harness
from bench.eval.harness import RunResult
from services.chat import tools as chat_tools
from services.chat.state import ConversationState
from shared.domain import CalendarDirectory

DEFAULT_SCENARIOS = (
    "book-one-shot",
    "book-simple",
    "book-named-weekday",
    "book-patel",
    "tz-new-york-user",
    "multi-attendee-participants",
)
FLOOR = 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chat_tokens", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", nargs="*", default=list(DEFAULT_SCENARIOS))
    p.add_argument("--k", type=int, default=1, help="runs of each scenario")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8090/v1"))
    p.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "local"))
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    p.add_argument("--scripted", action="store_true", help="the scripted model instead of an endpoint")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    p.add_argument("--redis-db", type=int, default=11)
    p.add_argument("--private-redis", action="store_true")
    p.add_argument("--json", action="store_true", help="also print the rows as JSON")
    return p.parse_args(argv)


def rows(results: list[RunResult]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    names = list(dict.fromkeys(r.scenario for r in results))
    for name in [*names, "all"]:
        mine = [r for r in results if name in ("all", r.scenario)]
        booked = [r for r in mine if r.bookings_created]
        bookings = sum(r.bookings_created for r in booked)
        out.append(
            {
                "scenario": name,
                "runs": len(mine),
                "booked": sum(1 for r in mine if r.success and r.bookings_created),
                "turns": round(mean(r.replies for r in mine), 1),
                "round_trips": round(mean(r.round_trips for r in mine), 1),
                "prompt": round(mean(r.prompt_tokens for r in mine)),
                "completion": round(mean(r.completion_tokens for r in mine)),
                "tokens_per_booking": round(sum(r.total_tokens for r in booked) / bookings) if bookings else None,
                "trips_per_booking": round(sum(r.round_trips for r in booked) / bookings, 1) if bookings else None,
                "model_s": round(mean(r.model_s for r in mine), 1),
            }
        )
    return out


def table(data: list[dict[str, object]]) -> str:
    head = ["scenario", "runs", "booked", "turns", "trips", "prompt", "compl.", "tok/booking", "trips/bk", "model s"]
    keys = [
        "scenario",
        "runs",
        "booked",
        "turns",
        "round_trips",
        "prompt",
        "completion",
        "tokens_per_booking",
        "trips_per_booking",
        "model_s",
    ]
    widths = [28, 5, 6, 6, 6, 8, 7, 12, 9, 8]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True)))]
    for row in data:
        cells = ["-" if row[k] is None else str(row[k]) for k in keys]
        lines.append(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    scenarios = scenario.load(args.scenarios)
    async with AsyncExitStack() as stack:
        harness = await open_harness(stack, args)

        def progress(r: RunResult) -> None:
            state = "booked" if r.success and r.bookings_created else "FAILED: " + "; ".join(r.failures)[:200]
            print(f"{r.scenario} #{r.run + 1}: {r.round_trips} trips, {r.total_tokens} tokens, {state}", flush=True)

        results = await harness.run_all(scenarios, args.k, progress)
    every_tool = chat_tools.offer(ConversationState(CalendarDirectory(calendars=[])), all_listed=True).definitions
    schema_chars = len(json.dumps(every_tool, separators=(",", ":")))
    print(f"\nmodel: {'scripted' if args.scripted else f'{args.model} at {args.base_url}'}")
    print(f"tool schemas sent with every call: {schema_chars} characters of JSON")
    print(f"round-trip floor per booking: {FLOOR} (the check with the asked-for time; the yes by rule)\n")
    data = rows(results)
    print(table(data))
    if args.json:
        print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.disable(logging.INFO)
    sys.exit(asyncio.run(main(parse())))
