"""Where the tests' real Redis comes from: REDIS_URL, else the local server, else a
testcontainers Redis when a Docker engine answers, else a clear skip. And a private
`redis-server` a test can restart (RedisServer), or a benchmark throws away (private_redis)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

from testkit.serving import free_port


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def redis_base_url() -> Iterator[str | None]:
    """Yield a Redis URL without a database number, or None with nothing available."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        return
    local = "redis://127.0.0.1:6379"
    if _answers(local):
        yield local
        return
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        from testcontainers.redis import RedisContainer
    try:
        container = RedisContainer("redis:7-alpine")
        container.start()
    except Exception:  # no Docker engine
        yield None
        return
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}"
    finally:
        container.stop()


class RedisServer:
    """A private `redis-server` on a free loopback port, in its own directory (AOF on by
    default), that a test can stop (SHUTDOWN or SIGKILL) and start again on the same port."""

    def __init__(
        self,
        workdir: str,
        *,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        extra: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.args = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            appendfsync,
            "--dir",
            workdir,
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen([self.binary, *self.args], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    client.close()
                    return self
            time.sleep(0.02)
        raise TimeoutError(f"redis-server on {self.port} did not start")

    def shutdown(self) -> None:
        """SHUTDOWN: the server writes its AOF and exits; clients see their connections closed."""
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=self.port).shutdown(nosave=False)
        if self.process is not None:
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: no goodbye; clients find dead connections."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@contextlib.contextmanager
def private_redis(url: str | None = None, appendfsync: str | None = None) -> Iterator[str]:
    """Yield `url` when given, else the URL of a fresh redis-server that nothing else can touch:
    without persistence, or with an append-only file fsynced per `appendfsync` (everysec, always, no)."""
    if url:
        yield url
        return
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server not found: pass --redis-url")
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(workdir, appendonly=appendfsync is not None, appendfsync=appendfsync or "everysec")
        try:
            yield server.start().url
        finally:
            server.shutdown()
