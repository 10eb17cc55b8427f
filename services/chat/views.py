"""What the model sees of a reply: compact JSON, times in the calendar's zone, no internal ids."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from shared.domain import Booking, BookingList, BookingOutcome, FreeSlots, OfferedSlot
from shared.messages import Reply, ToolError


def _booking(b: Booking, zone_of: dict[str, str]) -> dict[str, Any]:
    zone = ZoneInfo(zone_of.get(b.calendar_id, "UTC"))
    return {
        "calendar_id": b.calendar_id,
        "start": b.start.astimezone(zone).isoformat(timespec="minutes"),
        "end": b.end.astimezone(zone).isoformat(timespec="minutes"),
        "attendee_name": b.attendee_name,
        "participants": list(b.participants),
        "status": b.status.value,
    }


def _offered(slots: list[OfferedSlot]) -> dict[str, str]:
    """Offered slots as {ref: local start}: the model books by the ref ("s3") or the start."""
    return {s.ref: s.start.isoformat(timespec="minutes") for s in slots}


ERROR_VIEW_PREFIX = '{"error": '


def error_view(error: ToolError) -> str:
    return json.dumps({"error": {"code": error.code.value, "message": error.message}})


def model_view(reply: Reply, zone_of: dict[str, str]) -> str:
    """The tool result string fed back to the model."""
    if reply.error is not None:
        return error_view(reply.error)
    result = reply.result or {}
    try:
        match reply.type:
            case "fetch_free_slots":
                slots = FreeSlots.model_validate(result)
                view: dict[str, Any] = {
                    "timezone": slots.timezone,
                    "duration_minutes": slots.duration_minutes,
                    "slots": _offered(slots.slots),
                }
                if slots.more_available:
                    view["more_available"] = True
                if slots.reason is not None:
                    view["reason"] = slots.reason.value
                if slots.next_available is not None:
                    view["next_available"] = _offered([slots.next_available])
                return json.dumps(view)
            case "book_meeting" | "cancel_booking" | "reschedule_booking":
                outcome = BookingOutcome.model_validate(result)
                return json.dumps({"status": outcome.status, "booking": _booking(outcome.booking, zone_of)})
            case "list_my_bookings":
                listing = BookingList.model_validate(result)
                return json.dumps({"bookings": [_booking(b, zone_of) for b in listing.bookings]})
    except ValidationError:
        pass
    return json.dumps({"error": {"code": "internal", "message": "The service gave an unreadable answer."}})
