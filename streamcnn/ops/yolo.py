"""YOLO head decoders (vectorised numpy). Every decoder returns boxes in **network-input
pixels** as centre form ``cxcywh`` float32 (N, 4) plus ``obj`` (N,) and class scores (N, C),
all as probabilities in [0, 1]. `select` then scores, filters, maps to the frame and runs NMS.

Rules (σ = logistic sigmoid; ``g`` = cell index; ``s`` = stride in pixels; ``a`` = anchor in pixels):

* YOLOv5 anchor rule (Jocher, ultralytics/yolov5 ``models/yolo.py`` Detect):
  ``xy = (2σ(t) − 0.5 + g)·s``, ``wh = (2σ(t))²·a``.
* YOLOv3/v2 anchor rule (Redmon & Farhadi, YOLOv3 paper §2.1; YOLO9000 §2):
  ``xy = (σ(t) + g)·s``, ``wh = exp(t)·a``.
* YOLOX anchor-free rule (Ge et al. 2021, YOLOX demo ``postprocess``):
  ``xy = (t + g)·s``, ``wh = exp(t)·s``.
* YOLOv8/YOLO11 heads arrive decoded (``1×(4+C)×N`` cxcywh, class sigmoid inside, no objectness).
* YOLOv5 exports arrive decoded as ``N×(5+C)`` cxcywh, obj, classes.

``logits=True`` means the head emits raw logits (σ is applied here, exactly once);
``logits=False`` means the activations are already in the graph (the value is used as is, and
for anchor rules σ(t) is replaced by the value itself).

`head_fit` and `guess_formats` check a model's declared output shapes against each format of
`YOLO_FORMATS`, so a wrong format fails once at start-up rather than on every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .boxes import fast_nms
from .letterbox import LetterboxInfo


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function 1 / (1 + e^−x), float32, overflow-safe."""
    x = np.asarray(x, dtype=np.float32)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


@dataclass(frozen=True)
class Grid:
    """Per-row decode table for a concatenated multi-level head.

    Rows are ordered level by level (strides ascending as given), then anchor, then row-major
    cell (``gy``, ``gx``) — the order of YOLOv5's concatenated export (e.g. 25200 rows at 640:
    3·(80² + 40² + 20²)). Anchor-free heads have one "anchor" per cell.

    Attributes:
        gx, gy: float32 (N,) cell column and row.
        stride: float32 (N,) stride of the row's level, in input pixels.
        anchor_w, anchor_h: float32 (N,) anchor size in input pixels (1 for anchor-free).
    """

    gx: np.ndarray
    gy: np.ndarray
    stride: np.ndarray
    anchor_w: np.ndarray
    anchor_h: np.ndarray

    def __len__(self) -> int:
        return len(self.gx)


def make_grid(
    width: int, height: int, strides: list[int], anchors: list[list[list[float]]] | None = None,
    anchor_major: bool = True,
) -> Grid:
    """Build the `Grid` for a ``width×height`` input.

    Args:
        strides: one stride per level, e.g. [8, 16, 32].
        anchors: per level a list of (w, h) in input pixels, or None for anchor-free heads.
        anchor_major: rows run anchor → gy → gx (YOLOv5 export); False runs gy → gx → anchor.

    Raises:
        ValueError: when ``anchors`` does not have one list per stride.
    """
    if anchors is not None and len(anchors) != len(strides):
        raise ValueError(f"anchors has {len(anchors)} levels but strides has {len(strides)}")
    parts: list[tuple[np.ndarray, ...]] = []
    for li, s in enumerate(strides):
        gh, gw = int(np.ceil(height / s)), int(np.ceil(width / s))
        gy, gx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij")
        gx, gy = gx.ravel(), gy.ravel()
        level_anchors = np.asarray(anchors[li], np.float32) if anchors is not None else np.ones((1, 2), np.float32)
        na, nc = len(level_anchors), len(gx)
        if anchor_major:
            ax = np.repeat(level_anchors, nc, axis=0)
            gxx, gyy = np.tile(gx, na), np.tile(gy, na)
        else:
            ax = np.tile(level_anchors, (nc, 1))
            gxx, gyy = np.repeat(gx, na), np.repeat(gy, na)
        parts.append((gxx, gyy, np.full(len(gxx), s, np.float32), ax[:, 0], ax[:, 1]))
    cat = [np.concatenate([p[i] for p in parts]).astype(np.float32) for i in range(5)]
    return Grid(*cat)


