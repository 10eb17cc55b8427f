"""Scores over runs: per scenario and overall, as a JSON report and a printed table."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from math import comb
from pathlib import Path
from statistics import mean
from typing import Any

from bench.eval.harness import RunResult


def pass_hat_k(successes: int, runs: int, k: int) -> float:
    """tau-bench's pass^k: the chance that k runs drawn without replacement from `runs` all
    pass, given `successes` of them passed: C(c, k) / C(n, k)."""
    if not 1 <= k <= runs:
        raise ValueError(f"pass^k needs 1 <= k <= runs (k={k}, runs={runs})")
    if not 0 <= successes <= runs:
        raise ValueError("successes must lie between 0 and runs")
    return comb(successes, k) / comb(runs, k)


def _mean(values: Sequence[float]) -> float:
    return round(mean(values), 3) if values else 0.0


def summarize(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Figures over a set of runs (one scenario's, or all)."""
    replies = sum(r.replies for r in runs)
    errors: Counter[str] = Counter()
    for r in runs:
        errors.update(r.tool_errors)
    booked = [r for r in runs if r.bookings_created]
    bookings = sum(r.bookings_created for r in booked)
    return {
        "runs": len(runs),
        "successes": sum(r.success for r in runs),
        "success_rate": _mean([float(r.success) for r in runs]),
        "end_state_rate": _mean([float(r.end_state_ok) for r in runs]),
        "replies": replies,
        "leaking_replies": sum(r.leaking_replies for r in runs),
        "leak_rate": round(sum(r.leaking_replies for r in runs) / replies, 4) if replies else 0.0,
        "privacy_leaks": sum(r.privacy_leaks for r in runs),
        "false_claims": sum(r.false_claims for r in runs),
        "unchecked_claims": sum(r.unchecked_claims for r in runs),
        "machine_time_replies": sum(r.machine_time_replies for r in runs),
        "double_bookings": sum(r.double_bookings for r in runs),
        "tool_calls": sum(sum(r.tool_calls.values()) for r in runs),
        "tool_errors": sum(errors.values()),
        "tool_errors_by_code": dict(errors.most_common()),
        "model_errors": sum(r.model_errors for r in runs),
        "round_trips_mean": _mean([r.round_trips for r in runs]),
        "prompt_tokens_mean": _mean([r.prompt_tokens for r in runs]),
        "completion_tokens_mean": _mean([r.completion_tokens for r in runs]),
        "tokens_mean": _mean([r.total_tokens for r in runs]),
        "tokens_total": sum(r.total_tokens for r in runs),
        "tokens_per_booking": round(sum(r.total_tokens for r in booked) / bookings, 1) if bookings else None,
        "round_trips_per_booking": round(sum(r.round_trips for r in booked) / bookings, 2) if bookings else None,
        "user_tokens_total": sum(r.user_tokens for r in runs),
        "wall_s_mean": _mean([r.wall_s for r in runs]),
        "model_s_mean": _mean([r.model_s for r in runs]),
    }


def build(runs: Sequence[RunResult], meta: dict[str, Any]) -> dict[str, Any]:
    """The whole report: per scenario (with pass^1..pass^n) and overall (pass^k averaged over
    scenarios, as tau-bench does)."""
    by_scenario: dict[str, list[RunResult]] = {}
    for r in runs:
        by_scenario.setdefault(r.scenario, []).append(r)
    scenarios = []
    for name, mine in by_scenario.items():
        n, c = len(mine), sum(r.success for r in mine)
        summary = summarize(mine)
        summary["pass_hat_k"] = {str(k): round(pass_hat_k(c, n, k), 4) for k in range(1, n + 1)}
        scenarios.append({"name": name, "summary": summary, "runs": [r.to_json() for r in mine]})
    overall = summarize(runs)
    if scenarios:
        k_max = min(len(v) for v in by_scenario.values())
        overall["pass_hat_k"] = {
            str(k): round(mean(pass_hat_k(sum(r.success for r in v), len(v), k) for v in by_scenario.values()), 4)
            for k in range(1, k_max + 1)
        }
    overall["scenarios"] = len(scenarios)
    overall["scenarios_passed_every_run"] = sum(1 for v in by_scenario.values() if all(r.success for r in v))
    return {"meta": meta, "overall": overall, "scenarios": scenarios}


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


COLUMNS = (
    ("scenario", 34),
    ("pass", 6),
    ("pass^k", 7),
    ("leaks", 6),
    ("dbl", 4),
    ("claims", 6),
    ("unchk", 5),
    ("tool err", 8),
    ("trips", 6),
    ("tokens", 8),
    ("wall s", 7),
)


def _row(values: Sequence[str]) -> str:
    cells = zip(values, COLUMNS, strict=True)
    return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, (_, w)) in enumerate(cells))


def table(report: dict[str, Any]) -> str:
    """One line per scenario and one overall; means per run for trips, tokens and wall time."""
    lines = [_row([c for c, _ in COLUMNS]), _row(["-" * w for _, w in COLUMNS])]

    def line(name: str, s: dict[str, Any]) -> str:
        k = max(int(x) for x in s["pass_hat_k"]) if s.get("pass_hat_k") else 0
        return _row(
            [
                name[:34],
                f"{s['successes']}/{s['runs']}",
                f"{s['pass_hat_k'][str(k)]:.2f}" if k else "-",
                f"{s['leaking_replies']}/{s['replies']}",
                str(s["double_bookings"]),
                str(s["false_claims"]),
                str(s["unchecked_claims"]),
                str(s["tool_errors"]),
                f"{s['round_trips_mean']:.1f}",
                f"{s['tokens_mean']:.0f}",
                f"{s['wall_s_mean']:.1f}",
            ]
        )

    for scenario in report["scenarios"]:
        lines.append(line(scenario["name"], scenario["summary"]))
    lines.append(_row(["-" * w for _, w in COLUMNS]))
    overall = report["overall"]
    lines.append(line(f"overall ({overall['scenarios']} scenarios)", overall))
    lines.append(
        f"success rate {overall['success_rate']:.1%}  end-state match {overall['end_state_rate']:.1%}  "
        f"leak rate {overall['leak_rate']:.1%}  machine-time replies {overall['machine_time_replies']}  pass^k "
        + " ".join(f"k={k}:{v:.2f}" for k, v in overall.get("pass_hat_k", {}).items())
    )
    if overall["tokens_per_booking"] is not None:
        lines.append(
            f"per booking: {overall['tokens_per_booking']:.0f} tokens, "
            f"{overall['round_trips_per_booking']:.1f} model round trips"
        )
    if overall["tool_errors_by_code"]:
        lines.append("tool errors: " + ", ".join(f"{c} {n}" for c, n in overall["tool_errors_by_code"].items()))
    return "\n".join(lines)


def failures(report: dict[str, Any]) -> str:
    """The reasons of every failed run, for the console."""
    out = []
    for scenario in report["scenarios"]:
        for run in scenario["runs"]:
            if not run["success"]:
                out.append(f"{scenario['name']} run {run['run']}: " + "; ".join(run["failures"]))
    return "\n".join(out)
