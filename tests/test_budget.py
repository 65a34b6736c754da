"""The thread budget rule, its YAML overrides, and that sessions really get those settings."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper

from streamcnn import runtime
from streamcnn.budget import Budget, plan
from streamcnn.config import load_config
from streamcnn.config.schema import RuntimeSpec
from streamcnn.engine import Engine

from .conftest import write


def tiny_model(batch: int | str = "N") -> bytes:
    """Y = 2·X + 1 on a (batch, 3) float32 input."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph([helper.make_node("Mul", ["X", "two"], ["T"]), helper.make_node("Add", ["T", "one"], ["Y"])],
                              "tiny", [x], [y], [two, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(autouse=True)
def _restore():
    yield
    runtime.configure(runtime.SessionSettings())
    runtime.clear_cache()


@pytest.mark.parametrize(("cores", "pipelines", "in_flight", "intra", "spinning"), [
    (2, 1, 2, 1, False),   # this machine, one camera: two frames at once, one ORT thread each
    (2, 2, 1, 1, False),
    (2, 4, 1, 1, False),   # more pipelines than cores: one thread per inference, never more
    (1, 1, 1, 1, True),    # a single inference at a time: ORT's workers may spin
    (16, 1, 4, 4, False),  # in flight capped at 4; the cores are shared out to ORT
    (16, 2, 4, 2, False),
    (16, 8, 2, 1, False),
    (8, 3, 2, 1, False),
])
def test_the_rule(cores, pipelines, in_flight, intra, spinning):
    b = plan(RuntimeSpec(), {f"p{i}": (None, True) for i in range(pipelines)}, cores=cores)
    assert set(b.in_flight.values()) == {in_flight}
    assert b.concurrency == in_flight * pipelines
    assert (b.intra_op_threads, b.spinning, b.opencv_threads, b.max_batch) == (intra, spinning, intra, 1)


def test_a_pipeline_without_a_stateless_first_stage_counts_one_inference():
    b = plan(RuntimeSpec(), {"a": (None, True), "b": (None, False)}, cores=8)
    assert b.in_flight == {"a": 4, "b": 4} and b.concurrency == 5 and b.intra_op_threads == 1


def test_overrides_from_yaml_win():
    spec = RuntimeSpec(in_flight=3, intra_op_threads=2, spinning=True, opencv_threads=0, max_batch=4,
                       batch_timeout_ms=7)
    b = plan(spec, {"a": (None, True), "b": (1, True)}, cores=2)
    assert b == Budget(2, {"a": 3, "b": 1}, 4, 2, True, 0, 4, 7.0)


def test_describe_is_one_line():
    b = plan(RuntimeSpec(), {"a": (None, True)}, cores=2)
    assert b.describe() == ("thread budget: 2 cores, 1 pipeline (2 frames in flight) → 1 ONNX Runtime thread per "
                            "inference (spinning off), OpenCV 1")
    b = plan(RuntimeSpec(max_batch=8), {"a": (None, True), "b": (None, True)}, cores=16)
    assert b.describe() == ("thread budget: 16 cores, 2 pipelines (4 frames in flight) → 2 ONNX Runtime threads per "
                            "inference (spinning off), OpenCV 2, batches of up to 8 (2 ms)")


def test_the_engine_applies_the_budget_to_sessions_and_opencv(tmp_path, caplog):
    before = cv2.getNumThreads()
    cfg = write(tmp_path / "p.yaml", """
        runtime: {intra_op_threads: 1, in_flight: 2, opencv_threads: 1}
        pipelines:
          cam:
            source: {uri: pattern, size: 64x48, frames: 3}
            stages: [{edges: {kernel: sobel}}]
            sinks: [null]
        """)
    try:
        with caplog.at_level(logging.INFO, logger="streamcnn.budget"):
            stats = Engine(load_config(cfg)).run()[0]
        assert stats.frames == 3
        assert "→ 1 ONNX Runtime thread per inference (spinning off), OpenCV 1" in caplog.text
        assert cv2.getNumThreads() == 1
        ms = runtime.get_session(tiny_model(), "cpu")
        opts = ms.session.get_session_options()
        assert opts.intra_op_num_threads == 1
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    finally:
        cv2.setNumThreads(before)


def test_a_session_made_before_the_budget_is_replaced_with_its_settings():
    a = runtime.get_session(tiny_model(), "cpu")
    assert a.session.get_session_options().intra_op_num_threads == 0  # ORT's default
    runtime.configure(runtime.SessionSettings(intra_op_threads=1, spinning=False))
    b = runtime.get_session(tiny_model(), "cpu")
    assert b is not a and b.session.get_session_options().intra_op_num_threads == 1
    assert runtime.get_session(tiny_model(), "cpu") is b
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(b.run({"X": x})[0], 2 * x + 1)


def test_runtime_section_errors_name_line_and_key(tmp_path):
    from streamcnn.errors import ConfigError

    cfg = write(tmp_path / "p.yaml", """
        runtime: {intra_op_thread: 2, max_batch: 0}
        pipelines:
          cam: {source: pattern}
        """)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert ("p.yaml:1:11: runtime.intra_op_thread: unknown key 'intra_op_thread' for 'runtime' — did you mean "
            "'intra_op_threads'? (keys: arena_extend_strategy, batch_timeout_ms,") in text
    assert "p.yaml:1:42: runtime.max_batch: expected 'auto' or a whole number ≥ 1, got 0" in text
