"""The engine end to end: errors per stage/frame, max-frames, concurrency, SIGTERM/Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import pytest

from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import ROOT, run_cli

FLAKY = '''
import streamcnn

class Flaky(streamcnn.Stage):
    class Params(streamcnn.Params):
        every: int = 2

    def process(self, frame):
        if frame.index % self.params.every == 1:
            raise ZeroDivisionError("bad frame")
        return frame

@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"flaky": Flaky}
'''


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_stage_error_skips_frame_and_names_stage_and_index(tmp_path, caplog):
    write(tmp_path / "flaky.py", FLAKY)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./flaky.py]
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 6}
            stages: [flaky]
            sinks: [{jsonl: {path: out.jsonl}}]
        """)
    with caplog.at_level(logging.ERROR):
        stats = Engine(load_config(cfg)).run()[0]
    assert [json.loads(x)["index"] for x in (tmp_path / "out.jsonl").read_text().splitlines()] == [0, 2, 4]
    assert stats.frames == 3 and stats.skipped == 3 and stats.error is None
    assert "pipeline 'cam': stage 'flaky' failed on frame 1: ZeroDivisionError: bad frame" in caplog.text
    assert "Traceback" not in caplog.text


def test_stage_error_with_on_error_stop_fails_the_run(tmp_path):
    write(tmp_path / "flaky.py", FLAKY)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./flaky.py]
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 6}
            stages: [flaky]
            sinks: [{jsonl: {path: out.jsonl}}]
            on_error: stop
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 1
    assert "pipeline 'cam' failed: pipeline 'cam': stage 'flaky' failed on frame 1: ZeroDivisionError" in res.stderr
    assert "Traceback" not in res.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1


def test_max_frames_and_concurrent_pipelines(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: {uri: pattern, size: 64x48, frames: null}
            stages: [{edges: {kernel: vertical}}]
            sinks: [{jsonl: {path: a.jsonl}}, {video: {path: a.mp4}}]
          b:
            source: {uri: pattern, size: 32x32, frames: 5}
            sinks: [{jsonl: {path: b.jsonl}}]
        """)
    res = run_cli("run", str(cfg), "--max-frames", "7")
    assert res.returncode == 0, res.stderr
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["index"] for r in a] == list(range(7)) and [r["index"] for r in b] == list(range(5))
    assert all(r["pipeline"] == "a" for r in a) and (a[0]["width"], a[0]["height"]) == (64, 48)
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    # --pipeline picks one; a wrong name is a config error with a suggestion
    res = run_cli("run", str(cfg), "--pipeline", "bb")
    assert res.returncode == 2 and "no pipeline named 'bb' — did you mean 'b'?" in res.stderr


def test_source_error_is_runtime_failure(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          a: {source: missing.mp4, sinks: [null]}
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 1
    assert str(tmp_path / "missing.mp4") in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_flushes_and_closes_sinks(tmp_path, sig):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          live:
            source: {uri: pattern, size: 160x120, fps: 25, frames: null, policy: all}
            stages: [{edges: {kernel: sobel}}]
            sinks: [{video: {path: out/live.mp4}}, {jsonl: {path: out/live.jsonl}}]
        """)
    proc = subprocess.Popen([sys.executable, "-m", "streamcnn", "run", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = tmp_path / "out" / "live.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"{signal.Signals(sig).name} received: stopping" in err
    text = jsonl.read_text()
    assert text.endswith("\n")
    records = [json.loads(x) for x in text.splitlines()]
    assert len(records) >= 20
    assert [r["index"] for r in records] == list(range(len(records)))
    cap = cv2.VideoCapture(str(tmp_path / "out" / "live.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == len(records)


def test_default_pipelines_yaml_runs(tmp_path):
    res = run_cli("run", str(ROOT / "pipelines.yaml"), "--pipeline", "demo", "--max-frames", "10", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = ROOT / "out" / "demo_edges.jsonl"
    assert len(out.read_text().splitlines()) == 10


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_version_and_help():
    for args in (["--help"], ["run", "--help"], ["validate", "--help"], ["plugins", "--help"]):
        res = run_cli(*args)
        assert res.returncode == 0 and "Usage:" in res.stdout
