"""Holding the one slot a proposal names while the user decides (`Calendar.hold_seconds`).

Placed by the chat service when the assistant proposes exactly one offered slot, or when a
write waits for the user's confirmation; read by fetch_free_slots (busy for others) and the
booking scripts (refused to others). The layout is in shared/holds.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from redis.asyncio import Redis

from shared.domain import CalendarSummary
from shared.holds import with_holds
from shared.keys import TenantKeys
from shared.offers import Offered, live_offers

HOLD_LUA = with_holds((Path(__file__).with_name("lua") / "hold.lua").read_text())


class SlotHolds:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._hold = redis.register_script(HOLD_LUA)

    async def hold(
        self,
        tenant_id: str,
        conversation_id: str,
        calendars: Sequence[CalendarSummary],
        start: int,
        duration_s: int,
    ) -> bool:
        """Hold [start, start + duration) on the calendars that hold slots, for the longest of
        their hold times; False when off or another conversation holds an overlapping slot."""
        holding = [c for c in calendars if c.hold_seconds]
        if not holding:
            return False
        keys = TenantKeys(tenant_id)
        now = int(time.time())
        expires = now + max(c.hold_seconds for c in holding)
        held = await self._hold(
            keys=[keys.holds(c.calendar_id) for c in holding],
            args=[start, start + duration_s, conversation_id, now, expires],
        )
        return bool(held)

    async def offers(self, tenant_id: str, conversation_id: str) -> list[Offered]:
        """The conversation's live offers."""
        fields = await self.redis.hgetall(TenantKeys(tenant_id).offers(conversation_id))
        return live_offers(cast(dict[bytes, bytes], fields), int(time.time()))  # a bytes-mode client
