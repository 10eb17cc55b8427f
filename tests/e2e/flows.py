"""Scripted-model building blocks shared by the end-to-end tests: the calls a correct model
makes under the server-driven protocol (slots and bookings named by the labels the state offers)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from shared.domain import Booking
from shared.keys import TenantKeys
from testkit.scripted_model import Step, call
from tests.conftest import System


def fetch(
    day: date,
    calendar: str | list[str] = "dr-lee",
    *,
    preferred: str | None = None,
    to: date | None = None,
    minutes: int | None = None,
    move: int | None = None,
) -> Step:
    """fetch_free_slots; `move`: index into the move_booking enum (the user's bookings)."""

    def args(req: dict[str, Any]) -> dict[str, Any]:
        return {
            "calendar_ids": [calendar] if isinstance(calendar, str) else calendar,
            "date_from": day.isoformat(),
            "date_to": (to or day).isoformat(),
            "duration_minutes": minutes,
            "timezone": None,
            "preferred_time": preferred,
            "move_booking": None if move is None else enum_of(req, "fetch_free_slots", "move_booking")[move],
        }

    return call("fetch_free_slots", args)


def decide(answer: str, time: str | None = None, emails: tuple[str, ...] = (), name: str | None = None) -> Step:
    """The model's reading of a reply to a confirmation question (structured output)."""
    body = {"time_named": time, "emails_named": list(emails), "name_given": name, "answer": answer}
    return lambda _req: {"role": "assistant", "content": json.dumps(body)}


def answer(text: str, topic: str = "appointments") -> Step:
    return call("answer", {"topic": topic, "message": text})


def offered_labels(req: dict[str, Any]) -> list[str]:
    """The slot labels of every fetch result the model was sent, oldest first."""
    labels: list[str] = []
    for m in req["messages"]:
        if m["role"] == "tool":
            body = json.loads(m["content"])
            for day, times in body.get("free", {}).items():
                labels += [f"{day} {time}" for time in times.split()]
    return labels


def enum_of(req: dict[str, Any], tool: str, field: str) -> list[str]:
    """The enum a request's tool definition allows for one argument."""
    for t in req["tools"]:
        if t["function"]["name"] == tool:
            prop = t["function"]["parameters"]["properties"][field]
            options = [prop, *prop.get("anyOf", [])]  # a nullable enum is anyOf [enum, null]
            return [v for o in options for v in (o.get("enum") or o.get("items", {}).get("enum") or [])]
    raise AssertionError(f"{tool} not offered")


def offered_tools(req: dict[str, Any]) -> list[str]:
    """The tools the request lets the model call (its tool list, or allowed_tools)."""
    choice = req.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return [t["function"]["name"] for t in choice["allowed_tools"]["tools"]]
    if isinstance(choice, dict) and choice.get("type") == "function":
        return [choice["function"]["name"]]
    return [t["function"]["name"] for t in req["tools"]]


def book(at: str | int = 0, name: str | None = "Alice Smith", participants: list[str] | None = None) -> Step:
    """book_meeting for an offered slot: by index into the slot enum, or by its "HH:MM"."""

    def args(req: dict[str, Any]) -> dict[str, Any]:
        labels = enum_of(req, "book_meeting", "slot")
        slot = labels[at] if isinstance(at, int) else next(x for x in labels if x.endswith(at))
        return {"slot": slot, "attendee_name": name, "participants": participants or []}

    return call("book_meeting", args)


def cancel(index: int = 0) -> Step:
    return call("cancel_booking", lambda req: {"booking": enum_of(req, "cancel_booking", "booking")[index]})


def reschedule(to: str, index: int = 0) -> Step:
    def args(req: dict[str, Any]) -> dict[str, Any]:
        slot = next(x for x in enum_of(req, "reschedule_booking", "new_slot") if x.endswith(to))
        return {"booking": enum_of(req, "reschedule_booking", "booking")[index], "new_slot": slot}

    return call("reschedule_booking", args)


async def stored_bookings(system: System, tenant: str = "demo") -> list[Booking]:
    keys = await system.redis.keys(TenantKeys(tenant).booking("*"))
    return [Booking.model_validate_json(await system.redis.get(k)) for k in keys]


def tool_errors(request: dict[str, Any]) -> list[str]:
    """Error codes of the tool results in one model request."""
    codes = []
    for m in request["messages"]:
        if m["role"] == "tool":
            body = json.loads(m["content"])
            if "error" in body:
                codes.append(body["error"]["code"])
    return codes


async def booked_by_conversation(
    system: System, day: date, hhmm: str, *, user: str = "alice", conversation: str = "setup"
) -> dict[str, Any]:
    """A booking made the way users make one: ask, pick, say yes. Returns the last response body."""
    system.model.script(fetch(day), book(hhmm, name=f"{user.title()} Example"))
    first = await system.say(f"Is Dr. Lee free on {day.isoformat()}?", conversation=conversation, user=user)
    assert first.status_code == 200, first.text
    second = await system.say(f"{hhmm} please", conversation=conversation, user=user)
    assert second.json()["pending_action"] is not None, second.text
    third = await system.say("yes", conversation=conversation, user=user)
    assert third.json()["bookings"], third.text
    return dict(third.json())
