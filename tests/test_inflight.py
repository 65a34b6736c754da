"""Frames in flight: stateless stages on several frames at once, in order at the sinks, bounded."""

from __future__ import annotations

import json
import logging

from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import write

PLUGIN = '''
import threading
import time
import streamcnn

LOG = []          # (stage, frame index, thread name) per call, in call order
LOCK = threading.Lock()
NOW = {"busy": 0, "max": 0}

class Work(streamcnn.Stage):
    """Stateless: sleeps a frame-dependent time (later frames finish first), tags the frame."""
    stateless = True

    class Params(streamcnn.Params):
        fail_on: int = -1
        barrier: int = 0          # the first calls wait until this many are running at once

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.barrier = threading.Barrier(params.barrier, timeout=10) if params.barrier else None

    def process(self, frame):
        with LOCK:
            NOW["busy"] += 1
            NOW["max"] = max(NOW["max"], NOW["busy"])
            LOG.append(("work", frame.index, threading.current_thread().name))
        try:
            if self.barrier is not None and frame.index < self.params.barrier:
                self.barrier.wait()
            time.sleep(0.002 * (3 - frame.index % 4))
            if frame.index == self.params.fail_on:
                raise ValueError(f"cannot do frame {frame.index}")
            frame.meta["work"] = frame.index * 10
            return frame
        finally:
            with LOCK:
                NOW["busy"] -= 1

class Batched(Work):
    """Records the size of each process_batch call."""
    SIZES = []

    def process_batch(self, frames):
        Batched.SIZES.append(len(frames))
        if any(f.index == self.params.fail_on for f in frames):
            raise RuntimeError("the batch failed")
        return [self.process(f) for f in frames]

class Order(streamcnn.Stage):
    """Stateful: must see frames strictly in order."""

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.last = -1

    def process(self, frame):
        LOG.append(("order", frame.index, threading.current_thread().name))
        assert frame.index > self.last, (frame.index, self.last)
        self.last = frame.index
        frame.meta["order"] = frame.index
        return frame

@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"work": Work, "batched": Batched, "order": Order}
'''


def _run(tmp_path, stages: str, frames: int = 24, extra: str = "", runtime: str = "{in_flight: 3}", **engine):
    write(tmp_path / "inflight_plugin.py", PLUGIN)
    cfg = write(tmp_path / "p.yaml", f"""
        plugins: [./inflight_plugin.py]
        runtime: {runtime}
        pipelines:
          cam:
            source: {{uri: pattern, size: 32x24, frames: {frames}}}
            stages: {stages}
            sinks: [{{jsonl: {{path: out.jsonl}}}}]
{extra}
        """)
    config = load_config(cfg)
    module = next(m for m in config.plugins.pm.get_plugins() if getattr(m, "__file__", "").endswith("inflight_plugin.py"))
    engine = Engine(config, **engine)
    stats = engine.run()[0]
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    return stats, records, module, engine


def test_frames_reach_the_sinks_in_order_with_their_own_results(tmp_path):
    stats, records, mod, engine = _run(tmp_path, "[work, order]")
    assert engine.runs[0].in_flight == 3
    assert [r["index"] for r in records] == list(range(24))
    assert stats.frames == 24 and stats.error is None
    # the stateless stage ran on the three workers; the stateful one on the pipeline thread only
    work_threads = {t for s, _, t in mod.LOG if s == "work"}
    assert work_threads <= {"streamcnn-cam-stage_0", "streamcnn-cam-stage_1", "streamcnn-cam-stage_2"}
    assert len(work_threads) >= 2
    assert {t for s, _, t in mod.LOG if s == "order"} == {"pipeline-cam"}
    assert [i for s, i, _ in mod.LOG if s == "order"] == list(range(24))
    # the later frames finished first in the workers (sleep 6, 4, 2, 0 ms), yet arrived in order
    assert mod.NOW["max"] <= 3


