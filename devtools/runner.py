"""Start the whole system as local processes (no Docker needed): python -m devtools.runner
(over 300 lines: one supervisor of several processes: start order, readiness, restarts with
backoff, log prefixes and the stop of all on Ctrl-C belong together)

    python -m devtools.runner [--model auto|local|none] [--no-demo] [--calendar N] [--booking N]
                              [--metrics-port FIRST]

1. The model: `auto` (default) serves the local model when neither OPENAI_API_KEY nor
   OPENAI_BASE_URL is set (in the environment or `.env`), else uses what they name. `local`
   installs it if needed (scripts/install_local_model.sh: a cached llama-cpp-python wheel and
   hash-checked weights), starts `python -m services.model` and waits until it is healthy; the
   chat process then gets OPENAI_BASE_URL / OPENAI_MODEL pointing at it. `none` starts nothing.
2. The calendar and booking workers and the chat API, against REDIS_URL. Each worker serves its
   Prometheus metrics on its own port (METRICS_PORT): the first free ones from `--metrics-port`
   (9100 by default, 0: any free port) on METRICS_HOST (127.0.0.1 by default); the chat serves
   its own at /metrics. The start banner lists them.
3. A scripted demo conversation through the chat HTTP API (devtools/demo.py), unless --no-demo.

Every child's output is shown with its name in front. A worker that dies is restarted, as a
supervisor would: after 0.5 s, doubling per quick successive death up to 30 s (reset once it
ran a minute), and the log says so; the chat or the model dying stops everything. Ctrl-C or
SIGTERM stops everything: each child gets SIGTERM (chat first, the model last), then SIGKILL
after 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import httpx

from services.model.settings import MODEL_ID as LOCAL_MODEL_ID
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "scripts" / "install_local_model.sh"
MODEL_LOAD_TIMEOUT_S = 300.0
CHAT_START_TIMEOUT_S = 300.0  # with the local model: its prompt prefix is evaluated first (~20-60 s)
STOP_GRACE_S = 10.0
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
RESTART_RESET_AFTER_S = 60.0
"""A worker that ran this long before dying is restarted after RESTART_FIRST_S again."""

ModelChoice = Literal["auto", "local", "none"]
ModelPlan = Literal["local", "configured", "none"]


@dataclass(frozen=True)
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """Variables set for this child on top of the runner's environment."""
    restart: bool = False
    """Restarted with backoff when it dies (the workers); else its death stops everything."""


@dataclass(frozen=True)
class Ports:
    chat_host: str = "127.0.0.1"
    chat_port: int = 8000
    model_host: str = "127.0.0.1"
    model_port: int = 8090
    metrics_host: str = "127.0.0.1"

    @property
    def chat_url(self) -> str:
        return f"http://{self.chat_host}:{self.chat_port}"

    @property
    def model_url(self) -> str:
        return f"http://{self.model_host}:{self.model_port}"


def choose_model(choice: ModelChoice, settings: Settings) -> ModelPlan:
    """What `--model` means with these settings (see the module docstring)."""
    if choice != "auto":
        return "local" if choice == "local" else "none"
    if settings.openai_api_key or settings.openai_base_url:
        return "configured"
    return "local"


def local_model_env(ports: Ports, environ: Mapping[str, str]) -> dict[str, str]:
    """What the chat process needs to talk to the local model server (explicit settings win
    for the tuning knobs, never for where the model is)."""
    env = {"OPENAI_BASE_URL": f"{ports.model_url}/v1", "OPENAI_MODEL": LOCAL_MODEL_ID}
    # Deterministic replies; a call on 2 cores takes seconds, a cold one tens of seconds.
    for name, value in (
        ("OPENAI_TEMPERATURE", "0"),
        ("OPENAI_TIMEOUT_S", "300"),
        ("OPENAI_MAX_RETRIES", "0"),
        ("MODEL_ALLOWED_TOOLS", "true"),
        ("MODEL_WARMUP", "true"),
    ):
        if name not in environ:
            env[name] = value
    return env


