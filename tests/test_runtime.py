"""streamcnn.runtime: shared sessions, provider choice and reporting, input checks."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamcnn import ModelInputError, StreamcnnError, runtime
from streamcnn.runtime import ModelNotFoundError, ModelSession, get_session, parse_device

LOGGER = "streamcnn.runtime"


def _model(inputs: list, nodes: list, outputs: list, inits: list | None = None) -> bytes:
    graph = helper.make_graph(nodes, "t", inputs, outputs, inits or [])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def fixed_model() -> bytes:
    """y = relu(x), x float32 (1, 3, 8, 8)."""
    return _model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )


def dynamic_conv_model() -> bytes:
    """y = 3×3 conv (all ones, no padding) of x float32 (N?, 3, H, W) with an unnamed batch dim."""
    w = numpy_helper.from_array(np.ones((1, 3, 3, 3), np.float32), "w")
    return _model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, "H", "W"])],
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1, None, None])],
        [w],
    )


def two_input_model() -> bytes:
    """c = a + b, both float32 (2,)."""
    return _model(
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("a", "b")],
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])],
    )


@pytest.fixture(autouse=True)
def _fresh_cache():
    runtime.clear_cache()
    yield
    runtime.clear_cache()


@pytest.fixture
def no_working_cuda():
    """Skip where a real CUDA session could be created (a GPU build and an NVIDIA driver)."""
    if "CUDAExecutionProvider" in ort.get_available_providers() and runtime._has_cuda_driver():
        pytest.skip("this machine may really run CUDA sessions")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(fixed_model())
    return path


# --- cache -------------------------------------------------------------------------------------


def test_same_path_and_device_share_one_session(model_file: Path, monkeypatch) -> None:
    a = get_session(model_file, "cpu", stage="s1")
    monkeypatch.chdir(model_file.parent)
    b = get_session("tiny.onnx", "cpu", stage="s2")  # relative path, same file
    c = get_session(str(model_file.parent / "." / "tiny.onnx"), "cpu", stage="s3")
    assert a is b is c
    assert a.path == model_file.resolve()
    assert get_session(model_file, "auto") is not a  # another device request → another session


def test_same_bytes_share_one_session_and_different_bytes_do_not() -> None:
    data = fixed_model()
    a = get_session(data, "cpu", name="first")
    b = get_session(bytes(bytearray(data)), "cpu", name="second")  # equal content, another object
    assert a is b
    assert a.path is None and a.name == "first"
    other = get_session(two_input_model(), "cpu")
    assert other is not a
    digest = hashlib.sha256(two_input_model()).hexdigest()
    assert other.name == f"<in-memory model sha256:{digest[:12]}>"


def test_concurrent_get_session_creates_one_session() -> None:
    data = dynamic_conv_model()
    got: list[ModelSession] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        got.append(get_session(data, "cpu", stage="t"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(s is got[0] for s in got)


def test_clear_cache_forgets_sessions() -> None:
    data = fixed_model()
    a = get_session(data, "cpu")
    runtime.clear_cache()
    assert get_session(data, "cpu") is not a


# --- providers ----------------------------------------------------------------------------------


def test_cpu_session_reports_cpu_provider_and_runs() -> None:
    ms = get_session(fixed_model(), "cpu", stage="s", name="tiny")
    assert ms.provider == "CPUExecutionProvider"
    assert ms.session.get_providers()[0] == "CPUExecutionProvider"
    assert ms.device == "cpu" and ms.device_id is None
    assert ms.inputs == [("x", (1, 3, 8, 8), np.dtype(np.float32))]
    assert ms.outputs == [("y", (1, 3, 8, 8), np.dtype(np.float32))]
    x = np.linspace(-1, 1, 192, dtype=np.float32).reshape(1, 3, 8, 8)
    (y,) = ms.run(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    (y2,) = ms.run({"x": x}, output_names=["y"])
    np.testing.assert_array_equal(y2, y)


def test_auto_logs_the_provider_used(caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ms = get_session(fixed_model(), "auto", stage="edges", name="tiny")
    msgs = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert len(msgs) == 1
    assert msgs[0].startswith(f"stage 'edges': model tiny on {ms.provider}")
    # a second stage sharing the session logs its own line
    assert get_session(fixed_model(), "auto", stage="other", name="tiny") is ms
    assert f"stage 'other': model tiny on {ms.provider}" in caplog.text


def test_auto_without_cuda_runs_on_cpu_without_warning(caplog, no_working_cuda) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ms = get_session(fixed_model(), "auto", stage="edges", name="tiny")
    assert ms.provider == "CPUExecutionProvider" and ms.device == "cpu"
    assert "stage 'edges': model tiny on CPUExecutionProvider" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_that_asks_for_cuda_and_gets_cpu_warns_exactly_once(caplog, monkeypatch, capfd,
                                                                  no_working_cuda) -> None:
    # Pretend to be the GPU build on a machine with a driver: CUDA is requested, ORT falls back.
    monkeypatch.setattr(runtime, "_cuda_in_build", lambda: True)
    monkeypatch.setattr(runtime, "_has_cuda_driver", lambda: True)
    monkeypatch.setattr(runtime, "_preload_cuda_dlls", lambda: None)
    caplog.set_level(logging.INFO, logger=LOGGER)
    ms = get_session(fixed_model(), "auto", stage="det", name="tiny")
    assert ms.provider == "CPUExecutionProvider"
    warns = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warns) == 1
    assert "stage 'det'" in warns[0].getMessage() and "CPUExecutionProvider" in warns[0].getMessage()
    assert "stage 'det': model tiny on CPUExecutionProvider" in caplog.text
    get_session(fixed_model(), "auto", stage="det2", name="tiny")  # cached: no second warning
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert "onnxruntime" not in capfd.readouterr().err  # ORT's own lines and UserWarning silenced


@pytest.mark.parametrize(("device", "device_id"), [("cuda", 0), ("cuda:0", 0), ("cuda:1", 1)])
def test_cuda_that_lands_on_cpu_fails_naming_stage_and_providers(device, device_id, capfd,
                                                                 no_working_cuda) -> None:
    with pytest.raises(StreamcnnError) as info:
        get_session(fixed_model(), device, stage="edges", name="tiny")
    msg = str(info.value)
    assert msg.startswith(
        f"stage 'edges': model tiny was asked to run on CUDAExecutionProvider (device_id {device_id}) "
        "but ONNX Runtime runs it on CPUExecutionProvider: "
    )
    assert "pip install -e '.[gpu]'" in msg and "cuDNN" in msg
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "no CUDA provider" in msg
    elif not runtime._has_cuda_driver():
        assert "no NVIDIA driver" in msg
    assert "onnxruntime" not in capfd.readouterr().err
    assert not runtime._cache  # a failed session is not shared


def test_cuda_with_gpu_build_whose_cuda_fails_to_load(monkeypatch, no_working_cuda) -> None:
    # Simulates onnxruntime-gpu with a driver but unusable CUDA libraries (ORT falls back to CPU).
    monkeypatch.setattr(runtime, "_cuda_in_build", lambda: True)
    monkeypatch.setattr(runtime, "_has_cuda_driver", lambda: True)
    monkeypatch.setattr(runtime, "_preload_cuda_dlls", lambda: None)
    with pytest.raises(StreamcnnError, match=r"CUDA provider failed to load") as info:
        get_session(fixed_model(), "cuda:2", stage="faces", name="tiny")
    assert "stage 'faces'" in str(info.value) and "(device_id 2)" in str(info.value)


@pytest.mark.parametrize("bad", ["gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "auto:0", "cpu:0", " cpu", ""])
def test_bad_device_string_lists_accepted_forms(bad) -> None:
    with pytest.raises(ValueError, match=r"use auto, cpu, cuda, cuda:N \(N = GPU index, e.g. cuda:1\), tensorrt or tensorrt:N$") as info:
        get_session(fixed_model(), bad)
    assert repr(bad) in str(info.value)


def test_parse_device() -> None:
    assert parse_device("auto") == ("auto", None)
    assert parse_device("cpu") == ("cpu", None)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("cuda:3") == ("cuda", 3)


# --- model files --------------------------------------------------------------------------------


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "model.onnx"
    with pytest.raises(ModelNotFoundError) as info:
        get_session(path, "cpu", stage="det")
    assert isinstance(info.value, StreamcnnError) and isinstance(info.value, FileNotFoundError)
    assert str(info.value) == f"stage 'det': model file not found: {path}"


def test_invalid_model_file_is_a_streamcnn_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(StreamcnnError, match=r"stage 'det': cannot load model .*junk\.onnx"):
        get_session(path, "cpu", stage="det")


# --- input checks -------------------------------------------------------------------------------


def test_shape_mismatch_message_is_exact() -> None:
    ms = get_session(fixed_model(), "cpu", name="tiny")
    with pytest.raises(ModelInputError) as info:
        ms.run(np.zeros((1, 3, 9, 8), np.float32))
    assert str(info.value) == (
        "model tiny: input 'x' expects shape (1, 3, 8, 8) float32, given (1, 3, 9, 8) float32 "
        "(axis 2 is 9, the model needs 8)"
    )


def test_model_path_is_named_when_no_display_name(model_file: Path) -> None:
    ms = get_session(model_file, "cpu")
    with pytest.raises(ModelInputError) as info:
        ms.run({"x": np.zeros((3, 8, 8), np.float32)})
    assert str(info.value) == (
        f"model {model_file.resolve()}: input 'x' expects shape (1, 3, 8, 8) float32, "
        "given (3, 8, 8) float32 (rank 3, the model needs rank 4)"
    )


def test_dtype_mismatch_is_reported_not_cast() -> None:
    ms = get_session(fixed_model(), "cpu", name="tiny")
    with pytest.raises(ModelInputError) as info:
        ms.run(np.zeros((1, 3, 8, 8), np.float64))
    assert str(info.value) == (
        "model tiny: input 'x' expects shape (1, 3, 8, 8) float32, given (1, 3, 8, 8) float64 "
        "(dtype float64, the model needs float32)"
    )


def test_dynamic_dims_are_shown_by_symbol_or_question_mark() -> None:
    ms = get_session(dynamic_conv_model(), "cpu", name="conv")
    assert ms.inputs[0].shape == (None, 3, "H", "W")
    with pytest.raises(ModelInputError) as info:
        ms.run(np.zeros((2, 4, 5, 5), np.float32))
    assert str(info.value) == (
        "model conv: input 'x' expects shape (?, 3, H, W) float32, given (2, 4, 5, 5) float32 "
        "(axis 1 is 4, the model needs 3)"
    )
    (y,) = ms.run(np.ones((2, 3, 5, 6), np.float32))  # dynamic dims accept any size
    assert y.shape == (2, 1, 3, 4) and np.all(y == 27)


def test_ort_shape_error_is_wrapped(capfd) -> None:
    ms = get_session(dynamic_conv_model(), "cpu", name="conv")
    with pytest.raises(ModelInputError) as info:
        ms.run(np.zeros((1, 3, 2, 2), np.float32))  # passes the declared shape, too small for the 3×3 conv
    assert type(info.value) is ModelInputError
    assert info.value.__cause__ is None and info.value.__suppress_context__
    msg = str(info.value)
    assert msg.startswith(
        "model conv: the input does not fit the model: expects 'x' (?, 3, H, W) float32, "
        "given 'x' (1, 3, 2, 2) float32 (ONNX Runtime: "
    )
    assert "[E:onnxruntime" not in capfd.readouterr().err


def test_feed_name_errors() -> None:
    ms = get_session(two_input_model(), "cpu", name="add")
    a = np.array([1, 2], np.float32)
    with pytest.raises(ModelInputError, match=r"model add: has inputs \['a', 'b'\]; pass a dict"):
        ms.run(a)
    with pytest.raises(ModelInputError, match=r"model add: input 'b' \(2,\) is missing"):
        ms.run({"a": a})
    with pytest.raises(ModelInputError, match=r"model add: unknown input\(s\) \['c'\]"):
        ms.run({"a": a, "b": a, "c": a})
    with pytest.raises(ModelInputError, match=r"model add: input 'a' must be a numpy array, given list"):
        ms.run({"a": [1.0, 2.0], "b": a})
    with pytest.raises(ValueError, match=r"unknown output\(s\) \['z'\]"):
        ms.run({"a": a, "b": a}, output_names=["z"])
    (c,) = ms.run({"a": a, "b": a})
    np.testing.assert_array_equal(c, [2, 4])


# --- ModelStage: several models, one family check ------------------------------------------------

def _pair_stage():
    from streamcnn import Context, Field, ModelParams, ModelStage

    class PairStage(ModelStage):
        families = ("face_detect",)

        class Params(ModelParams):
            model: str = Field(description="first model")
            second: str = Field(description="second model")

        @classmethod
        def models(cls, params):
            return {"first": params.model, "second": params.second}

    return PairStage, Context


def test_a_model_stage_with_two_models_checks_and_loads_both(tmp_path, model_file):
    from streamcnn import ModelNotFoundError

    other = tmp_path / "other.onnx"
    other.write_bytes(two_input_model())
    PairStage, Context = _pair_stage()
    ctx = Context("pair", "p", tmp_path)
    params = PairStage.Params(model="tiny.onnx", second="other.onnx", device="cpu")
    PairStage.check(params, ctx)
    stage = PairStage(params, ctx)
    loaded = stage.load_models()
    assert list(loaded) == ["first", "second"]
    assert loaded["first"][0].path == model_file.resolve() and loaded["second"][0].path == other.resolve()
    assert loaded["first"][1] == {} and loaded["second"][0] is get_session(other, "cpu")
    with pytest.raises(TypeError, match=r"PairStage has models \['first', 'second'\]: use load_models\(\)"):
        stage.load_model()
    assert stage.load_model("other.onnx")[0] is loaded["second"][0]
    with pytest.raises(ModelNotFoundError, match="'missing.onnx' not found"):
        PairStage.check(PairStage.Params(model="tiny.onnx", second="missing.onnx"), ctx)
    with pytest.raises(ValueError) as info:  # the family is checked for every role, before presence
        PairStage.check(PairStage.Params(model="tiny.onnx", second="mobilefacenet_128d"), ctx)
    assert str(info.value).startswith("model 'mobilefacenet_128d' is an embedding model (registry), not a "
                                      "face_detect model; registry models that fit: scrfd_2.5g_bnkps, ")
    assert str(info.value).endswith("; for mobilefacenet_128d use the 'face_recognize' stage")


def test_the_family_check_finds_paths_by_file_name_and_ignores_what_it_cannot_tell(tmp_path):
    from streamcnn import FamilyMismatch, family_mismatch

    m = family_mismatch(tmp_path / "yunet_n_dynamic.onnx", ("yolo",))
    assert isinstance(m, FamilyMismatch) and m.entry.name == "yunet_n_dynamic" and m.stage == "face_detect"
    assert m.fitting == ["yolo-fastestv2_coco_352", "yolov8n_coco_640_int8", "yolox_nano_coco_416"]
    assert m.message("use a detector") == (f"model '{tmp_path / 'yunet_n_dynamic.onnx'}' is a face_detect model "
                                           "(registry), not a yolo model; use a detector; for yunet_n_dynamic use "
                                           "the 'face_detect' stage")
    assert family_mismatch("yunet_n_dynamic", ("face_detect", "landmarks")) is None
    assert family_mismatch("yunet_n_dynamic", ()) is None  # empty: any family
    assert family_mismatch("my_own.onnx", ("yolo",)) is None  # unregistered: nothing to tell
