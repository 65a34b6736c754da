"""Each object built in one place: validate builds and closes, the run builds its own source,
stages and sinks; sinks learn the stream through `Sink.open`, declare their outputs, and are
covered by ``on_error`` like stages."""

from __future__ import annotations

import json
import logging

from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import run_cli, write

RECORDER = '''
from pathlib import Path

import streamcnn

LOG = Path(__file__).with_name("calls.txt")


def call(what):
    with LOG.open("a") as fh:
        fh.write(what + "\\n")


class Count(streamcnn.Stage):
    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        call("stage init")

    def process(self, frame):
        frame.image = frame.image[: frame.height // 2]  # the sinks see the stage's output size
        return frame

    def close(self):
        call("stage close")


class Recorder(streamcnn.Sink):
    class Params(streamcnn.Params):
        path: str = "rec.txt"
        fail_on: int = -1

    @classmethod
    def outputs(cls, params, ctx):
        return [streamcnn.Output.file(ctx.output_path(params.path))]

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        call("sink init")

    def open(self, stream):
        super().open(stream)
        call(f"sink open {stream.fps} {stream.width}x{stream.height}")

    def write(self, frame):
        if frame.index == self.params.fail_on:
            raise OSError(28, "No space left on device")
        call(f"sink write {frame.index}")

    def close(self):
        call("sink close")


@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"count": Count}


@streamcnn.hookimpl
def streamcnn_sink_types():
    return {"recorder": Recorder}
'''


def _plugin(tmp_path):
    """Write the recording plugin; returns a function that reads (and resets) the calls it logged."""
    write(tmp_path / "recorder_plugin.py", RECORDER)
    log = tmp_path / "calls.txt"

    def calls() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return lines

    return calls


def test_validate_builds_and_closes_and_the_run_builds_its_own(tmp_path):
    calls = _plugin(tmp_path)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./recorder_plugin.py]
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 3, fps: 10}
            stages: [count]
            sinks: [recorder]
        """)
    config = load_config(cfg, check=True)
    assert calls() == ["stage init", "stage close"]  # validate: built and closed at once; sinks not built
    stats = Engine(config).run()[0]
    assert stats.frames == 3 and stats.error is None
    assert calls() == [
        "stage init", "sink init",  # built by the run, on its thread, before the first frame
        "sink open 10.0 32x12",  # the stream's fps and the size after the stages, once
        "sink write 0", "sink write 1", "sink write 2",
        "sink close", "stage close",
    ]


def test_a_sink_that_raises_is_reported_with_its_name_and_frame_and_skipped(tmp_path, caplog):
    calls = _plugin(tmp_path)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./recorder_plugin.py]
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 4}
            sinks: [{recorder: {fail_on: 1}}, {jsonl: {path: out.jsonl}}]
        """)
    with caplog.at_level(logging.ERROR):
        stats = Engine(load_config(cfg)).run()[0]
    assert stats.frames == 3 and stats.skipped == 1 and stats.error is None
    assert "pipeline 'cam': sink 'recorder' failed on frame 1: OSError: [Errno 28] No space left on device at " \
           in caplog.text
    assert [c for c in calls() if c.startswith("sink write")] == ["sink write 0", "sink write 2", "sink write 3"]
    # the other sink still got every frame
    assert [json.loads(x)["index"] for x in (tmp_path / "out.jsonl").read_text().splitlines()] == [0, 1, 2, 3]


def test_a_sink_that_raises_under_on_error_stop_fails_the_run(tmp_path):
    _plugin(tmp_path)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./recorder_plugin.py]
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 4}
            sinks: [{recorder: {fail_on: 2}}]
            on_error: stop
        """)
    res = run_cli("run", str(cfg))
    assert res.returncode == 1
    assert "pipeline 'cam': sink 'recorder' failed on frame 2: OSError: [Errno 28] No space left on device at " \
           in res.stderr
    assert "Traceback" not in res.stderr


def test_declared_outputs_of_a_third_party_sink_are_checked_against_the_built_ins(tmp_path):
    _plugin(tmp_path)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./recorder_plugin.py]
        pipelines:
          a:
            source: pattern
            sinks: [{jsonl: {path: "out/{pipeline}.txt"}}]
          b:
            source: pattern
            sinks: [{recorder: {path: out/a.txt}}]
        """)
    res = run_cli("validate", str(cfg))
    assert res.returncode == 2
    target = (tmp_path / "out" / "a.txt").resolve()
    assert (f"{cfg}:8:13: pipelines.b.sinks[0].recorder: recorder sink writes {target}, which the jsonl sink of "
            "pipeline 'a' (pipelines.a.sinks[0].jsonl, line 5) writes too; give each sink its own path") in res.stderr
