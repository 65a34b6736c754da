"""`fast_nms` returns exactly the indices of the reference `nms`, and `select` is unchanged.

Every code path of `fast_nms` is pinned against `nms` on thousands of random box sets (ties,
duplicates, zero-area and inverted boxes, many classes, thresholds hit exactly) and on real
YOLOX and YOLOv8 heads from vtest.avi frames.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import streamcnn.ops.boxes as B
import streamcnn.ops.yolo as Y
from streamcnn.ops import box_iou, letterbox, letterbox_info, nms
from streamcnn.ops.boxes import fast_nms
from streamcnn.ops.yolo import cxcywh_to_xyxy, decode_v8, decode_yolox, make_grid, select

from .conftest import media, need

# path switches: (_DENSE_MAX, _EDGE_PASSES): 0 passes means the Python pass over the edges at once
PATHS = {
    "default": None,
    "dense-pairs-loop": (10**9, 0),
    "sweep-pairs-loop": (0, 0),
    "sweep-fixed-point": (0, 10**6),
    "dense-fixed-point": (10**9, 10**6),
}


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch):
    values = PATHS[request.param]
    if values is not None:
        for name, value in zip(("_DENSE_MAX", "_EDGE_PASSES"), values):
            monkeypatch.setattr(B, name, value)
    return request.param


def random_case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes in clusters (so that plenty of pairs overlap), with every awkward kind mixed in."""
    centres = rng.uniform(0, 500, (max(1, n // 6), 2))
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(4, 80, (n, 2))
    if rng.random() < 0.5:  # integer pixels: many IoUs land exactly on simple fractions
        xy, wh = np.round(xy), np.round(wh)
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    kind = rng.random(n)
    boxes[kind < 0.05, 2] = boxes[kind < 0.05, 0]  # zero width
    boxes[(kind >= 0.05) & (kind < 0.08), 2:] = boxes[(kind >= 0.05) & (kind < 0.08), :2] - 3  # inverted
    dup = rng.random(n) < 0.1
    if n > 1:
        boxes[dup] = boxes[rng.integers(0, n, dup.sum())]  # exact duplicates
    scores = rng.choice([0.3, 0.5, 0.5, 0.9], n) if rng.random() < 0.3 else rng.uniform(0, 1, n)  # ties
    classes = rng.integers(0, rng.choice([1, 3, 80]), n)
    return boxes, scores.astype(np.float32), classes


def check(boxes, scores, thr, classes=None, agnostic=False, max_det=None):
    want = nms(boxes, scores, thr, classes, agnostic, max_det)
    got = fast_nms(boxes, scores, thr, classes, agnostic, max_det)
    assert got.dtype == np.int64 and want.dtype == np.int64
    assert np.array_equal(got, want), (len(boxes), thr, agnostic, max_det)
    return got


def test_thousands_of_random_sets(path):
    rng = np.random.default_rng(11)
    sizes = [1, 2, 3, 5, 8, 13, 30, 63, 64, 65, 100, 127, 128, 129, 200]
    for k in range(400 if path == "default" else 150):
        n = sizes[k % len(sizes)]
        boxes, scores, classes = random_case(rng, n)
        thr = float(rng.choice([0.0, 0.3, 0.45, 0.5, 0.7, 1.0, 1 / 3]))
        check(boxes, scores, thr, classes)
        check(boxes, scores, thr, classes, agnostic=True)
        check(boxes, scores, thr)
        check(boxes, scores, thr, classes, max_det=int(rng.integers(0, 5)))


def test_large_sets_take_the_sweep(path):
    rng = np.random.default_rng(12)
    for n in (300, 1000, 2500):  # 2500: the reference uses its per-box loop
        boxes, scores, classes = random_case(rng, n)
        check(boxes, scores, 0.45, classes)
        check(boxes, scores, 0.6, agnostic=True)


def test_iou_exactly_at_the_threshold_is_kept():
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 10], [0, 0, 10, 20]], np.float32)
    s = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    iou = box_iou(a, a)
    for thr in (float(iou[0, 1]), float(iou[0, 3]), 0.5, np.float32(1 / 3)):
        check(a, s, thr)
    assert fast_nms(a[:2], s[:2], float(iou[0, 1])).tolist() == [0, 1]  # IoU == threshold: not suppressed


