"""The final outcome of a write whose caller stopped waiting (its deadline passed).

A command carries its caller's deadline; the write scripts refuse to apply it once the Redis
server's clock has passed it. So once that clock is past the deadline the command's
idempotency record is final: it either holds the write's result (the write ran in time; only
its reply was late or lost, e.g. the worker died right after writing) or it never will. The
caller reads it then, and tells the user what happened, not "failed" for a write that was made.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from redis.asyncio import Redis

from runtime.scripts import Direct, Key, Script, ScriptRequest
from shared.keys import TenantKeys
from shared.messages import Envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalOutcome(ScriptRequest):
    """lua/final_outcome.lua: a command's stored result, once the server's clock is past its deadline."""

    SCRIPT: ClassVar[Script] = Script.from_file(Path(__file__).with_name("lua") / "final_outcome.lua")
    idempotency: Key
    deadline_ms: int


WRITES: Final = frozenset({"book_meeting", "cancel_booking", "reschedule_booking"})


async def final_outcome(redis: Redis, envelope: Envelope, *, max_wait_s: float = 2.0) -> dict[str, Any] | None:
    """The stored result of a write command whose deadline has passed, or None when it did not
    run (and never will). Waits (at most `max_wait_s`) while the server's clock is behind ours."""
    if envelope.deadline is None or envelope.type not in WRITES:
        return None
    key = TenantKeys(envelope.tenant_id).idempotency(envelope.idempotency_key)
    run = Direct(redis)
    waited = 0.0
    while True:
        status, *rest = await run.script(FinalOutcome(idempotency=key, deadline_ms=envelope.deadline_ms()))
        if status == b"final":
            fingerprint, result = rest
            if fingerprint and fingerprint.decode() == envelope.payload_fingerprint() and result:
                parsed: dict[str, Any] = json.loads(result)
                return parsed
            return None
        pause = int(rest[0]) / 1000 + 0.001
        if waited + pause > max_wait_s:
            raise TimeoutError("the Redis server's clock is far behind this host's")
        waited += pause
        await asyncio.sleep(pause)
