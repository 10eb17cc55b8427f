"""python -m bench.eval: run booking scenarios through the real services and score them.

    python -m bench.eval                                   # every shipped scenario, once, OPENAI_* env
    python -m bench.eval --k 4 --scenarios book-simple 'cancel-*'
    python -m bench.eval --scripted                        # offline: each scenario's scripted model
    python -m bench.eval --base-url http://127.0.0.1:8090/v1 --model local --report artifacts/eval/local.json

See docs/eval.md for the scenario format and the metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.eval import report, scenario
from bench.eval.harness import Endpoint, Harness, RunResult, now_iso


def _redis_url(base: str, db: int) -> str:
    head = base.rstrip("/")
    if head.count("/") > 2:  # drop a database number already in the URL
        head = head.rsplit("/", 1)[0]
    return f"{head}/{db}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", nargs="*", default=[], help="directories, files or scenario names (globs ok)")
    p.add_argument("--k", type=int, default=1, help="runs of each scenario (pass^1..pass^k are reported)")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"), help="OpenAI-compatible endpoint")
    p.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--user-base-url", default=None, help="endpoint of the simulated user (default: --base-url)")
    p.add_argument("--user-model", default=None, help="model of the simulated user (default: --model)")
    p.add_argument("--scripted", action="store_true", help="offline: play each scenario's scripted_model")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    p.add_argument("--redis-db", type=int, default=11, help="logical database, FLUSHED before every run")
    p.add_argument("--private-redis", action="store_true", help="start a throw-away redis-server instead")
    p.add_argument("--force-flush", action="store_true", help="flush the database even if others' keys are in it")
    p.add_argument("--report", type=Path, default=None, help="JSON report path (default artifacts/eval/<time>.json)")
    p.add_argument("--tag", action="append", default=[], help="only scenarios with this tag (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each run's transcript")
    p.add_argument("--list", action="store_true", help="list the selected scenarios and exit")
    args = p.parse_args(argv)
    if args.k < 1:
        p.error("--k must be at least 1")
    if not args.scripted and not args.base_url:
        args.base_url = "https://api.openai.com/v1"
    return args


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _progress(verbose: bool, path: Path, meta: dict[str, object]) -> Callable[[RunResult], None]:
    """Print each run as it ends, and rewrite the report, so a stopped evaluation keeps its runs."""
    done: list[RunResult] = []

    def show(result: RunResult) -> None:
        done.append(result)
        report.write(report.build(done, {**meta, "partial": True}), path)
        mark = "PASS" if result.success else "FAIL"
        print(
            f"{mark} {result.scenario} #{result.run + 1}: {result.round_trips} model calls, "
            f"{result.total_tokens} tokens, {result.wall_s:.1f}s"
            + ("" if result.success else f" -- {'; '.join(result.failures)[:300]}"),
            flush=True,
        )
        if verbose:
            for t in result.turns:
                print(f"    user: {t.user}\n    bot:  {t.reply}   [{', '.join(t.tool_calls)}]", flush=True)

    return show


async def open_harness(
    stack: AsyncExitStack, args: argparse.Namespace, *, user: Endpoint | None = None, force_flush: bool = False
) -> Harness:
    """The harness a command line asks for, entered on the stack: a private or the given Redis,
    and the scenarios' scripted model or the model endpoint (and the simulated user's)."""
    if args.private_redis:
        from testkit.redis_server import private_redis

        redis_url = stack.enter_context(private_redis(None))
    else:
        redis_url = _redis_url(args.redis_url, args.redis_db)
    if args.scripted:
        from testkit.scripted_model import ScriptedModel

        model = await stack.enter_async_context(ScriptedModel())
        harness = Harness(redis_url, script=model, force_flush=force_flush)
    else:
        endpoint = Endpoint(args.base_url, args.model, args.api_key, getattr(args, "temperature", None))
        harness = Harness(redis_url, endpoint=endpoint, user_endpoint=user, force_flush=force_flush)
    await stack.enter_async_context(harness)
    return harness


async def main(args: argparse.Namespace) -> int:
    scenarios = scenario.load(args.scenarios)
    if args.tag:
        scenarios = [s for s in scenarios if set(args.tag) & set(s.tags)]
    if args.list:
        for s in scenarios:
            print(f"{s.name:34} {','.join(s.tags):36} {s.description.strip()[:80]}")
        return 0
    if args.scripted:
        skipped = [s.name for s in scenarios if s.scripted_model is None]
        scenarios = [s for s in scenarios if s.scripted_model is not None]
        if skipped:
            print(f"no scripted_model, skipped: {', '.join(skipped)}")
    if not scenarios:
        print("no scenario selected")
        return 2
    async with AsyncExitStack() as stack:
        user = Endpoint(args.user_base_url or args.base_url, args.user_model or args.model, args.api_key, None)
        harness = await open_harness(stack, args, user=user, force_flush=args.force_flush)
        path = args.report or Path("artifacts/eval") / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        meta: dict[str, object] = {
            "started_at": now_iso(),
            "mode": "scripted" if args.scripted else "live",
            "base_url": None if args.scripted else args.base_url,
            "model": "scripted" if args.scripted else args.model,
            "user_model": None if args.scripted else (args.user_model or args.model),
            "k": args.k,
            "redis": "private" if args.private_redis else harness.redis_url,
            "commit": _git_commit(),
            "scenarios": [s.name for s in scenarios],
        }
        runs = await harness.run_all(scenarios, args.k, _progress(args.verbose, path, meta))
    built = report.build(runs, {**meta, "finished_at": now_iso()})
    report.write(built, path)
    print()
    print(report.table(built))
    if failed := report.failures(built):
        print("\nfailures:\n" + failed)
    print(f"\nreport: {path}")
    return 0 if built["overall"]["successes"] == built["overall"]["runs"] else 1


def run() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.disable(logging.INFO)  # FastStream sets its own loggers to INFO: one line per message
    sys.exit(asyncio.run(main(parse())))


if __name__ == "__main__":
    run()