def free_ports(host: str, first: int, count: int) -> list[int]:
    """`count` ports that can be bound on `host` now: the first free ones from `first` upwards,
    or any free ones (chosen by the system) when `first` is 0."""
    found: list[int] = []
    candidates: Sequence[int] = range(first, 65536) if first else [0] * (4 * count)
    for port in candidates:
        if len(found) == count:
            break
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            bound = int(sock.getsockname()[1])
        if bound not in found:
            found.append(bound)
    if len(found) < count:
        raise RuntimeError(f"no {count} free ports from {first} on {host}")
    return found


def plan(
    calendar: int,
    booking: int,
    *,
    model: ModelPlan = "none",
    ports: Ports | None = None,
    log_level: str | None = None,
    metrics_ports: Sequence[int] = (),
) -> list[Proc]:
    """The processes in start order: model server (if local), workers, chat API. `log_level`
    is LOG_LEVEL for the workers and the chat (None: theirs, INFO by default). `metrics_ports`
    are the workers' METRICS_PORTs in start order (calendar first; empty: none)."""
    ports = ports or Ports()
    if metrics_ports and len(metrics_ports) != calendar + booking:
        raise ValueError(f"{calendar + booking} workers need as many metrics ports, got {len(metrics_ports)}")
    py = sys.executable
    procs: list[Proc] = []
    chat_env = {"CHAT_HOST": ports.chat_host, "CHAT_PORT": str(ports.chat_port)}
    common = {"LOG_LEVEL": log_level} if log_level else {}
    chat_env |= common
    if model == "local":
        model_env = {"MODEL_HOST": ports.model_host, "MODEL_PORT": str(ports.model_port)}
        procs.append(Proc("model", [py, "-m", "services.model"], model_env))
        chat_env |= local_model_env(ports, os.environ)
    workers = [("calendar", i) for i in range(calendar)] + [("booking", i) for i in range(booking)]
    for n, (kind, i) in enumerate(workers):
        env = dict(common)
        if metrics_ports:
            env |= {"METRICS_HOST": ports.metrics_host, "METRICS_PORT": str(metrics_ports[n])}
        procs.append(Proc(f"{kind}.{i}", [py, "-m", f"services.{kind}"], env, restart=True))
    procs.append(Proc("chat", [py, "-m", "services.chat"], chat_env))
    return procs


# Routine lines hidden unless --verbose: FastStream logs every message at INFO whatever
# LOG_LEVEL says, and the runner's own health polls would show up in the access logs.
NOISE = (re.compile(r" - (Received|Processed)\s*$"), re.compile(r'"GET /(healthz|readyz) HTTP/1\.1"'))


def say(name: str, line: str) -> None:
    sys.stdout.write(f"{name:<11}| {line.rstrip()}\n")
    sys.stdout.flush()


def _pump(name: str, stream: IO[str], quiet: bool = False) -> None:
    for line in iter(stream.readline, ""):
        if not (quiet and any(p.search(line) for p in NOISE)):
            say(name, line)


