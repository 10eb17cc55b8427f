"""Short holds on proposed slots (`Calendar.hold_seconds`, 0 = off, the default).

While the assistant's proposal of one slot awaits the user's yes, the chat service holds it
for that conversation; fetch_free_slots then shows it busy to every other conversation, and
the booking scripts refuse it to them, until the hold expires or its holder books it.

A calendar's holds live in one sorted set (`TenantKeys.holds`): score = start, member =
`end|conversation|expires` (epoch s). Overlap is checked on intervals, so a hold also blocks a
longer or shifted slot that would overlap it; placing a hold is atomic (Lua), like SET NX PX
on the interval, and expired members are removed whenever a script passes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

HOLDS_LUA: Final = (Path(__file__).with_name("lua") / "holds.lua").read_text()


def with_holds(source: str) -> str:
    """A Lua script with `check_holds` defined before it."""
    return HOLDS_LUA + source
