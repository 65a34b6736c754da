"""Batching across callers (`streamcnn.batcher`), fixed-batch chunking, I/O binding, TensorRT device."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest

from streamcnn import runtime
from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import write
from .test_budget import tiny_model


@pytest.fixture(autouse=True)
def _restore():
    yield
    runtime.configure(runtime.SessionSettings())
    runtime.clear_cache()


def _concurrently(fn, inputs: list) -> list:
    """Call ``fn`` on each input from its own thread, all released at once; the results in order."""
    gate = threading.Barrier(len(inputs))
    out: list = [None] * len(inputs)

    def call(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(inputs[i])
        except Exception as exc:  # noqa: BLE001 - returned for the assertions
            out[i] = exc
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_calls_run_as_batches_and_each_gets_its_own_rows():
    runtime.configure(runtime.SessionSettings(max_batch=4, batch_timeout_ms=200))
    ms = runtime.get_session(tiny_model(), "cpu", name="tiny")
    assert ms.batcher is not None
    xs = [np.full((1, 3), i, np.float32) for i in range(8)]
    results = _concurrently(lambda x: ms.run({"X": x})[0], xs)
    for x, y in zip(xs, results, strict=True):
        np.testing.assert_array_equal(y, 2 * x + 1)
    assert ms.batcher.rows == 8 and ms.batcher.batches == 2  # 8 callers, batches of 4


def test_a_call_alone_waits_at_most_the_timeout_then_runs_by_itself():
    runtime.configure(runtime.SessionSettings(max_batch=4, batch_timeout_ms=1))
    ms = runtime.get_session(tiny_model(), "cpu", name="tiny")
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(ms.run({"X": x})[0], 3 * x)
    assert ms.batcher.batches == 0  # a batch of one caller is a plain run


def test_calls_of_other_shapes_are_not_mixed():
    runtime.configure(runtime.SessionSettings(max_batch=8, batch_timeout_ms=100))
    ms = runtime.get_session(tiny_model("N"), "cpu", name="tiny")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "C"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", "C"])
    graph = helper.make_graph([helper.make_node("Neg", ["X"], ["Y"])], "neg", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ms = runtime.get_session(model.SerializeToString(), "cpu", name="neg")
    xs = [np.full((1, 3 + i % 2), i, np.float32) for i in range(6)]
    results = _concurrently(lambda a: ms.run({"X": a})[0], xs)
    for a, r in zip(xs, results, strict=True):
        np.testing.assert_array_equal(r, -a)
    assert ms.batcher.rows == 6 and ms.batcher.batches == 2  # one batch per shape


def test_a_fixed_batch_of_one_runs_per_frame_with_one_info_line(caplog):
    runtime.configure(runtime.SessionSettings(max_batch=4))
    with caplog.at_level(logging.INFO, logger="streamcnn.runtime"):
        ms = runtime.get_session(tiny_model(1), "cpu", name="tiny1")
    assert ms.batcher is None
    assert caplog.messages.count(
        "model tiny1 has a fixed batch of 1: it runs one frame at a time, not in batches of 4 "
        "(tools/dynamic_batch.py gives a model a dynamic batch axis)") == 1
    x = np.arange(9, dtype=np.float32).reshape(3, 3)  # 3 rows on a batch-1 model: chunked, no ORT shape error
    np.testing.assert_array_equal(ms.run({"X": x})[0], 2 * x + 1)
    results = _concurrently(lambda a: ms.run({"X": a})[0], [x[i:i + 1] for i in range(3)])
    np.testing.assert_array_equal(np.concatenate(results), 2 * x + 1)


@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_a_fixed_batch_of_n_is_padded_or_chunked(rows):
    ms = runtime.get_session(tiny_model(2), "cpu", name="tiny2")
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    y = ms.run({"X": x})[0]
    assert y.shape == (rows, 3)
    np.testing.assert_array_equal(y, 2 * x + 1)


def test_io_binding_path_gives_the_same_outputs_on_cpu():
    ms = runtime.get_session(tiny_model(), "cpu", name="tiny")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    values = ms.run_on_device({"X": x})
    assert values[0].device_name().lower() == "cpu"
    np.testing.assert_array_equal(values[0].numpy(), 2 * x + 1)
    ms.io_binding = True  # the CUDA path, exercised on the CPU provider
    np.testing.assert_array_equal(ms.run({"X": x})[0], 2 * x + 1)


def test_tensorrt_device_forms():
    assert runtime.parse_device("tensorrt") == ("tensorrt", 0)
    assert runtime.parse_device("tensorrt:1") == ("tensorrt", 1)
    with pytest.raises(ValueError, match=r"use auto, cpu, cuda, cuda:N \(N = GPU index, e.g. cuda:1\), tensorrt or "
                                         r"tensorrt:N"):
        runtime.parse_device("trt")


def test_tensorrt_options_from_settings(tmp_path):
    s = runtime.SessionSettings(tensorrt_cache=str(tmp_path / "engines"), tensorrt_fp16=True, gpu_mem_limit_mb=512,
                                cudnn_conv_algo_search="HEURISTIC")
    assert s.tensorrt_options(1) == {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                     "trt_engine_cache_path": str(tmp_path / "engines")}
    assert (tmp_path / "engines").is_dir()
    assert s.cuda_options(0) == {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC",
                                 "arena_extend_strategy": "kNextPowerOfTwo", "gpu_mem_limit": 512 * 2**20}


def test_batched_pipelines_give_the_single_frame_boxes(assets, tmp_path):
    """Two pipelines on one dynamic-batch YOLOX-nano, batched across them, against one unbatched run."""
    batchaxis = pytest.importorskip("streamcnn.batchaxis")
    model = tmp_path / "yolox_dyn.onnx"
    model.write_bytes(batchaxis.dynamic_batch(assets / "models" / "yolox_nano_coco_416.onnx"))
    video = assets / "media" / "vtest.avi"

    def run(runtime_yaml: str, names: list[str]) -> dict[str, list]:
        pipes = "".join(f"""
              {n}:
                source: {video}
                stages: [{{yolo: {{model: {model}, format: yolox, conf: 0.3, scale: 1, resize: top-left}}}}]
                sinks: [{{jsonl: {{path: {n}.jsonl}}}}]""" for n in names)
        cfg = write(tmp_path / "p.yaml", f"runtime: {runtime_yaml}\npipelines:{pipes}\n")
        engine = Engine(load_config(cfg), max_frames=12)
        stats = engine.run()
        assert all(s.frames == 12 and s.error is None for s in stats)
        return {n: [json.loads(x) for x in (tmp_path / f"{n}.jsonl").read_text().splitlines()] for n in names}

    batched = run("{max_batch: 2, batch_timeout_ms: 50, in_flight: 1}", ["a", "b"])
    ms = runtime.get_session(model, "auto")
    assert ms.batcher is not None and ms.batcher.batches >= 6  # most frames ran in pairs
    runtime.configure(runtime.SessionSettings())
    single = run("{in_flight: 1}", ["s"])["s"]
    for name in ("a", "b"):
        for got, want in zip(batched[name], single, strict=True):
            assert got["index"] == want["index"]
            g = np.array([d["xyxy"] for d in got["detections"]], np.float64).reshape(-1, 4)
            w = np.array([d["xyxy"] for d in want["detections"]], np.float64).reshape(-1, 4)
            assert g.shape == w.shape and len(w) > 0
            assert np.abs(g - w).max() <= 1e-4
