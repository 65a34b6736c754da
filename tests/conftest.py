"""Shared fixtures. Real media and models come from STREAMCNN_ASSETS (default ../shared)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests never download: models and media come from STREAMCNN_ASSETS (default ../shared) only.
# When STREAMCNN_ASSETS is given (as .ci/run does), a real-media test that cannot find its file
# fails instead of skipping, so a green run always means the real models ran.
ASSETS_REQUIRED = bool(os.environ.get("STREAMCNN_ASSETS"))
os.environ["STREAMCNN_OFFLINE"] = "1"
os.environ.setdefault("STREAMCNN_ASSETS", str(ROOT.parent / "shared"))


def missing_asset(reason: str) -> NoReturn:
    """Skip the test for a missing real model or media file, or fail it when STREAMCNN_ASSETS is set."""
    if ASSETS_REQUIRED:
        pytest.fail(f"{reason} (STREAMCNN_ASSETS is set, so the real-media tests must run)", pytrace=False)
    pytest.skip(reason)


def need(*files: Path) -> None:
    """`missing_asset` for the first of ``files`` that is not a file (real models and media)."""
    for f in files:
        if not Path(f).is_file():
            missing_asset(f"real asset {f} not found (set STREAMCNN_ASSETS to the shared folder)")


def assets_dir() -> Path:
    return Path(os.environ.get("STREAMCNN_ASSETS", str(ROOT.parent / "shared"))).expanduser().resolve()


@pytest.fixture
def assets() -> Path:
    """The shared assets folder (models/, media/); skips the test when it is absent."""
    path = assets_dir()
    if not (path / "media").is_dir():
        missing_asset(f"real media not found: STREAMCNN_ASSETS={path} has no media/ folder")
    return path


def media(assets: Path, name: str) -> Path:
    path = assets / "media" / name
    if not path.is_file():
        missing_asset(f"real media file {path} not found")
    return path


def write(path: Path, text: str) -> Path:
    """Write ``text`` (dedented, leading newline dropped) to ``path``; returns ``path``."""
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run ``python -m streamcnn ARGS`` and return the CompletedProcess (text mode)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "streamcnn", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture
def default_pipelines(tmp_path) -> Path:
    """A copy of the repository's pipelines.yaml in ``tmp_path`` (outputs land in tmp_path/out)."""
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text((ROOT / "pipelines.yaml").read_text())
    return cfg


def wait_until(pred, timeout: float = 10.0, poll: float = 0.01) -> bool:
    """Poll ``pred()`` until it is true or ``timeout`` seconds pass (a hang guard, not a speed limit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(poll)
    return pred()


def take_frames(reader, n: int, timeout: float = 10.0) -> list:
    """``n`` frames from a `SourceReader` (fails the test when they do not come within ``timeout`` s)."""
    from streamcnn.engine.buffer import BufferEmpty

    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        try:
            frames.append(reader.get(timeout=0.1))
        except BufferEmpty:
            continue
    assert len(frames) == n, f"got {len(frames)} of {n} frames within {timeout} s (error: {reader.error})"
    return frames
