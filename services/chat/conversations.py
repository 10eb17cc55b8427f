"""Conversation state in Redis: one list element per turn (its model messages as JSON), so
trimming never separates a tool call from its result. Any chat replica can serve any turn."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from runtime.redis import transaction
from shared.keys import TenantKeys

Message = dict[str, Any]


class ConversationStore:
    def __init__(self, redis: Redis, ttl_s: int, max_turns: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    async def history(self, tenant_id: str, conversation_id: str) -> list[Message]:
        turns = await self.redis.lrange(TenantKeys(tenant_id).conversation(conversation_id), -self.max_turns, -1)
        return [m for turn in turns for m in json.loads(turn)]

    async def append_turn(self, tenant_id: str, conversation_id: str, messages: list[Message]) -> None:
        keys = TenantKeys(tenant_id)
        key, count = keys.conversation(conversation_id), keys.conversation_turns(conversation_id)
        pipe = await transaction(self.redis)
        pipe.rpush(key, json.dumps(messages))
        pipe.ltrim(key, -self.max_turns, -1)
        pipe.expire(key, self.ttl_s)
        pipe.incr(count)
        pipe.expire(count, self.ttl_s)
        await pipe.execute()

    async def turns(self, tenant_id: str, conversation_id: str) -> int:
        return int(await self.redis.get(TenantKeys(tenant_id).conversation_turns(conversation_id)) or 0)
