"""YOLO decoding pinned to hand-computed numbers, a v3 head built in the test, and real models."""

from __future__ import annotations

import math
import textwrap

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamcnn import Context, Frame
from streamcnn.config import load_config
from streamcnn.errors import ConfigError, StreamcnnError
from streamcnn.ops import letterbox_info
from streamcnn.ops.yolo import cxcywh_to_xyxy, decode_anchor_grid, make_grid, select
from streamcnn.registry import ModelNotFoundError
from streamcnn_plugins.yolo import YoloStage

from .conftest import media, need, run_cli

V5_ANCHORS = [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]
LN3, LN4 = math.log(3), math.log(4)


def v5_head(logits: bool):
    grid = make_grid(640, 640, [8, 16, 32], V5_ANCHORS)
    raw = np.full((len(grid), 85), -20.0 if logits else 0.0, np.float32)
    row = 21010
    if logits:
        raw[row, :5] = LN3
        raw[row, 5] = LN4
    else:
        raw[row, :5] = 0.75
        raw[row, 5] = 0.8
    return grid, raw, row


def test_v5_export_has_25200_rows_and_the_cell_is_row_21010():
    grid, _, row = v5_head(True)
    assert len(grid) == 25200
    assert (grid.gx[row], grid.gy[row], grid.stride[row], grid.anchor_w[row], grid.anchor_h[row]) == (
        10, 5, 16, 62, 45)


def test_v5_rule_decode():
    grid, raw, row = v5_head(True)
    b, _, _ = decode_anchor_grid(raw, grid, "v5", logits=True)
    np.testing.assert_allclose(cxcywh_to_xyxy(b[row:row + 1])[0], [106.25, 45.375, 245.75, 146.625], atol=1e-4)


def test_v3_rule_decode():
    grid, raw, row = v5_head(True)
    b, _, _ = decode_anchor_grid(raw, grid, "v3", logits=True)
    np.testing.assert_allclose(b[row], [172, 92, 186, 135], atol=1e-4)


@pytest.mark.parametrize("logits", [True, False])
def test_score_is_0_6_from_logits_or_probabilities(logits):
    grid, raw, row = v5_head(logits)
    cxcywh, obj, cls = decode_anchor_grid(raw, grid, "v5", logits=logits)
    assert 0 <= obj.min() and obj.max() <= 1 and 0 <= cls.min() and cls.max() <= 1
    info = letterbox_info(640, 640, 640, 640)
    xyxy, conf, cid = select(cxcywh, obj, cls, info, conf=0.5)
    assert conf.tolist() == pytest.approx([0.6], abs=1e-6) and cid.tolist() == [0]
    np.testing.assert_allclose(xyxy[0], [106.25, 45.375, 245.75, 146.625], atol=1e-4)


