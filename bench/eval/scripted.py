"""A scenario's `scripted_model` steps as answers of an OpenAI-compatible model.

Each step is a function of the chat-completions request body (so it can read the tool results
it was sent) returning one assistant message, as tests/support/scripted_model.py serves them.

Step forms (YAML), every string rendered with the scenario's `{{name}}` templates:

    say: "text"                                        a text answer
    fetch: {calendar: dr-lee, day: d}                  fetch_free_slots for one day
    fetch: {calendars: [dr-lee, dr-patel], from: a, to: b, duration: 30, timezone: Asia/Tokyo}
    book: {calendar: dr-lee, at: slot, name: "Alice Smith", participants: [..], duration: 30}
    cancel: {calendar: dr-lee, at: slot}
    reschedule: {calendar: dr-lee, at: old, to: new}
    list: {include_past: false}
    call: {name: tool, args: {...}}                    any call, arguments as given (may be invalid)
    propose: {index: 0 | at: "10:00", as: offer, say: "... {{offer:%H:%M}} ..."}
        take a slot from the latest fetch_free_slots result, remember it as `as`, say the text
    parallel: [step, step]                             several tool calls in one message

`at`/`to` name a moment (or a remembered offer); anything else is rendered as a template.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bench.eval.scenario import Context, show

Request = dict[str, Any]
Message = dict[str, Any]
Step = Callable[[Request], Message]


def _tool_call(name: str, arguments: Any) -> dict[str, Any]:
    return {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
    }


def _calls(*calls: dict[str, Any]) -> Message:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


def _latest_slots(req: Request) -> list[str]:
    for message in reversed(req["messages"]):
        if message["role"] == "tool":
            body = json.loads(message["content"])
            if "slots" in body:
                return [str(s) for s in body["slots"].values()]
    raise AssertionError("scripted step `propose` found no fetch_free_slots result in the request")


def _when(ctx: Context, value: str) -> str:
    return show(ctx.values[value]) if value in ctx.values else ctx.render(value)


def _arguments(kind: str, spec: dict[str, Any], ctx: Context) -> tuple[str, Any]:
    """(tool name, arguments) of one tool-call step."""
    match kind:
        case "fetch":
            calendars = spec.get("calendars") or [spec.get("calendar", "dr-lee")]
            first = str(spec.get("from", spec.get("day")))
            last = str(spec.get("to", first))
            return "fetch_free_slots", {
                "calendar_ids": calendars,
                "date_from": show(ctx.day(first)),
                "date_to": show(ctx.day(last)),
                "duration_minutes": spec.get("duration"),
                "timezone": spec.get("timezone"),
            }
        case "book":
            return "book_meeting", {
                "calendar_id": spec.get("calendar", "dr-lee"),
                "start": _when(ctx, spec["at"]),
                "duration_minutes": spec.get("duration"),
                "attendee_name": ctx.render(spec.get("name", "{{user_name}}")),
                "participants": ctx.render_all(spec.get("participants", [])),
            }
        case "cancel":
            return "cancel_booking", {"calendar_id": spec.get("calendar", "dr-lee"), "start": _when(ctx, spec["at"])}
        case "reschedule":
            return "reschedule_booking", {
                "calendar_id": spec.get("calendar", "dr-lee"),
                "start": _when(ctx, spec["at"]),
                "new_start": _when(ctx, spec["to"]),
            }
        case "list":
            return "list_my_bookings", {"include_past": bool(spec.get("include_past", False))}
        case "call":
            return str(spec["name"]), ctx.render_all(spec.get("args", {}))
    raise ValueError(f"unknown scripted step {kind!r}")


TOOL_STEPS = ("fetch", "book", "cancel", "reschedule", "list", "call")


def step(spec: dict[str, Any], ctx: Context) -> Step:
    """One scripted answer; templates are rendered when the model is asked, not before, so a
    step may name an offer remembered by an earlier `propose`."""
    if len(spec) != 1:
        raise ValueError(f"a scripted step has exactly one key, got {sorted(spec)}")
    ((kind, body),) = spec.items()
    if kind == "say":
        return lambda _req: {"role": "assistant", "content": ctx.render(str(body))}
    if kind in TOOL_STEPS:
        return lambda _req: _calls(_tool_call(*_arguments(kind, body or {}, ctx)))
    if kind == "parallel":
        parts = [dict(s) for s in body]
        for part in parts:
            if len(part) != 1 or next(iter(part)) not in TOOL_STEPS:
                raise ValueError("`parallel` holds tool-call steps only")
        return lambda _req: _calls(*(_tool_call(*_arguments(k, b or {}, ctx)) for p in parts for k, b in p.items()))
    if kind == "propose":

        def propose(req: Request) -> Message:
            slots = [datetime.fromisoformat(s) for s in _latest_slots(req)]
            if "at" in body:
                wanted = ctx.render(str(body["at"]))
                chosen = next((s for s in slots if f"{s:%H:%M}" == wanted), None)
                if chosen is None:
                    raise AssertionError(f"no offered slot at {wanted}: {[f'{s:%H:%M}' for s in slots]}")
            else:
                chosen = slots[int(body.get("index", 0))]
            ctx.values[str(body.get("as", "offer"))] = chosen
            return {"role": "assistant", "content": ctx.render(str(body["say"]))}

        return propose
    raise ValueError(f"unknown scripted step {kind!r}")


def steps(specs: list[dict[str, Any]], ctx: Context) -> list[Step]:
    return [step(s, ctx) for s in specs]