def test_ties_keep_input_order_and_duplicates_suppress():
    a = np.array([[0, 0, 10, 10]] * 4 + [[50, 50, 60, 60]] * 2, np.float32)
    s = np.array([0.5, 0.5, 0.9, 0.5, 0.5, 0.5], np.float32)
    assert check(a, s, 0.5).tolist() == [2, 4]
    assert check(a, s, 1.0).tolist() == [2, 0, 1, 3, 4, 5]


def test_zero_area_boxes_never_suppress():
    z = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 0], [2, 2, 1, 1]], np.float32)
    assert check(z, np.array([0.9, 0.8, 0.7, 0.6], np.float32), 0.0).tolist() == [0, 1, 2, 3]


def test_long_suppression_chain(path):
    x = np.arange(400, dtype=np.float32)
    boxes = np.stack([x, np.zeros_like(x), x + 10, np.full_like(x, 10)], 1)
    scores = np.linspace(1, 0.5, 400).astype(np.float32)
    check(boxes, scores, 0.5)
    check(boxes[:100], scores[:100], 0.5)


def test_falls_back_to_the_reference(monkeypatch):
    rng = np.random.default_rng(13)
    boxes, scores, classes = random_case(rng, 150)
    monkeypatch.setattr(B, "_PAIRS_MAX", 0)
    check(boxes, scores, 0.45, classes)
    monkeypatch.setattr(B, "_PAIRS_MAX", 1 << 20)
    monkeypatch.setattr(B, "_LOOP_EDGES", 0)
    monkeypatch.setattr(B, "_EDGE_PASSES", 0)
    check(boxes, scores, 0.45, classes)
    for thr in (-0.1, float("nan")):
        check(boxes[:20], scores[:20], thr)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf·0 in the class shift, as in `nms`
def test_non_finite_boxes_and_scores(path):
    rng = np.random.default_rng(15)
    for bad in (np.nan, np.inf, -np.inf, 1e30):
        boxes, scores, classes = random_case(rng, 40)
        boxes[rng.integers(0, 40, 4), rng.integers(0, 4, 4)] = bad
        check(boxes, scores, 0.45, classes)
        check(boxes, scores, 0.45)
        scores[3] = np.nan
        check(boxes, scores, 0.45, classes)


def test_why_opencv_nms_is_not_a_drop_in():
    """OpenCV counts two empty boxes as IoU 1 (and drops scores ≤ its threshold); the reference does neither."""
    z = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]], np.float32)
    s = np.array([0.9, 0.8, 0.7], np.float32)
    xywh = np.concatenate([z[:, :2], z[:, 2:] - z[:, :2]], 1)
    assert np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), s.tolist(), 0.0, 0.5)).reshape(-1).tolist() == [0, 2]
    assert check(z, s, 0.5).tolist() == [0, 1, 2]


def test_empty_and_single():
    assert fast_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert fast_nms(np.array([[0, 0, 1, 1]]), np.array([0.3]), 0.5).tolist() == [0]
    assert fast_nms(np.array([[0, 0, 1, 1]]), np.array([0.3]), 0.5, max_det=0).tolist() == []


# -- select: same output as before on synthetic and real heads -----------------------------------
def reference_select(cxcywh, obj, cls, info, conf=0.25, iou=0.45, agnostic=False, classes=None, max_det=300):
    """`select` as it was written before `fast_nms` (all rows, reference `nms`)."""
    if obj is not None:
        keep = obj > conf
        cxcywh, obj, cls = cxcywh[keep], obj[keep], cls[keep]
    class_id = cls.argmax(axis=1) if cls.shape[1] else np.zeros(len(cls), np.int64)
    best = cls[np.arange(len(cls)), class_id] if cls.shape[1] else np.ones(len(cls), np.float32)
    score = best * obj if obj is not None else best
    keep = score > conf
    if classes is not None:
        keep &= np.isin(class_id, classes)
    xyxy = info.boxes_to_frame(cxcywh_to_xyxy(cxcywh[keep]))
    score, class_id = score[keep].astype(np.float32), class_id[keep].astype(np.int64)
    area_ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    xyxy, score, class_id = xyxy[area_ok], score[area_ok], class_id[area_ok]
    idx = nms(xyxy, score, iou, class_id, agnostic=agnostic, max_det=max_det)
    return xyxy[idx], score[idx], class_id[idx]


