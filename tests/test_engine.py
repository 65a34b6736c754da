"""The engine end to end: errors per stage/frame, max-frames, concurrency, SIGTERM/Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest

from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import ROOT, run_cli, write

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
    assert "\npipeline 'cam': stage 'flaky' failed on frame 1: ZeroDivisionError: bad frame at " in res.stderr
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


def test_missing_or_broken_video_file_is_a_config_error(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          a: {source: missing.mp4, sinks: [null]}
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 2
    assert str(tmp_path / "missing.mp4") in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "missing.mp4").write_text("not a video")
    res = run_cli("run", str(cfg))
    assert res.returncode == 2
    assert f"p.yaml:2:15: pipelines.a.source: cannot open video file {tmp_path / 'missing.mp4'}: not a video" \
        in res.stderr and "Traceback" not in res.stderr


def test_unwritable_output_folder_is_a_config_error(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: pattern
            sinks: [{video: {path: /proc/streamcnn/x.mp4}}]
        """)
    res = run_cli("validate", str(cfg))
    assert res.returncode == 2
    assert res.stderr.strip().endswith("cannot write /proc/streamcnn/x.mp4: the folder /proc is not writable")


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


def test_default_pipelines_yaml_runs(default_pipelines, tmp_path):
    res = run_cli("run", str(default_pipelines), "--pipeline", "demo", "--max-frames", "10", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out" / "demo_edges.jsonl"
    assert len(out.read_text().splitlines()) == 10


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_version_and_help():
    for args in (["--help"], ["run", "--help"], ["validate", "--help"], ["plugins", "--help"]):
        res = run_cli(*args)
        assert res.returncode == 0 and "Usage:" in res.stdout


BAD_STAGES = '''
import numpy as np
import streamcnn

class Forgot(streamcnn.Stage):
    def process(self, frame):
        frame.meta["x"] = 1

class Floaty(streamcnn.Stage):
    def process(self, frame):
        frame.image = frame.image.astype(np.float32)
        return frame

class NotAStage:
    pass

@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"forgot": Forgot, "floaty": Floaty}

@streamcnn.hookimpl
def streamcnn_frame_done(pipeline, frame):
    if frame.index == 1:
        raise RuntimeError("hook boom")
'''


@pytest.mark.parametrize("stage, reason", [
    ("forgot", "TypeError: process() returned None; it must return the Frame"),
    ("floaty", "TypeError: frame.image must be a uint8 H×W×3 BGR array, got a float32 array of shape (24, 32, 3)"),
])
def test_stage_output_is_checked_and_handled_by_on_error(tmp_path, stage, reason):
    write(tmp_path / "bad.py", BAD_STAGES)
    cfg = write(tmp_path / "p.yaml", f"""
        plugins: [./bad.py]
        pipelines:
          cam:
            source: {{uri: pattern, size: 32x24, frames: 3}}
            stages: [{stage}]
            sinks: [{{video: {{path: out.mp4}}}}]
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 1, res.stderr
    assert f"pipeline 'cam': stage '{stage}' failed on frame 0: {reason}" in res.stderr
    assert "pipeline 'cam': no frame got through: a stage failed on all 3 frames" in res.stderr
    assert "Traceback" not in res.stderr


def test_raising_hook_is_reported_with_plugin_names(tmp_path):
    write(tmp_path / "bad.py", BAD_STAGES)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./bad.py]
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 3}
            sinks: [{jsonl: {path: out.jsonl}}]
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 0, res.stderr
    assert f"pipeline 'cam': hook streamcnn_frame_done of plugin '{tmp_path / 'bad.py'}' raised on frame 1: " \
           f"RuntimeError: hook boom at {tmp_path / 'bad.py'}:" in res.stderr
    assert "Traceback" not in res.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3


def test_non_stage_class_marks_the_plugin_failed(tmp_path):
    write(tmp_path / "bad.py", BAD_STAGES.replace('"floaty": Floaty}', '"floaty": Floaty, "nope": NotAStage}'))
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./bad.py]
        pipelines:
          cam: {source: pattern}
        """)
    res = run_cli("validate", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "streamcnn_stage_types() registers 'nope' as <class" in res.stderr
    assert "which is not a subclass of streamcnn.Stage" in res.stderr


def test_two_sinks_writing_one_file_is_a_config_error(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          a:
            source: pattern
            sinks: [{jsonl: {path: out/same.jsonl}}]
          b:
            source: pattern
            sinks:
              - jsonl: {path: ./out/../out/same.jsonl}
        """)
    res = run_cli("validate", str(cfg))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"{cfg}:8:9: pipelines.b.sinks[0].jsonl: jsonl sink writes {tmp_path / 'out' / 'same.jsonl'}, which the "
        "jsonl sink of pipeline 'a' (pipelines.a.sinks[0].jsonl, line 4) writes too; give each sink its own path")


def test_yaml_conveniences(tmp_path):
    # `- null: {}` is the null sink; top-level x- keys hold anchors; -p twice runs once
    cfg = write(tmp_path / "p.yaml", """
        x-cam: &cam {uri: pattern, size: 16x16, frames: 2}
        pipelines:
          a:
            source: *cam
            sinks: [{null: {}}, {jsonl: {path: a.jsonl}}]
        """)
    res = run_cli("run", str(cfg), "-p", "a", "-p", "a")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("a: 2 frames") == 1
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 2


def test_missing_source_points_at_the_pipeline(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          demo:
            stages: []
        """)
    res = run_cli("validate", str(cfg))
    assert res.stderr.strip() == f"{cfg}:2:3: pipelines.demo.source: missing required key 'source' for pipeline 'demo'"


def test_pipeline_placeholder_in_output_paths_and_raising_stop_hook(tmp_path):
    write(tmp_path / "hooks.py", """
        import streamcnn

        @streamcnn.hookimpl
        def streamcnn_pipeline_stopped(pipeline, stats):
            raise ValueError("stop hook boom")
        """)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./hooks.py]
        x-sinks: &sinks [{jsonl: {path: "out/{pipeline}.jsonl"}}]
        pipelines:
          a: {source: {uri: pattern, size: 16x16, frames: 3}, sinks: *sinks}
          b: {source: {uri: pattern, size: 16x16, frames: 4}, sinks: *sinks}
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 0, res.stderr
    assert len((tmp_path / "out" / "a.jsonl").read_text().splitlines()) == 3
    assert len((tmp_path / "out" / "b.jsonl").read_text().splitlines()) == 4
    for name in "ab":
        assert f"pipeline '{name}': hook streamcnn_pipeline_stopped of plugin '{tmp_path / 'hooks.py'}' raised: " \
               f"ValueError: stop hook boom at {tmp_path / 'hooks.py'}:" in res.stderr
    assert "Traceback" not in res.stderr


def test_default_pipelines_on_a_fresh_offline_machine(tmp_path):
    """No assets, no cache, no network: `demo` runs, the optional pipelines are left out (rc 0);
    asking for one by name insists (a configuration error naming what is missing)."""
    env = {"STREAMCNN_ASSETS": str(tmp_path / "none"), "STREAMCNN_CACHE": str(tmp_path / "cache"),
           "STREAMCNN_OFFLINE": "1"}
    (tmp_path / "none").mkdir()
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text((ROOT / "pipelines.yaml").read_text())
    res = run_cli("run", str(cfg), "--max-frames", "5", env=env)
    assert res.returncode == 0, res.stderr
    assert "demo: 5 frames" in res.stderr
    for name in ("street", "faces", "starry"):
        assert f"optional pipeline '{name}' left out: " in res.stderr
    assert "optional pipeline 'street' left out: video file 'vtest.avi' not found (downloads are off" in res.stderr
    res = run_cli("validate", str(cfg), env=env)
    assert res.returncode == 0 and "OK (1 pipeline(s) ready, 3 optional one(s) left out)" in res.stdout
    res = run_cli("run", str(cfg), "--pipeline", "street", env=env)
    assert res.returncode == 2
    assert "pipelines.street.stages[0].yolo: model 'yolox_nano_coco_416' not found (downloads are off" in res.stderr
