"""Box operations shared by every detector plugin: IoU, clipping, non-max suppression.

All functions are vectorised numpy and take ``xyxy`` boxes: float (N, 4) ``x1, y1, x2, y2`` in
pixels, x right, y down. IoU is the Jaccard index |A∩B| / |A∪B| of the two rectangles.
"""

from __future__ import annotations

import numpy as np


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """Areas (N,) in square pixels; boxes with x2 < x1 or y2 < y1 have area 0."""
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) float32 of ``a`` (N, 4) and ``b`` (M, 4).

    A pair whose union is 0 (two empty boxes) has IoU 0, never NaN.
    """
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def clip_boxes(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (N, 4) boxes to the image ``[0, width] × [0, height]`` (pixels); returns a new array."""
    out = np.empty_like(xyxy)
    np.clip(xyxy[:, 0::2], 0, width, out=out[:, 0::2])
    np.clip(xyxy[:, 1::2], 0, height, out=out[:, 1::2])
    return out


_MATRIX_MAX = 2048  # up to this many boxes the N×N IoU matrix (≤ 16 MiB) is cheaper than a Python loop


_MATRIX_PASSES = 8  # a longer suppression chain than this falls back to the per-box loop


def _greedy_by_matrix(boxes: np.ndarray, iou_threshold: float) -> np.ndarray | None:
    """Exact greedy NMS for score-sorted boxes (N, 4) via the IoU matrix; a keep mask (N,), or
    None when it did not settle within ``_MATRIX_PASSES`` passes.

    Greedy NMS keeps box j iff no *kept* box i < j has IoU(i, j) > threshold. That is the unique
    fixed point of ``keep[j] = not any_i<j (S[i, j] and keep[i])``; iterating it from all-True
    fixes at least one more leading box per pass and settles after (longest suppression chain + 1)
    passes — usually 2 to 4 for detector output. Long chains (e.g. many boxes each shifted a little)
    would need up to N passes, so the caller then uses the per-box loop instead.
    """
    sup = np.triu(box_iou(boxes, boxes) > iou_threshold, k=1)
    keep = np.ones(len(boxes), dtype=bool)
    for _ in range(_MATRIX_PASSES):
        new = ~(sup & keep[:, None]).any(axis=0)
        if np.array_equal(new, keep):
            return keep
        keep = new
    return None


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_id: np.ndarray | None = None,
    agnostic: bool = False,
    max_det: int | None = None,
) -> np.ndarray:
    """Greedy non-max suppression; returns the kept indices (K,) int64, best score first.

    Boxes are visited by descending score (equal scores in input order: a stable sort); a box is
    suppressed only when its IoU with an already kept box is **strictly greater** than
    ``iou_threshold``. With ``class_id`` and ``agnostic=False`` boxes only suppress boxes of the
    same class (per-class NMS, done in one pass by offsetting each class into its own region of
    the plane, the trick of torchvision's ``batched_nms``).

    Args:
        xyxy: float (N, 4) boxes in pixels.
        scores: float (N,) scores.
        iou_threshold: IoU above which the lower-scored box is removed, in [0, 1].
        class_id: int (N,) classes, or None (then NMS is class-agnostic).
        agnostic: ignore ``class_id``.
        max_det: keep at most this many boxes.
    """
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    n = len(xyxy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    boxes = xyxy
    if class_id is not None and not agnostic:
        span = float(np.abs(xyxy).max()) * 2 + 1.0
        boxes = xyxy + (np.asarray(class_id, dtype=np.float32) * span)[:, None]
    boxes = boxes[order]
    limit = n if max_det is None else max_det
    if n <= _MATRIX_MAX:
        keep_mask = _greedy_by_matrix(boxes, iou_threshold)
        if keep_mask is not None:
            return order[np.flatnonzero(keep_mask)[:limit]]
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    remaining = np.arange(n)
    while remaining.size and len(keep) < limit:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.zeros_like(inter)
        np.divide(inter, union, out=iou, where=union > 0)
        remaining = rest[iou <= iou_threshold]
    return order[np.asarray(keep, dtype=np.int64)]