class Supervisor:
    """The children, their output, and one stop flag that Ctrl-C / SIGTERM / a dead child sets."""

    def __init__(self, quiet: bool = True) -> None:
        self.children: list[tuple[Proc, subprocess.Popen[str]]] = []
        self.stop = threading.Event()
        self.code = 0
        self.quiet = quiet
        self._started: dict[str, float] = {}
        self._restarts: dict[str, int] = {}
        self._due: dict[str, float] = {}

    def start(self, proc: Proc) -> subprocess.Popen[str]:
        child = self._spawn(proc)
        self.children.append((proc, child))
        return child

    def _spawn(self, proc: Proc) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            proc.argv,
            cwd=ROOT,
            env={**os.environ, **proc.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches only the runner, which stops children in order
            preexec_fn=_die_with_parent,
        )
        assert child.stdout is not None
        threading.Thread(target=_pump, args=(proc.name, child.stdout, self.quiet), daemon=True).start()
        self._started[proc.name] = time.monotonic()
        return child

    def check(self) -> None:
        """Restart a dead worker with backoff; stop everything when another child has exited."""
        for n, (proc, child) in enumerate(self.children):
            if child.poll() is None or self.stop.is_set():
                continue
            if not proc.restart:
                say("runner", f"{proc.name} exited with {child.returncode}; stopping everything")
                self.code = child.returncode or 1
                self.stop.set()
                continue
            now = time.monotonic()
            due = self._due.get(proc.name)
            if due is None:
                ran = now - self._started.get(proc.name, now)
                deaths = 0 if ran > RESTART_RESET_AFTER_S else self._restarts.get(proc.name, 0)
                delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2**deaths)
                self._restarts[proc.name] = deaths + 1
                self._due[proc.name] = now + delay
                say(
                    "runner",
                    f"{proc.name} exited with {child.returncode}; restarting it in {delay:.1f} s "
                    f"(restart {deaths + 1} in a row)",
                )
            elif now >= due:
                del self._due[proc.name]
                replacement = self._spawn(proc)
                self.children[n] = (proc, replacement)
                say("runner", f"{proc.name} restarted (pid {replacement.pid})")

    def wait_until(self, ready: Callable[[], bool | None], timeout: float, what: str) -> bool:
        """Poll `ready` (True: go on, None: keep waiting, False: give up) while nothing stopped."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            self.check()
            state = ready()
            if state is not None:
                return state
            if time.monotonic() > deadline:
                say("runner", f"{what} did not become ready within {timeout:.0f} s; stopping")
                return False
            self.stop.wait(0.5)
        return False

    def shutdown(self) -> None:
        for _, child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc, child in reversed(self.children):
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say("runner", f"{proc.name} did not stop within {STOP_GRACE_S:.0f} s; killing it")
                child.kill()
                child.wait()


def model_health(url: str) -> bool | None:
    """True when the model server is ready, False when it cannot load, None while it loads."""
    try:
        response = httpx.get(f"{url}/healthz", timeout=5)
        body = response.json()
    except (httpx.HTTPError, ValueError):  # not up yet, or something else on the port
        return None
    if response.status_code == 200:
        return True
    if body.get("status") == "unavailable":
        say("runner", f"the local model cannot load: {body.get('detail')}")
        say("runner", "fix: bash scripts/install_local_model.sh (or set OPENAI_API_KEY to use OpenAI)")
        return False
    return None


def chat_health(url: str) -> bool | None:
    """Ready: Redis and the consumer groups answer and (local model) the prompt is warm; a chat
    without any model configured still counts as started (the demo then says so)."""
    try:
        checks = httpx.get(f"{url}/readyz", timeout=5).json().get("checks", {})
    except (httpx.HTTPError, ValueError):
        return None
    return True if all(checks.get(name) for name in ("redis", "groups", "model_warm")) else None


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child, before exec: on Linux the child gets SIGTERM when the runner dies, even when
    the runner is killed outright (SIGKILL), so no worker or model server is left orphaned."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def install_local_model(stop: threading.Event) -> bool:
    """Run the idempotent install script (seconds when everything is cached)."""
    say("runner", f"checking the local model: {INSTALL_SCRIPT.relative_to(ROOT)}")
    child = subprocess.Popen(
        ["bash", str(INSTALL_SCRIPT)],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    _pump("install", child.stdout)
    code = child.wait()
    if code != 0 and not stop.is_set():
        say("runner", "the local model could not be installed (see above); set OPENAI_API_KEY to use OpenAI instead")
    return code == 0


def run_demo_thread(ports: Ports, settings: Settings, sup: Supervisor) -> threading.Thread:
    from devtools.demo import report, run_demo  # imported late: only the demo needs it

    def echo(line: str) -> None:
        if not sup.stop.is_set():
            say("demo", line)

    async def demo() -> None:
        async with httpx.AsyncClient(base_url=ports.chat_url, timeout=600) as http:
            result = await run_demo(http, settings.redis_url, tenant=settings.default_tenant, echo=echo)
        report(result, echo)

    def main() -> None:
        try:
            asyncio.run(demo())
        except Exception as exc:  # the demo is a show: a failure must not stop the system
            echo(f"the demo stopped: {type(exc).__name__}: {exc}")
        echo(f"the system keeps running: chat at {ports.chat_url}/ (web page), Ctrl-C stops everything")

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread


def describe(
    model: ModelPlan, ports: Ports, settings: Settings, calendar: int, booking: int, procs: Sequence[Proc] = ()
) -> list[str]:
    """Where each part listens, as printed at start (`procs`: the workers' metrics ports)."""
    if model == "local":
        where = f"{ports.model_url}/v1 (local {LOCAL_MODEL_ID}, health {ports.model_url}/healthz)"
    elif model == "configured":
        where = f"{settings.openai_base_url or 'https://api.openai.com/v1'} ({settings.openai_model})"
    else:
        where = "none started (the chat uses OPENAI_BASE_URL / OPENAI_API_KEY if set)"
    lines = [
        f"model     : {where}",
        f"workers   : calendar x{calendar}, booking x{booking} on {settings.redis_url}",
    ]
    lines += [
        f"metrics   : {p.name} http://{p.env['METRICS_HOST']}:{p.env['METRICS_PORT']}/metrics"
        for p in procs
        if "METRICS_PORT" in p.env
    ]
    lines.append(f"chat API  : {ports.chat_url} (web page /, docs /docs, health /healthz, metrics /metrics)")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["auto", "local", "none"], default="auto")
    parser.add_argument("--no-demo", action="store_true", help="skip the scripted demo conversation")
    parser.add_argument("--no-install", action="store_true", help="do not run the local model's install script")
    parser.add_argument(
        "--verbose", action="store_true", help="show every log line (default: warnings, the model's timings, the demo)"
    )
    parser.add_argument("--calendar", type=int, default=1, help="calendar worker processes")
    parser.add_argument("--booking", type=int, default=1, help="booking worker processes")
    parser.add_argument("--chat-port", type=int, default=int(os.environ.get("CHAT_PORT", "8000")))
    parser.add_argument("--model-port", type=int, default=int(os.environ.get("MODEL_PORT", "8090")))
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("METRICS_PORT", "9100")),
        help="first port tried for the workers' metrics, one each (0: any free ports)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings()
    ports = Ports(
        chat_host=os.environ.get("CHAT_HOST", "127.0.0.1"),
        chat_port=args.chat_port,
        model_host=os.environ.get("MODEL_HOST", "127.0.0.1"),
        model_port=args.model_port,
        metrics_host=os.environ.get("METRICS_HOST", "127.0.0.1"),
    )
    model = choose_model(args.model, settings)
    sup = Supervisor(quiet=not args.verbose)
    signal.signal(signal.SIGINT, lambda *_: sup.stop.set())
    signal.signal(signal.SIGTERM, lambda *_: sup.stop.set())
    try:
        return _run(args, settings, ports, model, sup)
    finally:
        sup.shutdown()
        say("runner", "stopped")