def _v3_model(path, a_w, a_h):
    """A 2-level YOLOv3-style head (1, A·(5+C), H, W) per level, as constants, for a 64×64 input."""
    C, A = 2, 2
    outs, nodes, inits = [], [], []
    levels = []
    for li, (s, anchors) in enumerate([(32, [[6, 8], [10, 12]]), (16, [[a_w, a_h], [3, 3]])]):
        g = 64 // s
        raw = np.full((1, A * (5 + C), g, g), -12.0, np.float32)  # every score ≈ 0
        levels.append((s, anchors))
        if li == 1:  # anchor 0, gy=2, gx=1: tx=ty=0 → σ=0.5; tw=th=ln 2; obj ln 3; class 1 ln 4
            k = 5 + C
            raw[0, 0 * k + 0, 2, 1] = 0.0
            raw[0, 0 * k + 1, 2, 1] = 0.0
            raw[0, 0 * k + 2, 2, 1] = math.log(2)
            raw[0, 0 * k + 3, 2, 1] = math.log(2)
            raw[0, 0 * k + 4, 2, 1] = LN3
            raw[0, 0 * k + 6, 2, 1] = LN4
        inits.append(numpy_helper.from_array(raw, f"raw{li}"))
        nodes.append(helper.make_node("Add", [f"raw{li}", "zero"], [f"out{li}"]))
        outs.append(helper.make_tensor_value_info(f"out{li}", TensorProto.FLOAT, [1, A * (5 + C), g, g]))
    nodes.insert(0, helper.make_node("ReduceSum", ["images"], ["sum"], keepdims=1))
    nodes.insert(1, helper.make_node("Mul", ["sum", "zero_k"], ["zero"]))
    inits.append(numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero_k"))
    graph = helper.make_graph(nodes, "v3head", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                                [1, 3, 64, 64])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return [lv[1] for lv in levels], [lv[0] for lv in levels]


def test_v3_head_end_to_end_through_the_stage(tmp_path):
    anchors, strides = _v3_model(tmp_path / "v3.onnx", 11, 7)
    params = YoloStage.Params(model=str(tmp_path / "v3.onnx"), format="v3", anchors=anchors, strides=strides,
                              conf=0.5, resize="stretch", names=None)
    stage = YoloStage(params, Context("yolo", "t", tmp_path))
    frame = stage.process(Frame(np.zeros((64, 64, 3), np.uint8), 0, 0.0))
    det = frame.detections
    # cx = (0.5 + 1)·16 = 24, cy = (0.5 + 2)·16 = 40, w = 2·11 = 22, h = 2·7 = 14; score 0.75·0.8
    assert det.class_id.tolist() == [1] and det.class_name == ["bicycle"]
    np.testing.assert_allclose(det.xyxy[0], [13, 33, 35, 47], atol=1e-4)
    assert det.conf[0] == pytest.approx(0.6, abs=1e-6)
    # the same frame twice as large: boxes scale back to frame pixels
    det2 = stage.process(Frame(np.zeros((128, 128, 3), np.uint8), 1, 0.1)).detections
    np.testing.assert_allclose(det2.xyxy[0], [26, 66, 70, 94], atol=1e-3)


def test_missing_model_names_where_it_looked(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        YoloStage(YoloStage.Params(model="yolov99_nowhere"), Context("yolo", "t", tmp_path))
    msg = str(info.value)
    assert msg.startswith("model 'yolov99_nowhere' not found. Looked in: ")
    assert str(tmp_path / "yolov99_nowhere") in msg and "registry's model names: " in msg


# -- configuration errors on the yolo stage ---------------------------------------------------
def _cfg(tmp_path, stages: str):
    p = tmp_path / "p.yaml"
    p.write_text("pipelines:\n  cam:\n    source: pattern\n    stages:\n" + textwrap.indent(
        textwrap.dedent(stages).strip("\n"), "      ") + "\n")
    return p


def _err(path):
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_yolo_config_errors(tmp_path):
    p = _cfg(tmp_path, "- yolo: {model: yolox_nano_coco_416, iuo: 0.5}")
    assert "pipelines.cam.stages[0].yolo.iuo: unknown option 'iuo' for stage 'yolo' — did you mean 'iou'?" in _err(p)
    p = _cfg(tmp_path, "- yolo: {model: yolox_nano_coco_416, conf: high}")
    assert _err(p) == f"{p}:5:50: pipelines.cam.stages[0].yolo.conf: expected a number in [0, 1], got 'high'"
    p = _cfg(tmp_path, "- yolov: {model: yolox_nano_coco_416}")
    msg = _err(p)
    assert "unknown stage 'yolov' — did you mean 'yolo'? Installed stages: " in msg
    assert {"annotate", "edges", "yolo"} <= set(msg.split("Installed stages: ")[1].split(". ")[0].split(", "))
    p = _cfg(tmp_path, """
        - yolo:
          model: yolox_nano_coco_416
          conf: 0.5
        """)
    assert _err(p) == (f"{p}:5:9: pipelines.cam.stages[0].yolo: stage 'yolo' got no options, and the keys that "
                       "follow it ('model', 'conf') look like its options: indent them under 'yolo' "
                       "(2 more spaces than 'yolo')")
    p.write_text("pipelines:\n  cam:\n    source: pattern\n\tstages: [yolo]\n")
    assert "p.yaml:4:1: tab character in indentation" in _err(p)


# -- real models on real images ------------------------------------------------------------
def _detect(assets, model, image, **kw):
    need(assets / "models" / f"{model}.onnx")
    stage = YoloStage(YoloStage.Params(model=model, **kw), Context("yolo", "t", assets))
    img = cv2.imread(str(media(assets, image)), cv2.IMREAD_COLOR)
    return stage.process(Frame(img, 0, 0.0)).detections, img


def _count(det, name, min_conf=0.0):
    return sum(1 for n, c in zip(det.class_name, det.conf) if n == name and c > min_conf)


def test_yolox_bus(assets):
    det, img = _detect(assets, "yolox_nano_coco_416", "bus.jpg", conf=0.3)
    assert _count(det, "bus") == 1 and _count(det, "person") >= 3
    bus = det.xyxy[det.class_name.index("bus")]
    assert (bus[0] < 50 and bus[2] > 780 and 200 < bus[1] < 260 and 700 < bus[3] < 800), bus
    assert (det.xyxy[:, 2] <= img.shape[1]).all() and (det.xyxy[:, 3] <= img.shape[0]).all()


def test_yolox_dog(assets):
    det, _ = _detect(assets, "yolox_nano_coco_416", "dog.jpg", conf=0.3)
    assert {"dog", "bicycle", "car"} <= set(det.class_name)


def test_fastestv2_bus(assets):
    det, _ = _detect(assets, "yolo-fastestv2_coco_352", "bus.jpg", conf=0.3, iou=0.4)
    assert _count(det, "bus") == 1 and _count(det, "person") >= 2


def test_yolov8_person(assets):
    det, _ = _detect(assets, "yolov8n_coco_640_int8", "person.jpg", conf=0.3)
    assert {"person", "horse", "dog"} <= set(det.class_name)


def test_yolox_vtest_frame_100(assets):
    path = media(assets, "vtest.avi")
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, img = cap.read()
    assert ok
    stage = YoloStage(YoloStage.Params(model="yolox_nano_coco_416", conf=0.3), Context("yolo", "t", assets))
    det = stage.process(Frame(img, 100, 10.0)).detections
    assert _count(det, "person", 0.5) >= 5


def test_classes_filter_by_name(assets):
    det, _ = _detect(assets, "yolox_nano_coco_416", "dog.jpg", conf=0.3, classes=["dog", 2])
    assert sorted(det.class_name) == ["car", "dog"]


def test_yolox_matches_an_independent_reference_decode(assets):
    """The YOLOX decode written out from MODELS.md §2, loop by loop, against the stage, to 1e-3 px."""
    import onnxruntime as ort

    model = assets / "models" / "yolox_nano_coco_416.onnx"
    need(model)
    img = cv2.imread(str(media(assets, "dog.jpg")))
    h, w = img.shape[:2]
    r = min(416 / h, 416 / w)
    resized = cv2.resize(img, (int(round(w * r)), int(round(h * r))), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((416, 416, 3), 114, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized  # top-left letterbox, BGR, 0..255
    blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
    out = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"images": blob})[0][0]
    boxes, scores, classes = [], [], []
    row = 0
    for s in (8, 16, 32):
        n = 416 // s
        for gy in range(n):
            for gx in range(n):
                dx, dy, lw, lh, obj = out[row, :5]
                cls = int(np.argmax(out[row, 5:]))
                score = obj * out[row, 5 + cls]
                if score > 0.3:
                    cx, cy = (dx + gx) * s, (dy + gy) * s
                    bw, bh = math.exp(lw) * s, math.exp(lh) * s
                    boxes.append([(cx - bw / 2) / r, (cy - bh / 2) / r, bw / r, bh / r])
                    scores.append(float(score))
                    classes.append(cls)
                row += 1
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(boxes, scores, classes, 0.3, 0.45)).reshape(-1)
    ref = sorted((classes[i], *np.clip([boxes[i][0], boxes[i][1], boxes[i][0] + boxes[i][2],
                                         boxes[i][1] + boxes[i][3]], 0, [w, h, w, h])) for i in keep)
    stage = YoloStage(YoloStage.Params(model="yolox_nano_coco_416", conf=0.3), Context("yolo", "t", assets))
    det = stage.process(Frame(img, 0, 0.0)).detections
    ours = sorted((int(c), *b) for c, b in zip(det.class_id, det.xyxy))
    assert len(ours) == len(ref) >= 3
    for a, b in zip(ours, ref):
        assert a[0] == b[0]
        np.testing.assert_allclose(a[1:], b[1:], atol=1e-3)


# -- the head shape checked against the format at start-up ---------------------------------------
def _const_model(path, out_shape, declared=None, metadata=None, size=64):
    """A model with a ``size×size`` input whose single output 'out' is a constant of ``out_shape``.
    ``declared`` (dims that may be names) makes the batch axis dynamic and the output a reshape whose
    declared shape is ``declared``."""
    inits = [numpy_helper.from_array(np.zeros(out_shape, np.float32), "raw"),
             numpy_helper.from_array(np.zeros((), np.float32), "zero_k")]
    nodes = [helper.make_node("ReduceSum", ["images"], ["sum"], keepdims=0),
             helper.make_node("Mul", ["sum", "zero_k"], ["zero"])]
    if declared is None:
        nodes.append(helper.make_node("Add", ["raw", "zero"], ["out"]))
    else:  # out = reshape(raw + 0, (batch, out_shape[1], -1)): only the middle dim is known to ORT
        inits.append(numpy_helper.from_array(np.array([out_shape[1], -1], np.int64), "rest"))
        nodes += [helper.make_node("Add", ["raw", "zero"], ["flat"]),
                  helper.make_node("Shape", ["images"], ["batch"], end=1),
                  helper.make_node("Concat", ["batch", "rest"], ["shape"], axis=0),
                  helper.make_node("Reshape", ["flat", "shape"], ["out"])]
    batch = 1 if declared is None else "batch"
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(declared or out_shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)
    return str(path)


# a 64×64 input has 8² + 4² + 2² = 84 cells at strides 8, 16, 32
V8_64 = (1, 6, 84)  # 4 + 2 classes, 84 anchor points
YOLOX_64 = (1, 84, 7)  # 84 cells, 5 + 2 classes


def _stage_error(tmp_path, **kw):
    with pytest.raises(StreamcnnError) as info:
        YoloStage(YoloStage.Params(**kw), Context("yolo", "t", tmp_path))
    return str(info.value)


def test_a_wrong_format_fails_at_start_up_and_names_the_likely_one(tmp_path):
    v8 = _const_model(tmp_path / "v8.onnx", V8_64)
    assert _stage_error(tmp_path, model=v8, format="yolox") == (
        f"stage 'yolo': model {v8}: output 'out' (1, 6, 84) does not fit format 'yolox' (expects (1, 84, 5+C) for a "
        "64×64 input, strides [8, 16, 32]); it looks like format 'v8'")
    assert "does not fit format 'v5' (expects (1, 252, 5+C)" in _stage_error(tmp_path, model=v8, format="v5")
    yolox = _const_model(tmp_path / "yolox.onnx", YOLOX_64)
    assert _stage_error(tmp_path, model=yolox, format="v8") == (
        f"stage 'yolo': model {yolox}: output 'out' (1, 84, 7) does not fit format 'v8' (expects (1, 4+C, 84) for a "
        "64×64 input); it looks like format 'yolox'")
    msg = _stage_error(tmp_path, model=yolox, format="v3", anchors=[[[1, 1]] * 3] * 3)
    assert "does not fit format 'v3' (expects (1, 252, 5+C), or one output per stride [8, 16, 32]: " \
           "(1, 3·(5+C), 8, 8), (1, 3·(5+C), 4, 4), (1, 3·(5+C), 2, 2)" in msg
    assert msg.endswith("it looks like format 'yolox'")
    assert _stage_error(tmp_path, model=yolox) == (
        f"stage 'yolo': cannot tell the head format of {yolox} (output shape (1, 84, 7)); set format: one of yolox, "
        "v8, v5, v5-raw, v3, fastestv2; it looks like format 'yolox'")
    # the right formats load
    assert YoloStage(YoloStage.Params(model=v8, format="v8"), Context("yolo", "t", tmp_path)).format == "v8"
    assert YoloStage(YoloStage.Params(model=yolox, format="yolox"), Context("yolo", "t", tmp_path)).format == "yolox"


def test_dynamic_output_dims_check_what_they_can(tmp_path):
    dyn = _const_model(tmp_path / "dyn.onnx", V8_64, declared=["batch", 6, "anchors"])
    assert YoloStage(YoloStage.Params(model=dyn, format="v8"), Context("yolo", "t", tmp_path)).format == "v8"
    msg = _stage_error(tmp_path, model=dyn, format="yolox")
    assert msg == (f"stage 'yolo': model {dyn}: output 'out' (batch, 6, anchors) does not fit format 'yolox' "
                   "(expects (1, 84, 5+C) for a 64×64 input, strides [8, 16, 32]); it does not look like a YOLO head "
                   "this stage knows")


def test_not_a_yolo_model_fails_at_start_up(assets):
    need(assets / "models" / "yunet_n_dynamic.onnx")
    path = assets / "models" / "yunet_n_dynamic.onnx"
    msg = _stage_error(assets, model="yunet_n_dynamic.onnx")
    assert msg == (f"stage 'yolo': model {path} has format 'yunet' in the model registry, which the yolo stage "
                   "cannot decode (formats: yolox, v8, v5, v5-raw, v3, fastestv2); the registry lists yunet_n_dynamic "
                   "as a 'face_detect' model, not a YOLO detector: use the 'face_detect' stage")
    msg = _stage_error(assets, model="yunet_n_dynamic.onnx", format="v8")
    assert msg.startswith(f"stage 'yolo': model {path}: output 'cls_8' (batch, dim, 1) (1st of 12) does not fit "
                          "format 'v8' (expects (1, 4+C, 8400) for a 640×640 input)")


def test_yolov8_model_as_yolox_fails_at_start_up_and_validation(assets, tmp_path):
    need(assets / "models" / "yolov8n_coco_640_int8.onnx")
    path = assets / "models" / "yolov8n_coco_640_int8.onnx"
    assert _stage_error(assets, model="yolov8n_coco_640_int8", format="yolox") == (
        f"stage 'yolo': model {path}: output 'output0' (1, 84, 8400) does not fit format 'yolox' (expects (1, 8400, "
        "5+C) for a 640×640 input, strides [8, 16, 32]); it looks like format 'v8'")
    p = _cfg(tmp_path, "- yolo: {model: yolov8n_coco_640_int8, format: yolox}")
    res = run_cli("run", str(p), "--max-frames", "2", timeout=120)
    # caught before the run starts (validate builds the stage), at the stage's YAML line
    assert res.returncode == 2 and "p.yaml:5:9: pipelines.cam.stages[0].yolo: stage 'yolo': model " in res.stderr
    assert "does not fit format 'yolox'" in res.stderr


# -- classes and names, checked at validate time -------------------------------------------------
def _validate_err(tmp_path, stage):
    with pytest.raises(ConfigError) as info:
        load_config(_cfg(tmp_path, stage), check=True)
    return str(info.value)


def test_classes_report_every_unknown_name_with_a_suggestion(tmp_path):
    model = _const_model(tmp_path / "m.onnx", YOLOX_64)  # no metadata: COCO-80 names
    msg = _validate_err(tmp_path, "- yolo: {model: m.onnx, classes: [persn, dgo, car]}")
    assert msg.endswith("pipelines.cam.stages[0].yolo: unknown class names in `classes`: 'persn' — did you mean "
                        "'person'?; 'dgo' — did you mean 'dog'? (80 classes, names from COCO-80)")
    msg = _validate_err(tmp_path, "- yolo: {model: m.onnx, classes: [99, person, -1]}")
    assert msg.endswith("class ids 99, -1 in `classes` out of range 0..79 (80 classes, names from COCO-80)")
    load_config(_cfg(tmp_path, "- yolo: {model: m.onnx, format: yolox, classes: [person, 1]}"), check=True)
    assert model


def test_classes_use_the_model_metadata_names(tmp_path):
    _const_model(tmp_path / "m.onnx", V8_64, metadata={"names": "{0: 'cat', 1: 'dog'}"})
    msg = _validate_err(tmp_path, "- yolo: {model: m.onnx, classes: [dgo, person, 2]}")
    assert msg.endswith("unknown class names in `classes`: 'dgo' — did you mean 'dog'?; 'person'; class id 2 in "
                        "`classes` out of range 0..1 (2 classes, names from metadata of m.onnx)")
    cfg = load_config(_cfg(tmp_path, "- yolo: {model: m.onnx, format: v8, classes: [dog]}"), check=True)
    comp = cfg.pipelines["cam"].stages[0]
    assert comp.cls(comp.params, comp.ctx).keep_classes.tolist() == [1]


def test_names_file_missing_or_of_the_wrong_length(tmp_path):
    model = _const_model(tmp_path / "m.onnx", YOLOX_64)
    msg = _validate_err(tmp_path, "- yolo: {model: m.onnx, names: labels/my.names}")
    assert msg.endswith(f"pipelines.cam.stages[0].yolo: names file {tmp_path / 'labels' / 'my.names'} not found")
    (tmp_path / "my.names").write_text("cat\ndog\nbird\n")
    msg = _validate_err(tmp_path, "- yolo: {model: m.onnx, names: my.names, classes: [cta]}")
    assert msg.endswith(f"unknown class name in `classes`: 'cta' — did you mean 'cat'? (3 classes, names from "
                        f"names file {tmp_path / 'my.names'})")
    # the model has 2 classes (5 + 2 columns): found when the model loads
    assert _stage_error(tmp_path, model=model, format="yolox", names="my.names") == (
        f"stage 'yolo': names file {tmp_path / 'my.names'} has 3 names but model {model} has 2 classes "
        "(format 'yolox')")
    (tmp_path / "my.names").write_text("cat\ndog\n")
    stage = YoloStage(YoloStage.Params(model=model, format="yolox", names="my.names"), Context("yolo", "t", tmp_path))
    assert stage.names == ["cat", "dog"]


def test_imgsz_mismatch_with_a_fixed_input_warns_and_uses_the_models_size(assets, caplog):
    import logging

    need(assets / "models" / "yolox_nano_coco_416.onnx")
    with caplog.at_level(logging.WARNING):
        stage = YoloStage(YoloStage.Params(model="yolox_nano_coco_416", imgsz="640x640"), Context("yolo", "t", assets))
    assert (stage.net_w, stage.net_h) == (416, 416)
    assert "imgsz 640x640 does not match the fixed input 416x416" in caplog.text
    assert "using the model's size" in caplog.text
