"""Box operations shared by every detector plugin: IoU, clipping, non-max suppression.

All functions are vectorised numpy and take ``xyxy`` boxes: float (N, 4) ``x1, y1, x2, y2`` in
pixels, x right, y down. IoU is the Jaccard index |A∩B| / |A∪B| of the two rectangles.

`nms` is the reference greedy NMS (IoU matrix, or a per-box loop); `fast_nms` returns the same
indices for every input, computing IoU only for the pairs of boxes that can overlap, 2-5× cheaper
on detector output (much more above 2048 boxes, where `nms` loops per box). Every IoU, in both,
goes through one float32 formula (`_iou`), so the two agree to the last bit, also next to the
threshold. (OpenCV's ``NMSBoxes`` computes IoU in double precision with its own class offsets, so
it may decide near-threshold pairs the other way; checking its answer exactly costs as much as
`fast_nms`, so it is not used.)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """Areas (...,) float in square pixels of boxes (..., 4); boxes with x2 < x1 or y2 < y1 have area 0.

    The one area formula of this module (``max(x2 - x1, 0) · max(y2 - y1, 0)``, which is what
    ``np.clip(·, 0, None)`` computes).
    """
    wh = xyxy[..., 2:] - xyxy[..., :2]
    np.maximum(wh, 0, out=wh)
    return wh[..., 0] * wh[..., 1]


def _iou(a: np.ndarray, b: np.ndarray, a_area: np.ndarray, b_area: np.ndarray) -> np.ndarray:
    """Elementwise (broadcast) float32 IoU of boxes given coordinate-first, ``a`` (4, ...) and
    ``b`` (4, ...) (rows x1, y1, x2, y2), with their `box_area` (...,); 0 where the union is 0.

    The one IoU formula of this module: `box_iou`, both paths of `nms` and all of `fast_nms`
    use it, so they agree bit for bit.
    """
    lt = np.maximum(a[:2], b[:2])
    wh = np.minimum(a[2:], b[2:])
    wh -= lt
    np.maximum(wh, 0, out=wh)
    inter = wh[0] * wh[1]
    union = a_area + b_area - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) float32 of ``a`` (N, 4) and ``b`` (M, 4).

    A pair whose union is 0 (two empty boxes) has IoU 0, never NaN.
    """
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    return _iou(a.T[:, :, None], b.T[:, None, :], box_area(a)[:, None], box_area(b)[None, :])


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


