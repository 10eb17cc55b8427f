"""Start the whole system as local processes (no Docker needed): python -m services.runner

Starts the calendar and booking workers and the chat API against REDIS_URL, prefixes their
output, and stops them all on Ctrl-C or SIGTERM (each gets SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Proc:
    name: str
    argv: list[str]


def plan(calendar: int, booking: int) -> list[Proc]:
    py = sys.executable
    procs = [Proc(f"calendar.{i}", [py, "-m", "services.calendar"]) for i in range(calendar)]
    procs += [Proc(f"booking.{i}", [py, "-m", "services.booking"]) for i in range(booking)]
    procs.append(Proc("chat", [py, "-m", "services.chat"]))
    return procs


def _pump(name: str, stream: object) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:<11}| {line}")
        sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calendar", type=int, default=1, help="calendar worker processes")
    parser.add_argument("--booking", type=int, default=1, help="booking worker processes")
    args = parser.parse_args()
    children: list[tuple[Proc, subprocess.Popen[str]]] = []
    for proc in plan(args.calendar, args.booking):
        child = subprocess.Popen(
            proc.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
        )
        threading.Thread(target=_pump, args=(proc.name, child.stdout), daemon=True).start()
        children.append((proc, child))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host, port = os.environ.get("CHAT_HOST", "127.0.0.1"), os.environ.get("CHAT_PORT", "8000")
    print(f"runner     | chat API on http://{host}:{port} (docs at /docs); Ctrl-C stops everything", flush=True)
    code = 0
    while not stop.is_set():
        for proc, child in children:
            if child.poll() is not None:
                print(f"runner     | {proc.name} exited with {child.returncode}; stopping", flush=True)
                code = child.returncode or 1
                stop.set()
        stop.wait(0.5)
    for _, child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 10
    for _, child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
