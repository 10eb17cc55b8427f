"""Real worker processes (`python -m services.booking`, `python -m services.calendar`) for fault
tests and benchmarks: start, wait until their consumer joined the group, SIGKILL, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testkit.redis_cluster import is_cluster_url

ROOT = Path(__file__).resolve().parents[1]
READY_LINE = b"FastStream app started successfully"


class WorkerProcess:
    """One worker OS process with its own INSTANCE_ID (so its consumer name is unique)."""

    def __init__(self, module: str, redis_url: str, instance_id: str, **env: str | int) -> None:
        self.module = module
        self.instance_id = instance_id
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "REDIS_CLUSTER": "true" if is_cluster_url(redis_url) else "false",
            "INSTANCE_ID": instance_id,
            "SEED_CALENDARS_FILE": "",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **{key: str(value) for key, value in env.items()},
        }
        self.log = Path(tempfile.gettempdir()) / f"worker-{instance_id}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def started(self) -> bool:
        """Whether it has reported its start (without waiting)."""
        try:
            return self.alive and READY_LINE in self.log.read_bytes()
        except OSError:
            return False

    async def ready(self, timeout_s: float = 30.0) -> None:
        """Wait until the FastStream app reports it started (its subscribers are polling).

        Redis 7.0 lists a consumer in XINFO CONSUMERS only once it was handed an entry, so the
        process's own start-up line is the signal."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.instance_id} exited early:\n{self.tail()}")
            if READY_LINE in self.log.read_bytes():
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.instance_id} did not start:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no ack; whatever it held stays pending."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait for the exit code (graceful shutdown)."""
        assert self.process is not None
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def stop(self) -> None:
        """Best-effort end: SIGTERM, then SIGKILL."""
        if self.process is None or not self.alive:
            return
        try:
            self.terminate(5)
        except subprocess.TimeoutExpired:
            self.kill()

    @staticmethod
    def stop_all(processes: list[WorkerProcess], timeout_s: float = 10.0) -> None:
        """SIGTERM every live one at once, then wait; SIGKILL whatever does not exit in time."""
        for proc in processes:
            if proc.process is not None and proc.alive:
                proc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in processes:
            if proc.process is None:
                continue
            try:
                proc.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