def _ranked_boxes(
    xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray | None, agnostic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The visiting order of greedy NMS and the boxes in that order (shared by `nms`, `fast_nms`).

    Args:
        xyxy: float32 (N, 4) boxes in pixels; scores: (N,); class_id: int (N,) or None.

    Returns:
        ``order`` int64 (N,): indices by descending float32 score, ties in input order (stable);
        ``boxes`` float32 (N, 4) = ``xyxy[order]``, each class shifted by ``class_id × span``
        pixels on both axes, ``span = 2·max|coordinate| + 1``, unless ``agnostic`` or no ``class_id``.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    boxes = xyxy
    if class_id is not None and not agnostic:
        span = float(np.abs(xyxy).max()) * 2 + 1.0
        boxes = xyxy + (np.asarray(class_id, dtype=np.float32) * span)[:, None]
    return order, np.take(boxes, order, axis=0)


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_id: np.ndarray | None = None,
    agnostic: bool = False,
    max_det: int | None = None,
) -> np.ndarray:
    """Greedy non-max suppression; returns the kept indices (K,) int64, best score first.

    The reference implementation (`fast_nms` gives the same result, faster). Boxes are visited
    by descending score (equal scores in input order: a stable sort); a box is
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
    order, boxes = _ranked_boxes(xyxy, scores, class_id, agnostic)
    limit = n if max_det is None else max_det
    if n <= _MATRIX_MAX:
        keep_mask = _greedy_by_matrix(boxes, iou_threshold)
        if keep_mask is not None:
            return order[np.flatnonzero(keep_mask)[:limit]]
    areas = box_area(boxes)
    keep: list[int] = []
    remaining = np.arange(n)
    while remaining.size and len(keep) < limit:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        remaining = rest[_iou(boxes[i][:, None], boxes[rest].T, areas[i], areas[rest]) <= iou_threshold]
    return order[np.asarray(keep, dtype=np.int64)]


_DENSE_MAX = 64  # fast_nms: up to this many boxes the overlap test runs on the N×N matrix, above as a sweep
_PAIRS_MAX = 1 << 20  # fast_nms: more x-overlapping pairs than this (dense clutter) go to `nms`
_EDGE_PASSES = 4  # fast_nms: a longer suppression chain than this is settled by one Python pass over the edges…
_LOOP_EDGES = 1 << 16  # … when there are at most this many edges (else it goes to `nms`)


def fast_nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_id: np.ndarray | None = None,
    agnostic: bool = False,
    max_det: int | None = None,
) -> np.ndarray:
    """Greedy NMS with exactly the result of `nms` for every input (same arguments and
    semantics: stable descending score order, suppression when IoU > ``iou_threshold``,
    per-class by offsets), computed from the pairs of boxes that can overlap only.

    After the ordering and per-class shift of `nms` (`_ranked_boxes`), only the pairs whose
    intersection can be positive are scored: ``x1 < x2`` and ``y1 < y2`` across the pair both
    ways (N×N booleans, up to ``_DENSE_MAX`` boxes), or else the boxes whose x1 lies in
    ``[x1, x2)`` of another (a stable sort by x1 and ``np.searchsorted``). Any other pair has an
    intersection of 0 (float subtraction is monotonic: ``a <= b`` gives ``a - b <= 0``, or NaN),
    hence IoU 0, which never exceeds a threshold ≥ 0. The pairs' IoUs come from the same float32
    formula as in `nms` (`_iou`, bit for bit). Greedy NMS then runs on the suppression edges
    (`_greedy_by_edges`): the fixed point of `nms` over the edges, or one pass in rank order.

    Handed to `nms` itself: a negative or NaN threshold, over ``_PAIRS_MAX`` overlapping pairs,
    or a suppression chain longer than ``_EDGE_PASSES`` among over ``_LOOP_EDGES`` edges.

    Args:
        xyxy: float (N, 4) boxes in pixels.
        scores: float (N,) scores.
        iou_threshold: IoU above which the lower-scored box is removed, in [0, 1].
        class_id: int (N,) classes, or None (then NMS is class-agnostic).
        agnostic: ignore ``class_id``.
        max_det: keep at most this many boxes.

    Returns:
        The kept indices into ``xyxy``, int64 (K,), best score first (ties in input order).
    """
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    n = len(xyxy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if not iou_threshold >= 0:
        return nms(xyxy, scores, iou_threshold, class_id, agnostic, max_det)
    order, boxes = _ranked_boxes(xyxy, scores, class_id, agnostic)
    limit = n if max_det is None else max_det
    if n == 1:
        return order[:limit]
    keep = _greedy_by_pairs(boxes, iou_threshold)
    if keep is None:
        return nms(xyxy, scores, iou_threshold, class_id, agnostic, max_det)
    return order[np.flatnonzero(keep)[:limit]]


def _greedy_by_pairs(boxes: np.ndarray, iou_threshold: float) -> np.ndarray | None:
    """Greedy NMS of score-ranked boxes (N, 4), N ≥ 2, from the pairs that can overlap (see
    `fast_nms`): the keep mask (N,) bool, or None when there are over ``_PAIRS_MAX`` such pairs
    or the suppression does not settle (`_greedy_by_edges`)."""
    n = len(boxes)
    pairs = _overlapping_pairs_dense(boxes) if n <= _DENSE_MAX else _x_overlapping_pairs(boxes)
    if pairs is None:
        return None
    first, second = pairs
    if len(first):
        cm = np.empty((5, n), dtype=np.float32)  # coordinate-first: x1, y1, x2, y2, area
        cm[:4] = boxes.T
        cm[4] = box_area(boxes)
        a, b = np.take(cm, first, axis=1), np.take(cm, second, axis=1)
        hit = _iou(a[:4], b[:4], a[4], b[4]) > iou_threshold
        first, second = first[hit], second[hit]
    if not len(first):
        return np.ones(n, dtype=bool)
    return _greedy_by_edges(n, first, second)


def _overlapping_pairs_dense(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j`` (int64 arrays, sorted by i then j) of float32 boxes (N, 4)
    with ``x1 < x2`` and ``y1 < y2`` across the pair, both ways: the only pairs whose intersection
    can be positive. N×N boolean work: for small N."""
    x1, y1, x2, y2 = boxes.T
    meet = np.less(x1[:, None], x2[None, :])  # meet[i, j]: x1[i] < x2[j]
    meet &= np.less(x1[None, :], x2[:, None])  # and x1[j] < x2[i]
    meet &= np.less(y1[:, None], y2[None, :])
    meet &= np.less(y1[None, :], y2[:, None])
    meet &= _upper_mask(len(boxes))
    return np.nonzero(meet)


