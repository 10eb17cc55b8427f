"""Pending actions: a write the model asked for, stored as the exact command, until the user
approves or declines it.

A write on a calendar that requires confirmation (and every cancellation) does not run when the
model calls it. The chat stores the command it would send in Redis (so it survives a chat
restart and any chat replica can approve it), shows the user a question built from facts, and
runs the stored command unchanged on approval, with an idempotency key derived from the action,
so approving twice (or a button racing a typed "yes") writes once. Each status change is one
atomic step (lua/action.lua): pending -> executing -> done | failed, or pending -> declined |
superseded | expired.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from pydantic import AwareDatetime, BaseModel, Field
from redis.asyncio import Redis

from runtime.redis import as_text, transaction
from runtime.scripts import Direct, Key, Script, ScriptRequest
from shared.keys import TenantKeys
from shared.messages import MessageType

KEEP_AFTER_S = 24 * 3600
"""How long an answered or expired action is kept, so a late approve gets a reason (409)."""
EXECUTING_LEASE_S = 60
"""An action left 'executing' this long (its chat died mid-write) may be approved again: the
write's idempotency key makes the second run return the first one's result."""

Status = Literal["pending", "executing", "done", "failed", "declined", "superseded", "expired"]


class PendingAction(BaseModel):
    """A write waiting for the user's yes: what it will do, in the calendar's time zone."""

    action_id: str
    kind: Literal["book", "cancel", "reschedule"]
    calendar_name: str
    start: AwareDatetime = Field(description="The slot to book, or the booking to cancel or move.")
    new_start: AwareDatetime | None = Field(default=None, description="Where a move goes.")
    attendee_name: str | None = None
    participants: list[str] = Field(default_factory=list)
    question: str = Field(description="The confirmation question shown to the user.")
    expires_at: AwareDatetime


class Command(BaseModel):
    """The exact stream command an approval runs."""

    tool: MessageType
    payload: dict[str, Any]
    calendar_id: str
    hold: tuple[int, int] | None = None
    """The held slot (start epoch, duration s), when the calendar holds slots."""


class StoredAction(BaseModel):
    action: PendingAction
    command: Command
    status: Status


def new_action_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveAction(ScriptRequest):
    """lua/action.lua: a pending action moved to a new status, once."""

    SCRIPT: ClassVar[Script] = Script.from_file(Path(__file__).with_name("lua") / "action.lua")
    action: Key
    pending: Key
    action_id: str
    user_id: str
    conversation_id: str
    status: str
    now: int
    takeover_s: int


class Approvals:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.run = Direct(redis)

    async def propose(
        self, tenant_id: str, user_id: str, conversation_id: str, action: PendingAction, command: Command
    ) -> None:
        """Store the action as the conversation's one pending action (an older one is superseded)."""
        keys = TenantKeys(tenant_id)
        previous = await self.redis.get(keys.pending_action(conversation_id))
        if previous is not None:
            await self.transition(tenant_id, user_id, conversation_id, as_text(previous), "superseded")
        now = int(time.time())
        key = keys.action(action.action_id)
        pipe = await transaction(self.redis)
        pipe.hset(
            key,
            mapping={
                "data": action.model_dump_json(),
                "command": command.model_dump_json(),
                "status": "pending",
                "since": now,
                "expires": int(action.expires_at.timestamp()),
                "user_id": user_id,
                "conversation_id": conversation_id,
            },
        )
        pipe.expire(key, self.ttl_s + KEEP_AFTER_S)
        pipe.set(keys.pending_action(conversation_id), action.action_id, ex=self.ttl_s)
        await pipe.execute()

    async def load(self, tenant_id: str, action_id: str) -> StoredAction | None:
        fields = cast(dict[bytes, bytes], await self.redis.hgetall(TenantKeys(tenant_id).action(action_id)))
        if not fields:
            return None
        status = cast(Status, as_text(fields[b"status"]))
        if status == "pending" and int(fields[b"expires"]) < time.time():
            status = "expired"
        return StoredAction(
            action=PendingAction.model_validate_json(fields[b"data"]),
            command=Command.model_validate_json(fields[b"command"]),
            status=status,
        )

    async def owner(self, tenant_id: str, action_id: str) -> tuple[str, str] | None:
        """(user id, conversation id) of an action."""
        user, conversation = await self.redis.hmget(
            TenantKeys(tenant_id).action(action_id), ["user_id", "conversation_id"]
        )
        return None if user is None or conversation is None else (as_text(user), as_text(conversation))

    async def pending(self, tenant_id: str, conversation_id: str) -> StoredAction | None:
        """The conversation's pending action, if one awaits an answer and has not expired."""
        action_id = await self.redis.get(TenantKeys(tenant_id).pending_action(conversation_id))
        if action_id is None:
            return None
        stored = await self.load(tenant_id, as_text(action_id))
        return stored if stored is not None and stored.status == "pending" else None

    async def transition(self, tenant_id: str, user_id: str, conversation_id: str, action_id: str, to: Status) -> str:
        """Move a pending action to `to` (once); 'ok' or the reason it did not move."""
        keys = TenantKeys(tenant_id)
        result = await self.run.script(
            MoveAction(
                action=keys.action(action_id),
                pending=keys.pending_action(conversation_id),
                action_id=action_id,
                user_id=user_id,
                conversation_id=conversation_id,
                status=to,
                now=int(time.time()),
                takeover_s=EXECUTING_LEASE_S,
            )
        )
        return as_text(result)

    async def finish(self, tenant_id: str, action_id: str, status: Literal["done", "failed"]) -> None:
        await self.redis.hset(TenantKeys(tenant_id).action(action_id), mapping={"status": status})


def expires_at(now: datetime, ttl_s: int) -> datetime:
    return datetime.fromtimestamp(now.timestamp() + ttl_s, now.tzinfo)
