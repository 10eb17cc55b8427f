"""Local model figures: hash check, load, prompt/generation speed, tool-call latency cold/warm.

`python -m bench.local_model_bench` (needs scripts/install_local_model.sh first). Requests go
through the real HTTP server and the `openai` SDK on a loopback port, as the chat service
sends them; the per-request token figures come from the engine itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import uvicorn
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from services.model import weights
from services.model.engine import Engine, Generation, LlamaEngine, Sampling
from services.model.runtime import Runtime
from services.model.server import create_app
from services.model.settings import ModelSettings

SYSTEM = (
    "You book appointments. Today is Tuesday 2026-11-24, time zone Europe/Berlin (+01:00). "
    "Calendars: dr-lee (Dr. Lee). Use fetch_free_slots whenever the user asks when someone is free. "
    "After a tool result, tell the user the result in one short sentence."
)
TOOL = {
    "type": "function",
    "function": {
        "name": "fetch_free_slots",
        "description": "List the free slots of a calendar between two times.",
        "parameters": {
            "type": "object",
            "properties": {
                "calendar": {"type": "string", "description": "Calendar id, e.g. 'dr-lee'."},
                "start": {"type": "string", "format": "date-time", "description": "Window start with offset."},
                "end": {"type": "string", "format": "date-time", "description": "Window end with offset."},
                "duration_minutes": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            "required": ["calendar", "start", "end", "duration_minutes"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


class Recording:
    """An engine wrapper that keeps every Generation for the table."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.runs: list[Generation] = []

    @property
    def n_ctx(self) -> int:
        return self.inner.n_ctx

    def check(self, prompt: str, grammar: str | None) -> int:
        return self.inner.check(prompt, grammar)

    def generate(
        self,
        prompt: str,
        grammar: str | None,
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        gen = self.inner.generate(prompt, grammar, sampling, on_text, cancel)
        self.runs.append(gen)
        return gen


async def ask(client: AsyncOpenAI, messages: list[dict[str, Any]]) -> tuple[ChatCompletion, float]:
    create: Any = client.chat.completions.create
    started = time.perf_counter()
    reply = cast(ChatCompletion, await create(model="local", messages=messages, tools=[TOOL], temperature=0, seed=42))
    return reply, time.perf_counter() - started


async def scenario(url: str, engine: Recording) -> list[tuple[str, float, list[Generation], str]]:
    rows = []
    question = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What times are free tomorrow with Dr. Lee?"},
    ]
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="local", max_retries=0, timeout=300) as client:
        for label, messages in [("tool call, cold", question), ("tool call, warm (same prompt)", question)]:
            before = len(engine.runs)
            reply, seconds = await ask(client, messages)
            message = reply.choices[0].message
            outcome = f"call {message.tool_calls[0].function.name}" if message.tool_calls else "text"  # type: ignore[union-attr]
            rows.append((label, seconds, engine.runs[before:], outcome))
        call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
        follow_up: list[dict[str, Any]] = [
            *question,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": json.dumps({"free_slots": ["2026-11-25T09:00:00+01:00", "2026-11-25T11:30:00+01:00"]}),
            },
        ]
        before = len(engine.runs)
        reply, seconds = await ask(client, follow_up)
        rows.append(("text after tool result (prefix cached)", seconds, engine.runs[before:], "text"))
        another = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Is Dr. Lee free on Friday morning?"},
        ]
        before = len(engine.runs)
        reply, seconds = await ask(client, another)
        outcome = "call" if reply.choices[0].message.tool_calls else "text"
        rows.append(("new question, system+tools cached", seconds, engine.runs[before:], outcome))
    return rows


def main() -> None:
    settings = ModelSettings()
    started = time.perf_counter()
    weights.verify(settings.path)
    verify_s = time.perf_counter() - started
    started = time.perf_counter()
    engine = Recording(LlamaEngine.load(settings.model_copy(update={"verify_hash": False})))
    load_s = time.perf_counter() - started

    app = create_app(Runtime.with_engine(settings, engine), load=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        rows = asyncio.run(scenario(url, engine))
    finally:
        server.should_exit = True
        thread.join()

    print(f"sha256 check of {settings.path.name}: {verify_s:.1f} s; model load: {load_s:.1f} s")
    print(f"n_ctx {settings.ctx}, threads {settings.threads}")
    print()
    header = (
        f"{'request':<40} {'latency':>8} {'passes':>6} {'prompt':>7} {'cached':>7} "
        f"{'prompt tok/s':>12} {'gen tok':>8} {'gen tok/s':>9}  outcome"
    )
    print(header)
    print("-" * len(header))
    for label, seconds, runs, outcome in rows:
        first = runs[0]
        fresh = first.prompt_tokens - first.cached_tokens
        prompt_rate = fresh / first.prompt_seconds if first.prompt_seconds > 0 and fresh > 8 else float("nan")
        gen_tokens = sum(r.completion_tokens for r in runs)
        gen_seconds = sum(r.generation_seconds for r in runs)
        gen_rate = sum(max(r.completion_tokens - 1, 0) for r in runs) / gen_seconds if gen_seconds else 0.0
        print(
            f"{label:<40} {seconds:>7.1f}s {len(runs):>6} {first.prompt_tokens:>7} {first.cached_tokens:>7} "
            f"{prompt_rate:>12.0f} {gen_tokens:>8} {gen_rate:>9.1f}  {outcome}"
        )


if __name__ == "__main__":
    main()