@lru_cache(maxsize=_DENSE_MAX + 1)
def _upper_mask(n: int) -> np.ndarray:
    """bool (n, n), True strictly above the diagonal (read-only, cached)."""
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    mask.flags.writeable = False
    return mask


def _x_overlapping_pairs(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Every pair of float32 boxes (N, 4) whose x-overlap ``min(x2) - max(x1)`` can be positive,
    as int64 index arrays ``(i, j)`` with ``i < j``; None when there are more than ``_PAIRS_MAX`` of
    them.

    Sorted by x1, box p can only meet the boxes q after it with ``x1[q] < x2[p]``: for a later box
    with ``x1[q] >= x2[p]``, ``min(x2[p], x2[q]) - x1[q] <= x2[p] - x1[q] <= 0`` (or NaN).
    """
    n = len(boxes)
    x1, x2 = boxes[:, 0], boxes[:, 2]
    by_x = np.argsort(x1, kind="stable")
    ar = np.arange(n + 1)
    count = np.searchsorted(x1[by_x], x2[by_x], side="left") - ar[1:]  # later boxes starting before x2
    np.maximum(count, 0, out=count)
    ends = np.cumsum(count)
    total = int(ends[-1])
    if total > _PAIRS_MAX:
        return None
    p = np.repeat(ar[:-1], count)
    q = np.arange(total) + np.repeat(ar[1:] - ends + count, count)  # p + 1, p + 2, … for each p
    a, b = by_x[p], by_x[q]
    return np.minimum(a, b), np.maximum(a, b)


def _greedy_by_edges(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray | None:
    """Greedy NMS on a suppression graph of ``n`` score-ranked boxes with edges ``first[k] →
    second[k]`` (``first < second``, IoU > threshold): the keep mask (n,) bool, or None when
    neither way below settles it.

    First the fixed point of `_greedy_by_matrix` over the edges, started from its first pass
    (kept: no edge points at the box), for ``_EDGE_PASSES`` passes: detector output settles in
    2 or 3. Should a long suppression chain remain and there be at most ``_LOOP_EDGES`` edges,
    one Python pass over the edges in rank order of ``first`` (a box's suppressors all rank
    before it, so it is settled when its own edges come up).
    """
    keep = np.ones(n, dtype=bool)
    keep[second] = False
    for _ in range(_EDGE_PASSES):
        new = np.ones(n, dtype=bool)
        new[second[keep[first]]] = False
        if np.array_equal(new, keep):
            return keep
        keep = new
    if len(first) > _LOOP_EDGES:
        return None
    by_first = np.argsort(first, kind="stable")
    suppressed = bytearray(n)
    for i, j in zip(first[by_first].tolist(), second[by_first].tolist()):
        if not suppressed[i]:
            suppressed[j] = 1
    return np.frombuffer(suppressed, dtype=np.uint8) == 0
