"""Summarise a py-spy raw profile (`py-spy record --format raw`): the share of samples in which
each function is on the stack (inclusive) and on top of it (self), highest first.

Run: .venv/bin/python -m bench.profile_summary PROFILE.txt [--top 30] [--match booking]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frames(stack: str) -> list[str]:
    """`func (file:line);...` -> ['func (file)', ...], outermost first."""
    out = []
    for frame in stack.split(";"):
        m = _FRAME.match(frame.strip())
        out.append(f"{m['func']} ({_short(m['file'])})" if m else frame.strip())
    return out


def _short(path: str) -> str:
    for marker in ("site-packages/", "wt-runtime/", "main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarise(text: str) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        names = frames(stack)
        for name in set(names):
            inclusive[name] += n
        self_[names[-1]] += n
    return total, inclusive, self_


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only functions whose name or file contains this")
    args = parser.parse_args()
    total, inclusive, self_ = summarise(args.profile.read_text())
    print(f"{total} samples")
    print(f"{'incl %':>6} | {'self %':>6} | function (file)")
    rows = [(n, name) for name, n in inclusive.items() if args.match in name]
    for n, name in sorted(rows, reverse=True)[: args.top]:
        print(f"{100 * n / total:>6.1f} | {100 * self_[name] / total:>6.1f} | {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