def assert_select_same(cxcywh, obj, cls, info, **kw):
    got = select(cxcywh, obj, cls, info, **kw)
    want = reference_select(cxcywh, obj, cls, info, **kw)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    return got


def synthetic_yolox(rng, rows=8400, classes=80):
    raw = np.empty((rows, 5 + classes), np.float32)
    raw[:, :2] = rng.uniform(-0.5, 1.5, (rows, 2))
    raw[:, 2:4] = rng.normal(0.5, 0.8, (rows, 2))
    raw[:, 4] = rng.beta(0.3, 6.0, rows)
    raw[:, 5:] = rng.beta(0.3, 8.0, (rows, classes))
    hot = rng.choice(rows, 150, replace=False)
    raw[hot, 4] = rng.uniform(0.5, 0.95, len(hot))
    raw[hot, 5 + rng.integers(0, classes, len(hot))] = rng.uniform(0.6, 0.99, len(hot))
    return raw


def test_select_unchanged_on_synthetic_heads():
    rng = np.random.default_rng(16)
    grid = make_grid(640, 640, [8, 16, 32])
    info = letterbox_info(768, 576, 640, 640, "center")
    for _ in range(3):
        cxcywh, obj, cls = decode_yolox(synthetic_yolox(rng), grid)
        for conf in (0.05, 0.3, 0.6):
            assert_select_same(cxcywh, obj, cls, info, conf=conf, iou=0.45)
        assert_select_same(cxcywh, obj, cls, info, conf=0.1, agnostic=True, max_det=20)
        assert_select_same(cxcywh, obj, cls, info, conf=0.1, classes=np.array([0, 5, 79]))
        assert_select_same(cxcywh, None, cls, info, conf=0.5)  # no objectness (YOLOv8 style)
        assert_select_same(cxcywh, obj, cls[:, :0], info, conf=0.5)  # no classes


def _vtest(assets, indices):
    cap = cv2.VideoCapture(str(media(assets, "vtest.avi")))
    out = []
    for i in range(max(indices) + 1):
        ok, img = cap.read()
        assert ok
        if i in indices:
            out.append(img)
    cap.release()
    return out


def test_real_yolox_heads(assets):
    import onnxruntime as ort

    model = assets / "models" / "yolox_nano_coco_416.onnx"
    need(model)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    grid = make_grid(416, 416, [8, 16, 32])
    for img in _vtest(assets, [0, 100, 250, 400, 600, 780]):
        canvas, info = letterbox(img, 416, 416, "top-left")
        raw = sess.run(None, {"images": cv2.dnn.blobFromImage(canvas, 1.0)})[0][0]
        cxcywh, obj, cls = decode_yolox(raw, grid)
        for conf, iou in ((0.3, 0.45), (0.05, 0.45), (0.01, 0.65), (0.3, 0.3)):
            assert_select_same(cxcywh, obj, cls, info, conf=conf, iou=iou)
        # the raw candidates straight into both NMS, per class and agnostic, at several thresholds
        score = obj * cls.max(1)
        m = score > 0.01
        xyxy = info.boxes_to_frame(cxcywh_to_xyxy(cxcywh[m]))
        for thr in (0.3, 0.45, 0.5, 0.7):
            check(xyxy, score[m], thr, cls[m].argmax(1))
            check(xyxy, score[m], thr, agnostic=True)


def test_real_yolov8_heads(assets):
    import onnxruntime as ort

    model = assets / "models" / "yolov8n_coco_640_int8.onnx"
    need(model)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for img in _vtest(assets, [100, 500]):
        canvas, info = letterbox(img, 640, 640, "center")
        out = sess.run(None, {"images": cv2.dnn.blobFromImage(canvas, 1 / 255, swapRB=True)})[0][0]
        cxcywh, obj, cls = decode_v8(out)
        for conf in (0.25, 0.05):
            assert_select_same(cxcywh, obj, cls, info, conf=conf, iou=0.45)


def test_select_uses_fast_nms():
    assert Y.fast_nms is fast_nms
