"""Stream and consumer-group names, and the wire encoding of one stream entry.

An entry carries one field, `__data__`, holding the JSON of a message: FastStream subscribers
parse it as raw JSON, and any other client (redis-cli, another language) can read it.
"""

from __future__ import annotations

from typing import Final

CALENDAR_REQUESTS: Final = "calendar.requests"
BOOKING_COMMANDS: Final = "booking.commands"
BOOKING_EVENTS: Final = "booking.events"
DEAD_LETTERS: Final = "dead.letters"
CALENDAR_GROUP: Final = "calendar"
BOOKING_GROUP: Final = "booking"
INVITATIONS_GROUP: Final = "invitations"
"""Renders the .ics invitations of booking.events (services/booking/invitations.py)."""
DATA_FIELD: Final = "__data__"

GROUPS: Final[tuple[tuple[str, str], ...]] = (
    (CALENDAR_REQUESTS, CALENDAR_GROUP),
    (BOOKING_COMMANDS, BOOKING_GROUP),
    (BOOKING_EVENTS, INVITATIONS_GROUP),
)


def reply_stream(instance_id: str) -> str:
    """The durable reply stream of one chat instance."""
    return f"replies:{instance_id}"
