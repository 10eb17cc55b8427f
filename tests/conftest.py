"""Fixtures: the settings of a system under test, its workers and the whole system (both workers
and the chat API) started in-process. Redis and the scripted model come from testkit/fixtures.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from shared.settings import Settings
from testkit.scripted_model import ScriptedModel
from testkit.system import launch, make_settings, running_workers


@dataclass
class System:
    settings: Settings
    http: httpx.AsyncClient
    model: ScriptedModel
    redis: Redis

    async def say(self, text: str, conversation: str = "c1", user: str = "alice", **headers: str) -> httpx.Response:
        return await self.http.post(
            f"/v1/conversations/{conversation}/messages",
            json={"text": text},
            headers={"X-User-Id": user, **headers},
        )


@pytest.fixture
async def settings(redis_url: str, model: ScriptedModel) -> Settings:
    return make_settings(redis_url, model.base_url)


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[None]:
    """One calendar and one booking worker, as in production but in this process."""
    async with running_workers(settings):
        yield


@pytest.fixture
async def system(settings: Settings, workers: None, model: ScriptedModel) -> AsyncIterator[System]:
    """The chat API beside the `workers` (a module may override which run)."""
    async with launch(settings, workers=()) as running, httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        yield System(settings, http, model, running.redis)
