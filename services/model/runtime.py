"""The one model of the process: loaded in the background, used by one request at a time."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from services.model import llamacpp, weights
from services.model.engine import Engine, LlamaEngine
from services.model.settings import ModelSettings

log = logging.getLogger("services.model.runtime")

State = Literal["loading", "ready", "unavailable"]


class ModelUnavailable(RuntimeError):
    """No model to answer with; the message says why (missing file, bad hash, loading)."""


class Runtime:
    """Holds the engine, its load state and the lock that serializes generations."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.state: State = "loading"
        self.detail = "the model is loading"
        self.lock = asyncio.Lock()
        self._engine: Engine | None = None

    @classmethod
    def with_engine(cls, settings: ModelSettings, engine: Engine) -> Runtime:
        """A runtime that is ready at once (tests use a scripted engine)."""
        runtime = cls(settings)
        runtime._set_ready(engine)
        return runtime

    def _set_ready(self, engine: Engine) -> None:
        self._engine = engine
        self.state = "ready"
        self.detail = f"model {self.settings.path.name} loaded"

    async def load(self) -> None:
        """Load in a worker thread; on failure log one clear line and stay unavailable."""
        if self.state == "ready":
            return
        try:
            engine = await asyncio.to_thread(LlamaEngine.load, self.settings)
        except (weights.WeightsError, llamacpp.LlamaUnavailable) as exc:
            self._fail(str(exc))
        except (ValueError, OSError) as exc:  # llama.cpp refused the file
            self._fail(f"llama.cpp could not load {self.settings.path}: {exc}")
        else:
            self._set_ready(engine)

    def _fail(self, reason: str) -> None:
        self.state = "unavailable"
        self.detail = reason
        log.error("model unavailable: %s", reason)

    def engine(self) -> Engine:
        if self._engine is None:
            raise ModelUnavailable(self.detail)
        return self._engine