def _run(args: argparse.Namespace, settings: Settings, ports: Ports, model: ModelPlan, sup: Supervisor) -> int:
    if model == "local" and not args.no_install and not install_local_model(sup.stop):
        return 1
    quiet = not args.verbose and "LOG_LEVEL" not in os.environ
    metrics_ports = free_ports(ports.metrics_host, args.metrics_port, args.calendar + args.booking)
    procs = plan(
        args.calendar,
        args.booking,
        model=model,
        ports=ports,
        log_level="WARNING" if quiet else None,
        metrics_ports=metrics_ports,
    )
    for line in describe(model, ports, settings, args.calendar, args.booking, procs):
        say("runner", line)
    for proc in procs:
        if sup.stop.is_set():
            return sup.code
        sup.start(proc)
        if proc.name == "model":
            say("runner", "loading the local model (hash check and load take a few seconds)")
            if not sup.wait_until(lambda: model_health(ports.model_url), MODEL_LOAD_TIMEOUT_S, "the model"):
                return sup.code or 1
            say("runner", f"model ready at {ports.model_url}/v1")
    if model == "local":
        say("runner", "warming the model's prompt (its long stable prefix, once)")
    if not sup.wait_until(lambda: chat_health(ports.chat_url), CHAT_START_TIMEOUT_S, "the chat API"):
        return sup.code or 1
    say("runner", f"ready: chat API on {ports.chat_url}; Ctrl-C stops everything")
    if not args.no_demo:
        run_demo_thread(ports, settings, sup)
    while not sup.stop.is_set():
        sup.check()
        sup.stop.wait(0.25)
    return sup.code


if __name__ == "__main__":
    raise SystemExit(main())
