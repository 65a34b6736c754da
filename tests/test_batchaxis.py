"""streamcnn.batchaxis: a dynamic batch axis for batch-1 ONNX models.

Real models and media come from STREAMCNN_ASSETS (see conftest.py); every real-model test runs a batch of
3 *different* real inputs, pre-processed as shared/models/MODELS.md says, and compares it with 3 single
runs of the original model. The tiny in-memory models check each batching rule and the refusals.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamcnn.batchaxis import BatchAxisError, dynamic_batch, verify_batch
from streamcnn.errors import StreamcnnError

from .conftest import ROOT, media, need

PHOTOS = ("obama.jpg", "biden.jpg", "zidane.jpg")


# ---------------------------------------------------------------------------------------------------
# real inputs


def _model(assets: Path, name: str) -> Path:
    path = assets / "models" / f"{name}.onnx"
    need(path)
    return path


def _frames(assets: Path, n: int = 3, step: int = 150) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(media(assets, "vtest.avi")))
    out, i = [], 0
    try:
        while len(out) < n:
            ok, frame = cap.read()
            assert ok, f"vtest.avi ended after {i} frames"
            if i % step == 0:
                out.append(frame)
            i += 1
    finally:
        cap.release()
    return out


def _photo(assets: Path, name: str) -> np.ndarray:
    img = cv2.imread(str(media(assets, name)), cv2.IMREAD_COLOR)
    assert img is not None, name
    return img


def _nchw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None]).astype(np.float32)


def _letterbox(img: np.ndarray, size: int, fill: int) -> np.ndarray:
    """Top-left letterbox (YOLOX, SCRFD)."""
    r = min(size / img.shape[0], size / img.shape[1])
    out = np.full((size, size, 3), fill, np.uint8)
    small = cv2.resize(img, (round(img.shape[1] * r), round(img.shape[0] * r)))
    out[:small.shape[0], :small.shape[1]] = small
    return out


def _face(assets: Path, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best YuNet face of ``img``: box (x, y, w, h) and 5 landmarks, in image pixels (MODELS.md §4)."""
    sess = ort.InferenceSession(str(_model(assets, "yunet_n_dynamic")), providers=["CPUExecutionProvider"])
    r = min(1.0, 640 / max(img.shape[:2]))
    small = cv2.resize(img, (int(img.shape[1] * r), int(img.shape[0] * r)))
    h, w = -(-small.shape[0] // 32) * 32, -(-small.shape[1] // 32) * 32
    padded = np.zeros((h, w, 3), np.uint8)
    padded[:small.shape[0], :small.shape[1]] = small
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": _nchw(padded)})))
    best = None
    for s in (8, 16, 32):
        score = (outs[f"cls_{s}"] * outs[f"obj_{s}"])[0, :, 0]
        i = int(score.argmax())
        if best is None or score[i] > best[0]:
            gx, gy = i % (w // s), i // (w // s)
            dx, dy, lw, lh = outs[f"bbox_{s}"][0, i]
            cx, cy, bw, bh = (gx + dx) * s, (gy + dy) * s, np.exp(lw) * s, np.exp(lh) * s
            k = outs[f"kps_{s}"][0, i].reshape(5, 2)
            pts = np.stack([(gx + k[:, 0]) * s, (gy + k[:, 1]) * s], 1)
            best = (score[i], np.array([cx - bw / 2, cy - bh / 2, bw, bh]) / r, pts / r)
    assert best is not None and best[0] > 0.5, "no face found"
    return best[1], best[2]


def _square_crop(img: np.ndarray, box: np.ndarray, scale: float, size: int) -> np.ndarray:
    x, y, w, h = box
    side = round(scale * max(w, h))
    x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    out = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, img.shape[1]), min(y0 + side, img.shape[0])
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return cv2.resize(out, (size, size))


ARCFACE = np.array([(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
                    (70.7299, 92.2041)], np.float32)


def _rgb(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _centre_square(img: np.ndarray, size: int) -> np.ndarray:
    s = min(img.shape[:2])
    y0, x0 = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    return cv2.resize(img[y0:y0 + s, x0:x0 + s], (size, size))


def _feeds(assets: Path, name: str) -> list[dict[str, np.ndarray]]:
    """3 different real samples for model ``name``, pre-processed as MODELS.md says."""
    if name == "yolox_nano_coco_416":
        return [{"images": _nchw(_letterbox(f, 416, 114))} for f in _frames(assets)]
    if name == "yolo-fastestv2_coco_352":
        return [{"input.1": _nchw(cv2.resize(f, (352, 352))) / 255} for f in _frames(assets)]
    if name == "yolov8n_coco_640_int8":
        return [{"images": _nchw(_rgb(_letterbox(f, 640, 114))) / 255} for f in _frames(assets)]
    if name in ("yunet_n_320_320", "yunet_n_dynamic"):
        return [{"input": _nchw(cv2.resize(_photo(assets, p), (320, 320)))} for p in PHOTOS]
    if name in ("ultraface_rfb320", "ultraface_rfb320_raw"):
        return [{"input": (_nchw(_rgb(cv2.resize(_photo(assets, p), (320, 240)))) - 127) / 128} for p in PHOTOS]
    if name == "scrfd_2.5g_bnkps":
        return [{"input.1": (_nchw(_rgb(_letterbox(_photo(assets, p), 640, 0))) - 127.5) / 128} for p in PHOTOS]
    if name == "pfld68_112":
        out = []
        for p in PHOTOS:
            img = _photo(assets, p)
            out.append({"input": _nchw(_rgb(_square_crop(img, _face(assets, img)[0], 1.1, 112))) / 255})
        return out
    if name == "pfld106_lite_112":
        out = []
        for p in PHOTOS:
            img = _photo(assets, p)
            out.append({"input": _nchw(_square_crop(img, _face(assets, img)[0], 1.2, 112)) / 255})
        return out
    if name == "mobilefacenet_128d":
        out = []
        for p in PHOTOS:
            img = _photo(assets, p)
            m, _ = cv2.estimateAffinePartial2D(_face(assets, img)[1].astype(np.float32), ARCFACE)
            out.append({"input": (_nchw(_rgb(cv2.warpAffine(img, m, (112, 112)))) - 127.5) / 128})
        return out
    if name == "style_multistyle26":
        weights = np.zeros(26, np.float32)
        weights[19] = 1  # shared by the batch: the input has no batch axis
        return [{"image": _nchw(_rgb(cv2.resize(f, (128, 96)))) / 255, "style_weights": weights}
                for f in _frames(assets)]
    if name == "style_arbitrary_predict":
        return [{"style_image": (_rgb(_centre_square(_photo(assets, p), 256))[None] / 255)}
                for p in ("starry_night.jpg", "dog.jpg", "bus.jpg")]
    if name == "style_arbitrary_transform":
        predict = ort.InferenceSession(str(_model(assets, "style_arbitrary_predict")),
                                       providers=["CPUExecutionProvider"])
        out = []
        for style, p in zip(_feeds(assets, "style_arbitrary_predict"), PHOTOS):
            vector = predict.run(None, {k: v.astype(np.float32) for k, v in style.items()})[0]
            content = _rgb(cv2.resize(_photo(assets, p), (384, 384)))[None] / 255
            out.append({"content_image": content, "mobilenet_conv/Conv/BiasAdd": vector})
        return out
    raise KeyError(name)


def _float32(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return [{k: np.asarray(v, np.float32) for k, v in f.items()} for f in feeds]


def _dims(v: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]


# models the edit rewrites, and the per-sample → batched output shape of their first output
EDITED = {
    "yolox_nano_coco_416": ["N", 3549, 85],
    "yolo-fastestv2_coco_352": ["N", 605, 95],  # no batch axis per sample: [605, 95] -> [N, 605, 95]
    "yunet_n_320_320": ["N", 1600, 1],
    "ultraface_rfb320": ["N", 4420, 2],
    "ultraface_rfb320_raw": ["N", 4420, 2],
    "scrfd_2.5g_bnkps": ["N", 0, 1],  # the row count is not declared in the model
    "pfld106_lite_112": ["N", 64, 28, 28],
    "style_multistyle26": ["N", 3, "h", "w"],
    "style_arbitrary_predict": ["N", 1, 1, 100],
    "style_arbitrary_transform": ["N", 384, 384, 3],
}
ALREADY_DYNAMIC = ("mobilefacenet_128d", "pfld68_112", "yunet_n_dynamic")


@pytest.mark.parametrize("name", [*EDITED, *ALREADY_DYNAMIC])
def test_real_model_batch_of_3_equals_single_runs(assets, name):
    path = _model(assets, name)
    feeds = _float32(_feeds(assets, name))
    edited = dynamic_batch(path)
    model = onnx.load_model_from_string(edited)
    first = model.graph.input[0]
    assert not first.type.tensor_type.shape.dim[0].HasField("dim_value"), _dims(first)
    if name in EDITED:
        assert _dims(first)[0] == "N"
        assert _dims(model.graph.output[0]) == EDITED[name]
    # the samples really differ, so equal outputs are not a coincidence of identical inputs
    single = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = [single.run(None, f)[0] for f in feeds]
    assert max(float(np.abs(outs[0] - o).max()) for o in outs[1:]) > 1e-3
    diff = verify_batch(path, edited, feeds, atol=1e-4)
    assert 0.0 <= diff <= 1e-4


def test_int8_dynamic_quantization_is_refused(assets):
    path = _model(assets, "yolov8n_coco_640_int8")
    with pytest.raises(BatchAxisError) as err:
        dynamic_batch(path)
    assert str(err.value) == (
        f"{path}: DynamicQuantizeLinear node 'images_QuantizeLinear': it computes one quantization scale and "
        "zero point over the whole tensor, so in a batch every sample's result would depend on the other samples")


@pytest.mark.parametrize("name", ALREADY_DYNAMIC)
def test_real_dynamic_model_is_returned_unchanged(assets, name):
    path = _model(assets, name)
    assert onnx.load_model_from_string(dynamic_batch(path)) == onnx.load(str(path))


def test_batched_output_is_the_same_as_batch_1_of_the_edited_model(assets):
    """yolox edited, run at batch 1 and at batch 3: the same numbers for the same frame."""
    path = _model(assets, "yolox_nano_coco_416")
    feeds = _float32(_feeds(assets, "yolox_nano_coco_416"))
    sess = ort.InferenceSession(dynamic_batch(path), providers=["CPUExecutionProvider"])
    batch = sess.run(None, {"images": np.concatenate([f["images"] for f in feeds])})[0]
    assert batch.shape == (3, 3549, 85)
    for i, f in enumerate(feeds):
        one = sess.run(None, f)[0]
        assert one.shape == (1, 3549, 85)
        assert float(np.abs(batch[i] - one[0]).max()) <= 1e-4


# ---------------------------------------------------------------------------------------------------
# tiny in-memory models


def _tiny(nodes, inputs, outputs, inits=(), opset=17, name="tiny") -> bytes:
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _random_feeds(model: bytes, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    m = onnx.load_model_from_string(model)
    feeds: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for inp in m.graph.input:
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim]
        shared = rng.standard_normal(shape).astype(np.float32)
        for f in feeds:
            f[inp.name] = rng.standard_normal(shape).astype(np.float32) if shape and shape[0] == 1 else shared
    return feeds


def _ints(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


N = helper.make_node


def test_reshape_to_constant_1_3_4_is_fixed_and_runs_at_batch_2():
    model = _tiny([N("Reshape", ["x", "shape"], ["r"], name="to_134"), N("Softmax", ["r"], ["y"], axis=2)],
                  [("x", [1, 12])], ["y"], [("shape", _ints(1, 3, 4))])
    # without the edit a batch of 2 cannot even run: the reshape pins the batch to 1
    naive = onnx.load_model_from_string(model)
    naive.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    with pytest.raises(Exception, match="shape"):
        ort.InferenceSession(naive.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": np.zeros((2, 12), np.float32)})

    edited = onnx.load_model_from_string(dynamic_batch(model))
    assert _dims(edited.graph.input[0]) == ["N", 12]
    assert _dims(edited.graph.output[0]) == ["N", 3, 4]
    reshape = next(n for n in edited.graph.node if n.name == "to_134")
    target = next(i for i in edited.graph.initializer if i.name == reshape.input[1])
    assert numpy_helper.to_array(target).tolist() == [0, 3, 4]  # the 1 became "copy dim 0"
    assert not edited.graph.value_info

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 12)).astype(np.float32)
    sess = ort.InferenceSession(edited.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = sess.run(None, {"x": x})[0]
    assert batch.shape == (2, 3, 4)
    orig = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    for i in range(2):
        single = orig.run(None, {"x": x[i:i + 1]})[0]
        assert np.array_equal(batch[i:i + 1], single)
    feeds = [{"x": x[i:i + 1]} for i in range(2)]
    assert verify_batch(model, edited.SerializeToString(), feeds, atol=0.0) == 0.0


def test_already_dynamic_model_is_unchanged():
    model = _tiny([N("Relu", ["x"], ["r"]), N("ReduceSum", ["r", "axes"], ["y"], keepdims=0)],
                  [("x", ["batch", 3, 4])], ["y"], [("axes", _ints(2))])
    out = dynamic_batch(model)
    assert onnx.load_model_from_string(out) == onnx.load_model_from_string(model)
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    run = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0] for m in (model, out)]
    assert run[0].shape == (2, 3) and np.array_equal(run[0], run[1])
    assert verify_batch(model, out, [{"x": x[:1]}, {"x": x[1:]}], atol=0.0) == 0.0


REFUSED = [
    pytest.param(
        _tiny([N("ReduceSum", ["x", "axes"], ["y"], name="sum_batch")], [("x", [1, 3])], ["y"],
              [("axes", _ints(0))], name="tiny_reduce"),
        "model 'tiny_reduce': ReduceSum node 'sum_batch': it reduces over the batch axis",
        id="reduce-over-batch"),
    pytest.param(
        _tiny([N("DynamicQuantizeLinear", ["x"], ["q", "s", "z"], name="dq"),
               N("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq2")], [("x", [1, 8])], ["y"], name="tiny_dq"),
        "model 'tiny_dq': DynamicQuantizeLinear node 'dq': it computes one quantization scale and zero point "
        "over the whole tensor, so in a batch every sample's result would depend on the other samples",
        id="dynamic-quantize"),
    pytest.param(
        _tiny([N("Concat", ["x", "c"], ["y"], axis=0, name="cat")], [("x", [1, 3])], ["y"],
              [("c", np.zeros((1, 3), np.float32))], name="tiny_cat"),
        "model 'tiny_cat': Concat node 'cat': it concatenates along the batch axis",
        id="concat-on-batch"),
    pytest.param(
        _tiny([N("Transpose", ["x"], ["t"], perm=[1, 0, 2], name="tr"),
               N("Reshape", ["t", "s"], ["r"], name="rs"), N("Conv", ["r", "w"], ["y"], name="conv")],
              [("x", [1, 2, 16])], ["y"],
              [("s", _ints(2, 1, 4, 4)), ("w", np.ones((1, 1, 3, 3), np.float32))], name="tiny_conv"),
        "model 'tiny_conv': Conv node 'conv': it needs the batch as axis 0 of 'r', whose per-sample shape "
        "[2, 1, 4, 4] has no leading 1",
        id="conv-on-images-of-a-sample"),
    pytest.param(
        _tiny([N("Size", ["x"], ["n"], name="size"), N("Cast", ["n"], ["nf"], to=1, name="cast"),
               N("Div", ["x", "nf"], ["y"], name="div")], [("x", [1, 3])], ["y"], name="tiny_size"),
        "model 'tiny_size': Div node 'div': its input 'nf' depends on the batch size (it is computed from a "
        "batched tensor's shape)",
        id="batch-size-as-data"),
    pytest.param(
        _tiny([N("Identity", ["c"], ["y"], name="const_out"), N("Relu", ["x"], ["z"], name="relu")],
              [("x", [1, 3])], ["y", "z"], [("c", np.ones(3, np.float32))], name="tiny_const"),
        "model 'tiny_const': graph output 'y' does not depend on a batched input, so it has no batch axis",
        id="unbatched-output"),
    pytest.param(
        _tiny([N("Relu", ["x"], ["y"], name="relu")], [("x", [4, 3])], ["y"], name="tiny_nobatch"),
        "model 'tiny_nobatch': no graph input has a leading dim of 1 (or a symbolic one) that could become the "
        "batch axis",
        id="no-batch-input"),
    pytest.param(b"not an onnx model",
                 "in-memory model: not a readable ONNX model (DecodeError: Error parsing message with type "
                 "'onnx.ModelProto')", id="not-onnx"),
]


@pytest.mark.parametrize(("model", "message"), REFUSED)
def test_refused_with_exact_message(model, message):
    with pytest.raises(BatchAxisError) as err:
        dynamic_batch(model)
    assert isinstance(err.value, StreamcnnError)
    if message.endswith("'onnx.ModelProto')"):
        assert str(err.value).startswith(message[:-1])
    else:
        assert str(err.value) == message


def test_dim_name_clash_is_refused():
    model = _tiny([N("Relu", ["x"], ["y"])], [("x", [1, 3, "N"])], ["y"], name="tiny_clash")
    with pytest.raises(BatchAxisError, match="already uses the dim name 'N'"):
        dynamic_batch(model)
    edited = onnx.load_model_from_string(dynamic_batch(model, dim_name="batch"))
    assert _dims(edited.graph.input[0]) == ["batch", 3, "N"]


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        dynamic_batch(tmp_path / "nope.onnx")


# one tiny graph per batching rule: the edit must give exactly the per-sample results at batch 3
C = _ints
RNG = np.random.default_rng(7)
W35 = RNG.standard_normal((3, 5)).astype(np.float32)
RULES = {
    "transpose-moves-the-1": ([N("Transpose", ["x"], ["t"], perm=[2, 0, 1]), N("Reshape", ["t", "s"], ["y"])],
                              [("x", [1, 3, 4])], ["y"], [("s", C(4, 1, 3))]),
    "nhwc-flatten-like-scrfd": ([N("Transpose", ["x"], ["t"], perm=[2, 3, 0, 1]), N("Reshape", ["t", "s"], ["y"])],
                                [("x", [1, 2, 3, 4])], ["y"], [("s", C(-1, 1))]),
    "channel-shuffle": ([N("Reshape", ["x", "s1"], ["a"]), N("Transpose", ["a"], ["b"], perm=[1, 0, 2]),
                         N("Reshape", ["b", "s2"], ["c"]), N("Gather", ["c", "i0"], ["g0"], axis=0),
                         N("Gather", ["c", "i1"], ["g1"], axis=0), N("Concat", ["g0", "g1"], ["y"], axis=1)],
                        [("x", [1, 4, 3, 3])], ["y"],
                        [("s1", C(2, 2, 9)), ("s2", C(2, -1, 2, 3, 3)), ("i0", np.array(0, np.int64)),
                         ("i1", np.array(1, np.int64))]),
    "reshape-drops-batch": ([N("Reshape", ["x", "s"], ["y"])], [("x", [1, 6, 5])], ["y"], [("s", C(30))]),
    "reshape-zeros": ([N("Reshape", ["x", "s"], ["y"])], [("x", [1, 3, 4])], ["y"], [("s", C(0, 0, 2, 2))]),
    "reshape-from-shape": ([N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "z"], ["n"]),
                            N("Unsqueeze", ["n", "z1"], ["n1"]), N("Concat", ["n1", "m1"], ["s"], axis=0),
                            N("Reshape", ["x", "s"], ["y"])], [("x", [1, 3, 4])], ["y"],
                           [("z", np.array(0, np.int64)), ("z1", C(0)), ("m1", C(-1))]),
    "reshape-dynamic-hw": ([N("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), N("Reshape", ["t", "s"], ["y"])],
                           [("x", [1, 3, "h", "w"])], ["y"], [("s", C(1, -1, 3))]),
    "flatten-axis-2": ([N("Flatten", ["x"], ["y"], axis=2)], [("x", [1, 3, 4, 2])], ["y"], []),
    "squeeze-the-batch": ([N("Squeeze", ["x", "a"], ["y"])], [("x", [1, 3, 1, 4])], ["y"], [("a", C(0, 2))]),
    "unsqueeze": ([N("Unsqueeze", ["x", "a"], ["y"])], [("x", [1, 3])], ["y"], [("a", C(0, -1))]),
    "slice-keeps-whole-batch": ([N("Slice", ["x", "st", "en", "ax"], ["y"])], [("x", [1, 3, 4])], ["y"],
                                [("st", C(0, 1)), ("en", C(1, 3)), ("ax", C(0, 2))]),
    "slice-opset9": ([N("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
                      N("Slice", ["t"], ["y"], starts=[1, 0], ends=[3, 1], axes=[0, 1])],
                     [("x", [1, 3, 4])], ["y"], [], 9),
    "concat-with-constant": ([N("Concat", ["x", "c"], ["y"], axis=1)], [("x", [1, 3, 4])], ["y"],
                             [("c", np.ones((1, 2, 4), np.float32))]),
    "add-constant-after-transpose": ([N("Transpose", ["x"], ["t"], perm=[1, 0, 2]), N("Add", ["t", "c"], ["y"])],
                                     [("x", [1, 3, 4])], ["y"], [("c", RNG.standard_normal((3, 1, 4)).astype(np.float32))]),
    "two-batched-inputs": ([N("Mul", ["x", "z"], ["y"])], [("x", [1, 3, 4]), ("z", [1, 1, 4])], ["y"], []),
    "shared-input": ([N("Mul", ["x", "z"], ["y"])], [("x", [1, 3, 4]), ("z", [4])], ["y"], []),
    "softmax-opset11": ([N("Transpose", ["x"], ["t"], perm=[1, 0, 2]), N("Softmax", ["t"], ["y"], axis=1)],
                        [("x", [1, 3, 4])], ["y"], [], 11),
    "reduce-keepdims-0": ([N("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
                           N("ReduceMean", ["t"], ["y"], axes=[0], keepdims=0)], [("x", [1, 3, 4])], ["y"], [], 13),
    "matmul-vector": ([N("Reshape", ["x", "s"], ["r"]), N("MatMul", ["r", "w"], ["y"])], [("x", [1, 3])], ["y"],
                      [("s", C(3)), ("w", W35)]),
    "gemm-transA": ([N("Transpose", ["x"], ["t"], perm=[1, 0]), N("Gemm", ["t", "w"], ["y"], transA=1)],
                    [("x", [1, 3])], ["y"], [("w", W35)]),
    "pad-after-transpose": ([N("Transpose", ["x"], ["t"], perm=[1, 0, 2]), N("Pad", ["t", "p"], ["y"])],
                            [("x", [1, 3, 4])], ["y"], [("p", C(1, 0, 2, 0, 0, 1))]),
    "tile-after-transpose": ([N("Transpose", ["x"], ["t"], perm=[1, 0, 2]), N("Tile", ["t", "r"], ["y"])],
                             [("x", [1, 3, 4])], ["y"], [("r", C(2, 1, 3))]),
    "expand-a-sample": ([N("Expand", ["x", "s"], ["y"])], [("x", [1, 4])], ["y"], [("s", C(3, 4))]),
    "split-opset11": ([N("Transpose", ["x"], ["t"], perm=[1, 0, 2]), N("Split", ["t"], ["y", "z"], axis=2, split=[1, 3])],
                      [("x", [1, 3, 4])], ["y", "z"], [], 11),
    "resize-constant-sizes": ([N("Resize", ["x", "", "", "s"], ["y"], mode="nearest")], [("x", [1, 2, 4, 4])],
                              ["y"], [("s", C(1, 2, 8, 6))]),
    "constantofshape-from-shape": ([N("Shape", ["x"], ["sh"]),
                                    N("ConstantOfShape", ["sh"], ["c"],
                                      value=numpy_helper.from_array(np.array([2.0], np.float32))),
                                    N("Concat", ["x", "c"], ["y"], axis=1)], [("x", [1, 3])], ["y"], []),
    "output-after-transpose": ([N("Transpose", ["x"], ["y"], perm=[1, 0, 2]), N("Relu", ["y"], ["z"])],
                               [("x", [1, 3, 4])], ["y", "z"], []),
}


@pytest.mark.parametrize("case", RULES)
def test_batching_rule(case):
    nodes, inputs, outputs, inits, *opset = RULES[case]
    model = _tiny(nodes, inputs, outputs, inits, opset=opset[0] if opset else 17)
    edited = dynamic_batch(model)
    m = onnx.load_model_from_string(edited)
    for inp, (_, shape) in zip(m.graph.input, inputs):
        assert _dims(inp)[0] == ("N" if shape and shape[0] == 1 else shape[0])
    rng = np.random.default_rng(11)
    feeds = []
    shared = {}
    for _ in range(3):
        feed = {}
        for name, shape in inputs:
            concrete = [4 if isinstance(d, str) else d for d in shape]
            if shape and shape[0] == 1:
                feed[name] = rng.standard_normal(concrete).astype(np.float32)
            else:
                feed[name] = shared.setdefault(name, rng.standard_normal(concrete).astype(np.float32))
        feeds.append(feed)
    assert verify_batch(model, edited, feeds, atol=1e-6) <= 1e-6


# ---------------------------------------------------------------------------------------------------
# verify_batch itself


def test_verify_batch_catches_a_naive_edit():
    """Just renaming dim 0 of a model that normalises over the batch runs, but mixes the samples."""
    model = _tiny([N("ReduceMean", ["x", "axes"], ["m"], keepdims=1), N("Sub", ["x", "m"], ["y"])],
                  [("x", [1, 3])], ["y"], [("axes", _ints(0))], opset=18)
    naive = onnx.load_model_from_string(model)
    naive.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    feeds = [{"x": np.full((1, 3), float(i), np.float32)} for i in (1, 2, 3)]
    with pytest.raises(BatchAxisError, match=r"^batched outputs differ from single-sample outputs: max abs diff 1 "
                                             r"on output 'y' \(atol 0.0001\)$"):
        verify_batch(model, naive.SerializeToString(), feeds)
    with pytest.raises(BatchAxisError, match="ReduceMean node #0 \\(output 'm'\\): it reduces over the batch axis"):
        dynamic_batch(model)


def test_verify_batch_catches_a_wrong_output_shape():
    model = _tiny([N("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], [("x", [1, 3])], ["y"], [("axes", _ints(0))])
    naive = onnx.load_model_from_string(model)
    naive.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    feeds = [{"x": np.full((1, 3), float(i), np.float32)} for i in (1, 2, 3)]
    with pytest.raises(BatchAxisError, match=r"^output 'y': a batch of 3 gave shape \[1, 3\], but one sample gives "
                                             r"\[1, 3\]$"):
        verify_batch(model, naive.SerializeToString(), feeds)


def test_verify_batch_wants_equal_shared_inputs():
    model = _tiny([N("Mul", ["x", "z"], ["y"])], [("x", [1, 3]), ("z", [3])], ["y"])
    edited = dynamic_batch(model)
    feeds = _random_feeds(model, 2)
    feeds[1]["z"] = feeds[1]["z"] + 1
    with pytest.raises(ValueError, match="input 'z' is not batched"):
        verify_batch(model, edited, feeds)


# ---------------------------------------------------------------------------------------------------
# the tool

TOOL = ROOT / "tools" / "dynamic_batch.py"


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)


def test_tool_writes_and_checks(tmp_path):
    src = tmp_path / "in.onnx"
    src.write_bytes(_tiny([N("Reshape", ["x", "shape"], ["y"])], [("x", [1, 12])], ["y"], [("shape", _ints(1, 3, 4))]))
    out = tmp_path / "out.onnx"
    proc = _tool(str(src), str(out), "--check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "check: a batch of 3 random inputs vs 3 single runs: max abs diff 0 (atol 0.0001): OK",
        f"wrote {out}: inputs 'x' [N, 12]; outputs 'y' [N, 3, 4]",
    ]
    assert _dims(onnx.load(str(out)).graph.input[0]) == ["N", 12]


def test_tool_refusal_is_one_line(tmp_path):
    src = tmp_path / "in.onnx"
    src.write_bytes(REFUSED[0].values[0])
    out = tmp_path / "out.onnx"
    proc = _tool(str(src), str(out), "--check")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"error: {src}: ReduceSum node 'sum_batch': it reduces over the batch axis\n"
    assert not out.exists()


def test_tool_missing_file_is_one_line(tmp_path):
    proc = _tool(str(tmp_path / "nope.onnx"), str(tmp_path / "out.onnx"))
    assert proc.returncode == 1
    assert proc.stderr == f"error: model file not found: {tmp_path / 'nope.onnx'}\n"


def test_tool_on_real_model(assets, tmp_path):
    out = tmp_path / "yunet_batch.onnx"
    proc = _tool(str(_model(assets, "yunet_n_320_320")), str(out), "--check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("check: a batch of 3 random inputs vs 3 single runs: max abs diff ")
    assert _dims(onnx.load(str(out)).graph.output[0]) == ["N", 1600, 1]