def decode_anchor_grid(
    raw: np.ndarray, grid: Grid, rule: str = "v5", logits: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode an anchor-based raw head.

    Args:
        raw: float32 (N, 5+C): tx, ty, tw, th, objectness, class scores; rows as in ``grid``.
        rule: ``"v5"`` (YOLOv5) or ``"v3"`` (YOLOv2/v3), see the module docstring.
        logits: True when ``raw`` holds logits (σ applied here), False when already activated.
            Under the v3 rule with ``logits=False`` only xy/obj/classes are activated values; wh
            stays a log-space ``t`` (exp is never an activation inside YOLO graphs).

    Returns:
        cxcywh float32 (N, 4) in input pixels, obj (N,), class scores (N, C).

    Raises:
        ValueError: row count differs from the grid, or unknown rule.
    """
    if len(raw) != len(grid):
        raise ValueError(f"head has {len(raw)} rows but the grid for this input size has {len(grid)}")
    act = sigmoid if logits else (lambda v: np.asarray(v, np.float32))
    out = np.empty((len(raw), 4), np.float32)
    if rule == "v5":
        xy = act(raw[:, 0:4])
        out[:, 0] = (2.0 * xy[:, 0] - 0.5 + grid.gx) * grid.stride
        out[:, 1] = (2.0 * xy[:, 1] - 0.5 + grid.gy) * grid.stride
        out[:, 2] = (2.0 * xy[:, 2]) ** 2 * grid.anchor_w
        out[:, 3] = (2.0 * xy[:, 3]) ** 2 * grid.anchor_h
    elif rule == "v3":
        xy = act(raw[:, 0:2])
        out[:, 0] = (xy[:, 0] + grid.gx) * grid.stride
        out[:, 1] = (xy[:, 1] + grid.gy) * grid.stride
        out[:, 2] = np.exp(raw[:, 2]) * grid.anchor_w
        out[:, 3] = np.exp(raw[:, 3]) * grid.anchor_h
    else:
        raise ValueError(f"anchor rule must be 'v5' or 'v3', not {rule!r}")
    return out, act(raw[:, 4]), act(raw[:, 5:])


def decode_yolox(raw: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode a YOLOX raw head: float32 (N, 5+C) ``dx, dy, log w, log h, obj, classes`` with
    obj/classes already sigmoided in the graph. Returns cxcywh, obj, classes."""
    if len(raw) != len(grid):
        raise ValueError(f"head has {len(raw)} rows but the grid for this input size has {len(grid)}")
    out = np.empty((len(raw), 4), np.float32)
    out[:, 0] = (raw[:, 0] + grid.gx) * grid.stride
    out[:, 1] = (raw[:, 1] + grid.gy) * grid.stride
    out[:, 2] = np.exp(raw[:, 2]) * grid.stride
    out[:, 3] = np.exp(raw[:, 3]) * grid.stride
    return out, raw[:, 4], raw[:, 5:]


def decode_v8(raw: np.ndarray) -> tuple[np.ndarray, None, np.ndarray]:
    """YOLOv8/YOLO11 head ``(4+C, N)`` (batch axis removed): cxcywh rows 0..3 in input pixels,
    class probabilities after (no objectness). Returns cxcywh (N,4), None, (N,C)."""
    t = raw.T
    return np.ascontiguousarray(t[:, :4]), None, t[:, 4:]


def decode_v5(raw: np.ndarray, logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Already-decoded YOLOv5 export ``(N, 5+C)``: cxcywh in input pixels, obj, classes."""
    act = sigmoid if logits else (lambda v: v)
    return raw[:, :4], act(raw[:, 4]), act(raw[:, 5:])


def decode_fastestv2(
    raw: np.ndarray, grid: Grid, num_anchors: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yolo-FastestV2 head: one row per cell (levels in stride order, row-major),
    columns ``4·A`` box terms grouped per anchor, ``A`` objectness, then C class probabilities
    shared by the cell's anchors; sigmoid and softmax are inside the graph. Decoded with the
    YOLOv5 rule. ``grid`` must be built with ``anchor_major=False`` (cell → anchor order).

    Returns cxcywh (cells·A, 4), obj (cells·A,), class probabilities (cells·A, C).
    """
    cells = raw.shape[0]
    if cells * num_anchors != len(grid):
        raise ValueError(f"head has {cells} cells × {num_anchors} anchors but the grid has {len(grid)} rows")
    boxes = raw[:, : 4 * num_anchors].reshape(cells * num_anchors, 4)
    obj = raw[:, 4 * num_anchors: 5 * num_anchors].reshape(-1)
    cls = np.repeat(raw[:, 5 * num_anchors:], num_anchors, axis=0)
    cxcywh, _, _ = decode_anchor_grid(np.concatenate([boxes, obj[:, None]], axis=1), grid, "v5", logits=False)
    return cxcywh, obj, cls


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """Centre form (N, 4) → corners (N, 4) float32."""
    out = np.empty_like(b, dtype=np.float32)
    half_w, half_h = b[:, 2] * 0.5, b[:, 3] * 0.5
    out[:, 0] = b[:, 0] - half_w
    out[:, 1] = b[:, 1] - half_h
    out[:, 2] = b[:, 0] + half_w
    out[:, 3] = b[:, 1] + half_h
    return out


def select(
    cxcywh: np.ndarray,
    obj: np.ndarray | None,
    cls: np.ndarray,
    info: LetterboxInfo,
    conf: float = 0.25,
    iou: float = 0.45,
    agnostic: bool = False,
    classes: np.ndarray | None = None,
    max_det: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score, filter, map to frame pixels, clip and NMS.

    Score = obj × best class probability (or the best class probability when ``obj`` is None).
    Rows with score ≤ ``conf`` are dropped first (cheap: before any box math); boxes with no
    area after clipping to the frame are dropped; NMS is per class unless ``agnostic``
    (`fast_nms`: the same result as the reference `nms`).

    Args:
        cxcywh: float (N, 4) boxes, centre form, network-input pixels.
        obj: float (N,) objectness in [0, 1], or None (YOLOv8-style heads).
        cls: float (N, C) class probabilities (C may be 0: then every row is class 0, prob 1).
        info: the `LetterboxInfo` of the frame, to map boxes to frame pixels.
        conf: score threshold (kept when score > conf); iou: NMS IoU threshold (suppress when >).
        agnostic: NMS across classes; classes: int class ids to keep, or None for all.
        max_det: keep at most this many boxes.

    Returns:
        xyxy float32 (K, 4) frame pixels, conf float32 (K,), class_id int64 (K,), best first.
    """
    num_classes = cls.shape[1]
    if obj is not None:
        rows = np.flatnonzero(obj > conf)  # score = obj·p ≤ obj, so this never drops a row that could pass
        obj = obj[rows]
    elif num_classes:
        rows = np.flatnonzero(cls.max(axis=1) > conf)  # the best class alone must pass (NaN rows never do)
    else:
        rows = np.arange(len(cls))
    cls = cls[rows]
    if num_classes:
        class_id = cls.argmax(axis=1)
        best = cls[np.arange(len(rows)), class_id]
    else:
        class_id, best = np.zeros(len(rows), np.int64), np.ones(len(rows), np.float32)
    score = best * obj if obj is not None else best
    keep = score > conf
    if classes is not None:
        keep &= np.isin(class_id, classes)
    keep = np.flatnonzero(keep)
    xyxy = info.boxes_to_frame(cxcywh_to_xyxy(cxcywh[rows[keep]]))
    score, class_id = score[keep].astype(np.float32), class_id[keep].astype(np.int64)
    area_ok = np.flatnonzero((xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1]))
    if len(area_ok) < len(keep):
        xyxy, score, class_id = xyxy[area_ok], score[area_ok], class_id[area_ok]
    idx = fast_nms(xyxy, score, iou, class_id, agnostic=agnostic, max_det=max_det)
    return xyxy[idx], score[idx], class_id[idx]


# -- head shapes -------------------------------------------------------------------------------
# What each format's output looks like, so a wrong `format` or a non-YOLO model fails at start-up
# with one clear message instead of on every frame. Dynamic dims (None or a name) fit any size.

#: The head formats the decoders above know, in the order messages list them.
YOLO_FORMATS: tuple[str, ...] = ("yolox", "v8", "v5", "v5-raw", "v3", "fastestv2")


def _cells(w: int, h: int, strides: list[int]) -> int:
    """Grid cells over all levels for a ``w×h`` input."""
    return sum(math.ceil(h / s) * math.ceil(w / s) for s in strides)


def _eq(d: Any, v: int) -> bool:
    return not isinstance(d, int) or d == v


def _ge(d: Any, v: int) -> bool:
    return not isinstance(d, int) or d >= v


def _in(d: Any, values: set[int]) -> bool:
    return not isinstance(d, int) or d in values


def _row_counts(w: int, h: int, strides: list[int], per_cell: int = 1) -> set[int]:
    """Row counts a decoded head may have: for the strides in use and the standard P5/P6 sets."""
    return {per_cell * _cells(w, h, s) for s in (list(strides), [8, 16, 32], [8, 16, 32, 64])}


def _rows_cols(shape: tuple) -> tuple[Any, Any] | None:
    """(rows, cols) of a ``(1, rows, cols)`` or ``(rows, cols)`` output, else None."""
    if len(shape) == 2 or (len(shape) == 3 and _eq(shape[0], 1)):
        return shape[-2], shape[-1]
    return None


def head_fit(
    fmt: str, shapes: list[tuple], w: int, h: int, strides: list[int], per_cell: int | None = None,
) -> tuple[str | None, int | None]:
    """Check the declared output shapes of a model against head format ``fmt`` at a ``w×h`` input.

    Args:
        shapes: the model's output shapes in output order (ints, or None/str for dynamic dims).
        strides: the strides in use; per_cell: anchors per cell (None when not known).

    Returns:
        ``(None, C)`` when the shapes fit (C: the class count the shape implies, None when a
        dynamic dim hides it), or ``(expected, None)`` describing what ``fmt`` needs, e.g.
        ``"(1, 3549, 5+C)"``; an unknown ``fmt`` gives ``("one of the formats …", None)``.
        Never raises.
    """
    s0 = shapes[0] if shapes else ()
    rc = _rows_cols(s0)
    cells = _cells(w, h, strides)

    def classes(d: Any, extra: int) -> int | None:
        return d - extra if isinstance(d, int) else None

    if fmt == "yolox":
        if rc and _eq(rc[0], cells) and _ge(rc[1], 6):
            return None, classes(rc[1], 5)
        return f"(1, {cells}, 5+C)", None
    if fmt == "v8":
        ok = len(s0) == 3 and _eq(s0[0], 1) and _ge(s0[1], 5) and _in(s0[2], _row_counts(w, h, strides))
        if ok and not (isinstance(s0[1], int) and isinstance(s0[2], int) and s0[1] >= s0[2]):
            return None, classes(s0[1], 4)
        return f"(1, 4+C, {cells})", None
    if fmt == "v5":
        a = per_cell or 3
        if rc and _in(rc[0], _row_counts(w, h, strides, a)) and _ge(rc[1], 6):
            return None, classes(rc[1], 5)
        return f"(1, {a * cells}, 5+C)", None
    if fmt == "fastestv2":
        a = per_cell or 3
        if rc and _eq(rc[0], cells) and _ge(rc[1], 5 * a + 1):
            return None, classes(rc[1], 5 * a)
        return f"({cells}, 5·{a}+C)", None
    if fmt in ("v5-raw", "v3"):
        a = per_cell
        levels = [(math.ceil(h / s), math.ceil(w / s)) for s in strides]
        expected = (f"(1, {a * cells if a else f'A·{cells}'}, 5+C), or one output per stride {list(strides)}: "
                    + ", ".join(f"(1, {a or 'A'}·(5+C), {gh}, {gw})" for gh, gw in levels))
        if len(shapes) == 1 and rc is not None:
            rows_ok = _eq(rc[0], a * cells) if a else (not isinstance(rc[0], int) or rc[0] % cells == 0)
            return (None, classes(rc[1], 5)) if rows_ok and _ge(rc[1], 6) else (expected, None)
        if len(shapes) != len(strides):
            return expected, None
        ks: set[int] = set()
        for shape, (gh, gw) in zip(shapes, levels):
            if len(shape) == 4 and _eq(shape[0], 1) and _eq(shape[2], gh) and _eq(shape[3], gw):
                ch = shape[1]
                if isinstance(ch, int) and a:
                    if ch % a or ch // a < 6:
                        return expected, None
                    ks.add(ch // a)
                elif isinstance(ch, int) and ch < 6:
                    return expected, None
            elif len(shape) == 5 and _eq(shape[0], 1) and (not a or _eq(shape[1], a)) and _eq(shape[2], gh) \
                    and _eq(shape[3], gw) and _ge(shape[4], 6):
                if isinstance(shape[4], int):
                    ks.add(shape[4])
            else:
                return expected, None
        if len(ks) > 1:
            return expected, None
        return None, (ks.pop() - 5 if ks else None)
    return f"one of the formats {', '.join(YOLO_FORMATS)}", None


def guess_formats(shapes: list[tuple], w: int, h: int) -> list[str]:
    """Formats whose usual layout (standard strides, 3 anchors) the fully fixed ``shapes`` fit.

    Returns:
        Names from `YOLO_FORMATS` in a fixed order; ``[]`` when ``shapes`` is empty or has a
        dynamic dim (None or a name). Never raises.
    """
    if not shapes or not all(isinstance(d, int) for s in shapes for d in s):
        return []
    tries = [("v8", [8, 16, 32]), ("yolox", [8, 16, 32]), ("v5", [8, 16, 32]), ("fastestv2", [16, 32]),
             ("v3", [8, 16, 32]), ("v3", [16, 32])]
    found: list[str] = []
    for fmt, strides in tries:
        if head_fit(fmt, shapes, w, h, strides, 3)[0] is None:
            if fmt == "v3":  # same layouts
                found += [f for f in ("v3", "v5-raw") if f not in found]
            elif fmt not in found:
                found.append(fmt)
    if "v5" in found and "v5-raw" not in found:  # the decoded and the raw concatenated export look alike
        found.append("v5-raw")
    return found


__all__ = [
    "YOLO_FORMATS", "Grid", "cxcywh_to_xyxy", "decode_anchor_grid", "decode_fastestv2", "decode_v5", "decode_v8",
    "decode_yolox", "guess_formats", "head_fit", "make_grid", "select", "sigmoid",
]
