"""Letterbox, IoU and NMS against hand-computed values, a brute-force reference and OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamcnn.ops import box_iou, clip_boxes, letterbox, letterbox_info, nms


def test_letterbox_640x480_to_416_maps_back_exactly():
    info = letterbox_info(640, 480, 416, 416, "center")
    assert (info.scale_x, info.pad_left, info.pad_top) == (0.65, 0, 52)
    net = np.array([[208 - 50, 208 - 50, 208 + 50, 208 + 50]], np.float32)  # centre (208, 208), 100×100
    np.testing.assert_allclose(info.boxes_to_frame(net), [[243.0769, 163.0769, 396.9231, 316.9231]], atol=1e-4)


def test_letterbox_pixels_and_odd_padding():
    img = np.full((480, 650, 3), 7, np.uint8)  # resized to 416×307: 109 rows of padding, odd
    out, info = letterbox(img, 416, 416, "center")
    assert out.shape == (416, 416, 3) and out.dtype == np.uint8
    assert (info.pad_top, info.pad_left) == (54, 0)
    assert round(480 * info.scale_y) == 307
    assert (out[:54] == 114).all() and (out[54 + 307:] == 114).all()  # 54 top, 55 bottom: odd pixel bottom
    assert (out[54:54 + 307] == 7).all() and 416 - 54 - 307 == 55
    tl, tinfo = letterbox(img, 416, 416, "top-left")
    assert (tinfo.pad_left, tinfo.pad_top) == (0, 0) and (tl[:307] == 7).all() and (tl[307:] == 114).all()
    st, sinfo = letterbox(img, 320, 240, "stretch")
    assert st.shape == (240, 320, 3) and sinfo.scale_x == 320 / 650 and sinfo.scale_y == 0.5
    with pytest.raises(ValueError, match="resize mode must be"):
        letterbox_info(10, 10, 5, 5, "fit")  # type: ignore[arg-type]


def test_inverse_clips_to_frame():
    info = letterbox_info(640, 480, 416, 416)
    out = info.boxes_to_frame(np.array([[-10, 0, 500, 500]], np.float32))
    assert out.tolist() == [[0, 0, 640, 480]]


def test_nms_example_per_class_and_agnostic():
    boxes = np.array([[100, 100, 200, 200], [102, 101, 202, 201], [300, 300, 400, 400]], np.float32)
    scores = np.array([0.9, 0.6, 0.8])
    cls = np.array([0, 1, 0])
    assert nms(boxes, scores, 0.45, cls).tolist() == [0, 2, 1]
    assert nms(boxes, scores, 0.45, cls, agnostic=True).tolist() == [0, 2]
    assert nms(boxes, scores, 0.45).tolist() == [0, 2]


def test_nms_threshold_is_strict_and_ties_keep_input_order():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    assert box_iou(a[:1], a[1:])[0, 0] == 0.5
    assert nms(a, np.array([0.5, 0.5]), 0.5).tolist() == [0, 1]  # not > 0.5: both kept, input order
    assert nms(a, np.array([0.5, 0.5]), 0.49).tolist() == [0]
    assert nms(a[::-1], np.array([0.5, 0.5]), 0.49).tolist() == [0]


def test_iou_zero_union_is_zero_not_nan():
    z = np.zeros((2, 4), np.float32)
    iou = box_iou(z, z)
    assert not np.isnan(iou).any() and (iou == 0).all()
    assert nms(z, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]


def brute_force_nms(boxes, scores, thr):
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(box_iou(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= thr for k in keep):
            keep.append(i)
    return keep


def random_boxes(rng, n):
    xy = rng.uniform(0, 600, (n, 2))
    wh = rng.uniform(5, 120, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def test_iou_matches_brute_force():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 50), random_boxes(rng, 40)
    ref = np.zeros((50, 40))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            ref[i, j] = inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)
    np.testing.assert_allclose(box_iou(a, b), ref, atol=1e-6)


@pytest.mark.parametrize("thr", [0.3, 0.45, 0.7])
def test_nms_matches_opencv_and_brute_force_on_thousands_of_boxes(thr):
    rng = np.random.default_rng(int(thr * 100))
    for n in (300, 3000):
        boxes = random_boxes(rng, n)
        scores = rng.uniform(0.01, 1.0, n).astype(np.float32)
        ours = nms(boxes, scores, thr)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
        ref = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, thr)
        assert ours.tolist() == np.asarray(ref).reshape(-1).tolist()
        if n == 300:
            assert ours.tolist() == brute_force_nms(boxes, scores, thr)
        cls = rng.integers(0, 5, n)
        per_class = nms(boxes, scores, thr, cls)
        ref_b = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), cls.tolist(), 0.0, thr)
        assert sorted(per_class.tolist()) == sorted(np.asarray(ref_b).reshape(-1).tolist())
        assert (np.diff(scores[per_class]) <= 0).all()


def test_max_det_and_clip():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 100)
    scores = rng.uniform(0, 1, 100)
    assert len(nms(boxes, scores, 0.5, max_det=5)) == 5
    assert clip_boxes(np.array([[-5, -5, 700, 20]], np.float32), 640, 480).tolist() == [[0, 0, 640, 20]]


def test_nms_suppression_chain_and_both_code_paths(monkeypatch):
    # A suppresses B; B would suppress C, but B is gone, so C stays (greedy, not "fast NMS")
    boxes = np.array([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]
    import streamcnn.ops.boxes as b

    rng = np.random.default_rng(7)
    bx = random_boxes(rng, 500)
    sc = rng.uniform(0, 1, 500)
    cls = rng.integers(0, 3, 500)
    by_matrix = nms(bx, sc, 0.3, cls)
    monkeypatch.setattr(b, "_MATRIX_MAX", 0)
    assert nms(bx, sc, 0.3, cls).tolist() == by_matrix.tolist()
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]


def test_nms_long_suppression_chain_takes_the_loop_and_stays_exact():
    # 300 boxes each shifted 1 px: a chain far longer than the matrix passes allow
    x = np.arange(300, dtype=np.float32)
    boxes = np.stack([x, np.zeros_like(x), x + 10, np.full_like(x, 10)], 1)
    scores = np.linspace(1, 0.5, 300)
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == brute_force_nms(boxes, scores, 0.5)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    assert keep.tolist() == np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, 0.5)).reshape(-1).tolist()
