"""A scenario's `scripted_model` steps as answers of an OpenAI-compatible model.

Each step is a function of the chat-completions request body (so it can read the enums the
chat offered) returning one assistant message, as testkit/scripted_model.py serves them.

Step forms (YAML), every string rendered with the scenario's `{{name}}` templates:

    say: "text"                                        an `answer` call with that message
    fetch: {calendar: dr-lee, day: d, preferred: "10:00"}   fetch_free_slots for one day
    fetch: {calendars: [dr-lee, dr-patel], from: a, to: b, duration: 30, timezone: Asia/Tokyo}
    fetch: {calendar: dr-lee, day: d, preferred: "11:00", move: old}   ... to move the booking at `old`
    book: {at: slot | index: 0, name: "Alice Smith", participants: [..]}
                                                       book_meeting of the offered slot (by label)
    cancel: {at: slot}                                 cancel_booking of the user's booking at `at`
    reschedule: {at: old, to: new}                     reschedule_booking
    list: {include_past: false}
    decide: yes | no | other                           the answer to a confirmation question
    text: "..."                                        a plain text answer (simulated users)
    call: {name: tool, args: {...}}                    any call, arguments as given (may be invalid)
    parallel: [step, step]                             several tool calls in one message

`at`/`to` name a moment; the step picks the label of the enum the chat offered that shows that
moment in its calendar's zone (so a step fails loudly if the chat did not offer it).
"""

from __future__ import annotations

import json
from typing import Any

from bench.eval.scenario import Context, show
from services.chat.conversations import Message
from testkit.scripted_model import Step, tool_call

Request = dict[str, Any]


def _calls(*calls: dict[str, Any]) -> Message:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


def _enum(req: Request, tool: str, field: str) -> list[str]:
    for t in req.get("tools") or []:
        if t["function"]["name"] == tool:
            prop = t["function"]["parameters"]["properties"][field]
            options = [prop, prop.get("items", {}), *prop.get("anyOf", [])]
            return [str(v) for o in options for v in o.get("enum", [])]
    raise AssertionError(f"scripted step: {tool} was not offered")


def _label(req: Request, tool: str, field: str, ctx: Context, spec: dict[str, Any], key: str) -> str:
    """The offered label that shows the moment `spec[key]` (or the `index`-th one)."""
    labels = _enum(req, tool, field)
    if key not in spec:
        return labels[int(spec.get("index", 0))]
    moment = ctx.moment(str(spec[key]))
    calendar = str(spec.get("calendar", "dr-lee"))
    local = moment.astimezone(ctx.zone(calendar))
    wanted = f"{local:%a %d %b %H:%M}"
    found = [label for label in labels if label.endswith(wanted)]
    if not found:
        raise AssertionError(f"scripted step: no {field} at {wanted} among {labels}")
    return found[0]


def _arguments(kind: str, spec: dict[str, Any], ctx: Context, req: Request) -> tuple[str, Any]:
    """(tool name, arguments) of one tool-call step."""
    match kind:
        case "say":
            return "answer", {"topic": spec.get("topic", "appointments"), "message": ctx.render(str(spec["text"]))}
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
                "preferred_time": ctx.render(str(spec["preferred"])) if spec.get("preferred") else None,
                "move_booking": _label(req, "fetch_free_slots", "move_booking", ctx, spec, "move")
                if "move" in spec
                else None,
            }
        case "book":
            name = spec.get("name", "{{user_name}}")
            return "book_meeting", {
                "slot": _label(req, "book_meeting", "slot", ctx, spec, "at"),
                "attendee_name": ctx.render(str(name)) if name else None,
                "participants": ctx.render_all(spec.get("participants", [])),
            }
        case "cancel":
            return "cancel_booking", {"booking": _label(req, "cancel_booking", "booking", ctx, spec, "at")}
        case "reschedule":
            return "reschedule_booking", {
                "booking": _label(req, "reschedule_booking", "booking", ctx, spec, "at"),
                "new_slot": _label(req, "reschedule_booking", "new_slot", ctx, spec, "to"),
            }
        case "list":
            return "list_my_bookings", {"include_past": bool(spec.get("include_past", False))}
        case "call":
            return str(spec["name"]), ctx.render_all(spec.get("args", {}))
    raise ValueError(f"unknown scripted step {kind!r}")


TOOL_STEPS = ("say", "fetch", "book", "cancel", "reschedule", "list", "call")


def step(spec: dict[str, Any], ctx: Context) -> Step:
    """One scripted answer; templates and labels are resolved when the model is asked."""
    if len(spec) != 1:
        raise ValueError(f"a scripted step has exactly one key, got {sorted(spec)}")
    ((kind, body),) = spec.items()
    if kind == "say":
        body = {"text": body} if isinstance(body, str) else body
    if kind == "text":  # a plain text answer (the simulated user's lines)
        return lambda _req: {"role": "assistant", "content": ctx.render(str(body))}
    if kind == "decide":  # YAML reads a bare yes / no as a boolean
        decision = {True: "yes", False: "no"}.get(body, str(body)) if isinstance(body, bool) else str(body)
        answer = {"yes": "yes", "no": "no", "other": "something_else"}[decision]
        reading = {"time_named": None, "emails_named": [], "name_given": None, "answer": answer}
        return lambda _req: {"role": "assistant", "content": json.dumps(reading)}
    if kind in TOOL_STEPS:
        return lambda req: _calls(tool_call(*_arguments(kind, body or {}, ctx, req)))
    if kind == "parallel":
        parts = [dict(s) for s in body]
        for part in parts:
            if len(part) != 1 or next(iter(part)) not in TOOL_STEPS:
                raise ValueError("`parallel` holds tool-call steps only")
        return lambda req: _calls(*(tool_call(*_arguments(k, b or {}, ctx, req)) for p in parts for k, b in p.items()))
    raise ValueError(f"unknown scripted step {kind!r}")


def steps(specs: list[dict[str, Any]], ctx: Context) -> list[Step]:
    return [step(s, ctx) for s in specs]