def test_in_flight_frames_really_overlap(tmp_path):
    # the first 2 frames wait for each other: passes only when two are in the stage at once
    stats, records, mod, _ = _run(tmp_path, "[{work: {barrier: 2}}]", frames=6, runtime="{in_flight: 2}")
    assert stats.skipped == 0 and stats.frames == 6
    assert mod.NOW["max"] == 2


def test_one_frame_in_flight_never_overlaps(tmp_path):
    stats, _, mod, _ = _run(tmp_path, "[work, order]", frames=12, runtime="{in_flight: 1}")
    assert stats.frames == 12 and mod.NOW["max"] == 1
    assert {t for s, _, t in mod.LOG if s == "work"} == {"streamcnn-cam-stage_0"}


def test_a_stateful_first_stage_keeps_the_whole_chain_on_the_pipeline_thread(tmp_path):
    stats, records, mod, _ = _run(tmp_path, "[order, work]", frames=8)
    assert [r["index"] for r in records] == list(range(8))
    assert {t for _, _, t in mod.LOG} == {"pipeline-cam"} and mod.NOW["max"] == 1


def test_a_stage_error_in_a_worker_names_stage_and_frame_and_skips_it(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        stats, records, _, _ = _run(tmp_path, "[{work: {fail_on: 5}}, order]", frames=10)
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert stats.frames == 9 and stats.skipped == 1
    assert "pipeline 'cam': stage 'work' failed on frame 5: ValueError: cannot do frame 5" in caplog.text


def test_on_error_stop_in_a_worker_stops_the_pipeline(tmp_path):
    stats, records, _, _ = _run(tmp_path, "[{work: {fail_on: 5}}]", frames=40, extra="            on_error: stop")
    assert stats.error.startswith("pipeline 'cam': stage 'work' failed on frame 5: ValueError: cannot do frame 5")
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]


def test_max_frames_with_frames_in_flight(tmp_path):
    stats, records, mod, _ = _run(tmp_path, "[work]", frames=100, max_frames=7)
    assert stats.frames == 7 and [r["index"] for r in records] == list(range(7))
    assert sorted(i for s, i, _ in mod.LOG if s == "work") == list(range(7))  # none processed for nothing


def test_batch_option_hands_waiting_frames_to_process_batch(tmp_path):
    stats, records, mod, _ = _run(tmp_path, "[batched, order]", frames=30, runtime="{in_flight: 1}",
                                  extra="            batch: 4")
    sizes = mod.Batched.SIZES
    assert [r["index"] for r in records] == list(range(30)) and stats.frames == 30
    # batches of the frames that were waiting (up to 4); a frame that was alone went to process()
    assert max(sizes) == 4 and min(sizes) >= 2 and sum(sizes) >= 20
    assert sum(1 for s, _, _ in mod.LOG if s == "work") == 30  # each frame processed exactly once


def test_a_failing_batch_is_redone_frame_by_frame(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        stats, records, mod, _ = _run(tmp_path, "[{batched: {fail_on: 3}}]", frames=12, runtime="{in_flight: 1}",
                                      extra="            batch: 4")
    # the batch holding frame 3 raised; redone one by one, only frame 3 (whose process raises) is lost
    assert [r["index"] for r in records] == [i for i in range(12) if i != 3]
    assert stats.skipped == 1
    assert "stage 'batched' failed on frame 3: ValueError: cannot do frame 3" in caplog.text


def test_in_flight_in_yaml_is_validated(tmp_path):
    import pytest

    from streamcnn.errors import ConfigError

    cfg = write(tmp_path / "p.yaml", """
        runtime: {in_flight: 0}
        pipelines:
          cam:
            source: pattern
            in_flight: -1
        """)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert "p.yaml:1:22: runtime.in_flight: expected 'auto' or a whole number ≥ 1, got 0" in text
    assert "p.yaml:5:16: pipelines.cam.in_flight: expected 'auto' or a whole number ≥ 1, got -1" in text
