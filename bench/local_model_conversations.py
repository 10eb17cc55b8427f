"""Booking conversations against the local model through the real services, one after another.

    python -m bench.local_model_conversations [--conversations 5] [--model-url URL] [--redis-url URL]

Starts the local model server (`python -m services.model` on a free port; or uses --model-url),
a throw-away redis-server (or --redis-url), a calendar and a booking worker and the chat API
(in this process), then plays the `make run` demo conversation (devtools/demo.py) N times, each
as another user picking another offered slot. Per conversation it prints the chat service's
model calls and the prompt/completion tokens they reported (`usage`, read from the chat's
/metrics), HTTP turns and wall time. The first conversation pays the cold prompt (system prompt
and tool schemas, ~1,300 tokens); later ones reuse llama.cpp's prefix cache.
Goal (issue 10): <= 60 s per booking conversation on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools.demo import DemoResult, run_demo
from services.model.settings import MODEL_ID
from shared.settings import Settings
from testkit.redis_server import private_redis
from testkit.serving import free_port
from testkit.system import launch

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Usage:
    calls: int
    prompt: int
    completion: int

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.calls - other.calls, self.prompt - other.prompt, self.completion - other.completion)


async def usage(http: httpx.AsyncClient) -> Usage:
    """Model calls and tokens so far, from the chat service's Prometheus metrics."""
    text = (await http.get("/metrics")).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "booking_model_latency_seconds_count":
                values["calls"] = sample.value
            elif sample.name == "booking_model_tokens_total":
                values[sample.labels["kind"]] = sample.value
    return Usage(int(values.get("calls", 0)), int(values.get("prompt", 0)), int(values.get("completion", 0)))


@contextlib.contextmanager
def model_server(url: str | None) -> Iterator[str]:
    """`url`, or a fresh `python -m services.model` on a free port, once it is healthy."""
    if url:
        yield url.removesuffix("/v1")
        return
    port = free_port()
    env = {**os.environ, "MODEL_HOST": "127.0.0.1", "MODEL_PORT": str(port)}
    child = subprocess.Popen(
        [sys.executable, "-m", "services.model"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            if child.poll() is not None:
                raise SystemExit(f"the model server exited: {(child.stderr.read() if child.stderr else b'').decode()}")
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"{base}/healthz", timeout=5).json()
                if health["status"] == "ready":
                    break
                if health["status"] == "unavailable":
                    raise SystemExit(f"the model cannot load: {health['detail']}")
            time.sleep(0.5)
        print(f"model server ready on {base} in {time.monotonic() - started:.1f} s", flush=True)
        yield base
    finally:
        child.terminate()
        child.wait(30)


@contextlib.asynccontextmanager
async def services(redis_url: str, model_base: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        redis_url=redis_url,
        openai_base_url=f"{model_base}/v1",
        openai_api_key=None,
        openai_model=MODEL_ID,
        openai_temperature=0.0,
        openai_timeout_s=600.0,
        openai_max_retries=0,
        block_ms=100,
        model_allowed_tools=True,
        model_warmup=True,
    )
    async with launch(settings) as system, httpx.AsyncClient(base_url=system.url, timeout=900) as http:
        started = time.perf_counter()
        while (await http.get("/readyz")).status_code != 200:  # the prompt's prefix is warm
            await asyncio.sleep(0.5)
        print(f"chat ready (model prompt warm) after {time.perf_counter() - started:.1f} s", flush=True)
        yield http


def _row(i: int, result: DemoResult, used: Usage, seconds: float) -> str:
    turns = " + ".join(f"{t.seconds:.1f}" for t in result.turns)
    outcome = "booked" if result.ok else f"FAILED: {result.problem}"
    return (
        f"{i:>4}  {len(result.turns):>5}  {used.calls:>11}  {used.prompt:>10,}  {used.completion:>14,}  "
        f"{seconds:>7.1f}  {turns:<28} {outcome}"
    )


async def bench(redis_url: str, model_base: str, conversations: int, verbose: bool) -> list[tuple[Usage, float, bool]]:
    rows: list[tuple[Usage, float, bool]] = []
    async with services(redis_url, model_base) as http:
        print("conv  turns  model calls  prompt tok  completion tok   wall s  per turn (s)")
        for i in range(conversations):
            before = await usage(http)
            started = time.perf_counter()
            result = await run_demo(
                http, redis_url, user_id=f"bench-{i}", slot_index=i, echo=print if verbose else lambda _: None
            )
            seconds = time.perf_counter() - started
            used = await usage(http) - before
            print(_row(i + 1, result, used, seconds), flush=True)
            rows.append((used, seconds, result.ok))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=5)
    parser.add_argument("--model-url", help="an OpenAI-compatible local model server (default: start one)")
    parser.add_argument("--redis-url", help="default: a throw-away redis-server")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every turn")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.disable(logging.INFO)  # FastStream logs every message at INFO with its own handler
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{os.cpu_count()} CPUs, load average {load}")
    with private_redis(args.redis_url) as redis_url, model_server(args.model_url) as model_base:
        rows = asyncio.run(bench(redis_url, model_base, args.conversations, args.verbose))
    booked = sum(ok for _, _, ok in rows)
    walls = sorted(s for _, s, _ in rows)
    calls = sum(u.calls for u, _, _ in rows) / max(len(rows), 1)
    print(
        f"booked {booked}/{len(rows)}; wall s min {walls[0]:.1f} median {walls[len(walls) // 2]:.1f} "
        f"max {walls[-1]:.1f}; {calls:.1f} model calls per conversation"
    )
    return 0 if booked == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
