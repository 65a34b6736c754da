"""Points, polygons and lines in frame pixels: what a zone-counting stage measures per detection.

All functions are vectorised numpy over N points. Coordinates are frame pixels, x right, y down
(the image convention), so "left" and "right" below are as seen on the screen.

* `anchor_points`: the point of each box that stands for the object (by default the middle of its
  bottom edge: where a person's feet touch the ground).
* `polygon_distance`: signed distance of points to a polygon's outline (+ inside, − outside),
  like ``cv2.pointPolygonTest(contour, pt, measureDist=True)`` but for N points at once.
* `line_side`: signed perpendicular distance of points to the line A→B (+ on its right-hand side
  on screen) and where along the segment each point projects.
"""

from __future__ import annotations

import numpy as np

#: The anchor names `anchor_points` knows, each the fractions (fx, fy) of the box's width and
#: height from its top-left corner (x1, y1).
ANCHORS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "bottom_center": (0.5, 1.0),
    "top_center": (0.5, 0.0),
    "bottom_left": (0.0, 1.0),
    "bottom_right": (1.0, 1.0),
    "top_left": (0.0, 0.0),
    "top_right": (1.0, 0.0),
    "center_left": (0.0, 0.5),
    "center_right": (1.0, 0.5),
}


def anchor_points(xyxy: np.ndarray, anchor: str = "bottom_center") -> np.ndarray:
    """One point per box: ``(x1 + fx·(x2 − x1), y1 + fy·(y2 − y1))`` with ``(fx, fy) = ANCHORS[anchor]``.

    Args:
        xyxy: float (N, 4) boxes ``x1, y1, x2, y2`` in frame pixels (x right, y down).
        anchor: one of `ANCHORS`: ``center``, ``bottom_center`` (default: the middle of the bottom
            edge), ``top_center``, ``bottom_left``, ``bottom_right``, ``top_left``, ``top_right``,
            ``center_left``, ``center_right`` ("bottom" is the larger y, "left" the smaller x).

    Returns:
        float32 (N, 2) points ``x, y`` in frame pixels.

    Raises:
        ValueError: ``anchor`` is not one of `ANCHORS` (the message lists them).
    """
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}: expected one of {', '.join(ANCHORS)}")
    fx, fy = ANCHORS[anchor]
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    out = np.empty((len(boxes), 2), np.float32)
    out[:, 0] = boxes[:, 0] + np.float32(fx) * (boxes[:, 2] - boxes[:, 0])
    out[:, 1] = boxes[:, 1] + np.float32(fy) * (boxes[:, 3] - boxes[:, 1])
    return out


def polygon_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Signed distance in pixels of each point to the outline of a polygon: + inside, − outside, 0 on it.

    The same value as ``cv2.pointPolygonTest(polygon, point, measureDist=True)`` (Euclidean distance
    to the nearest edge; inside by the even-odd rule, so a self-intersecting polygon's doubly
    covered parts count as outside), computed for all points at once in float64.

    Args:
        points: float (N, 2) points ``x, y`` in frame pixels.
        polygon: float or int (K, 2) vertices in frame pixels, K ≥ 3, in either winding order; the
            last vertex joins the first (do not repeat it).

    Returns:
        float64 (N,) signed distances in pixels.

    Raises:
        ValueError: ``polygon`` has fewer than 3 vertices.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(a) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(a)}")
    b = np.roll(a, -1, axis=0)
    v = b - a  # (K, 2) edge vectors
    w = p[:, None, :] - a[None, :, :]  # (N, K, 2) from each edge's start to each point
    vv = (v * v).sum(axis=1)  # (K,) squared edge lengths (0 for a repeated vertex)
    t = np.divide((w * v[None]).sum(axis=2), vv[None], out=np.zeros(w.shape[:2]), where=vv[None] > 0)
    np.clip(t, 0.0, 1.0, out=t)
    d = w - t[:, :, None] * v[None]
    dist = np.sqrt((d * d).sum(axis=2).min(axis=1))
    # even-odd rule: a ray from the point towards +x crosses the edges (a, b) that straddle its y
    py = p[:, 1:2]
    straddle = (a[None, :, 1] > py) != (b[None, :, 1] > py)  # (N, K); horizontal edges never straddle
    dy = np.where(v[:, 1] != 0, v[:, 1], 1.0)
    x_cross = a[None, :, 0] + (py - a[None, :, 1]) * (v[None, :, 0] / dy[None])
    inside = (straddle & (p[:, 0:1] < x_cross)).sum(axis=1) % 2 == 1
    return np.where(inside, dist, -dist)


def line_side(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which side of the line A→B each point is on, how far, and where it projects onto the segment.

    Sign convention (image y down): positive on the right-hand side of A→B as seen on the screen,
    i.e. the side a person walking from A to B on the screen has on their right. For a line drawn
    left→right (A left of B) the positive side is below it (larger y); for a line drawn top→bottom
    the positive side is to its left (smaller x). In formulas: ``d = ((B − A) × (P − A)) / |B − A|``
    with ``u × v = ux·vy − uy·vx``.

    Args:
        points: float (N, 2) points ``x, y`` in frame pixels.
        a, b: float (2,) the line's end points A and B in frame pixels (distinct).

    Returns:
        ``(distance, t)``: float64 (N,) signed perpendicular distance in pixels to the infinite line
        through A and B, and float64 (N,) the projection parameter ``t = (P − A)·(B − A) / |B − A|²``
        (0 at A, 1 at B: the point projects onto the segment when 0 ≤ t ≤ 1).

    Raises:
        ValueError: A and B are the same point.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(a, dtype=np.float64).reshape(2)
    b = np.asarray(b, dtype=np.float64).reshape(2)
    d = b - a
    length2 = float(d @ d)
    if length2 == 0.0:
        raise ValueError(f"a line needs two distinct points, got {a.tolist()} twice")
    w = p - a
    distance = (d[0] * w[:, 1] - d[1] * w[:, 0]) / np.sqrt(length2)
    t = (w @ d) / length2
    return distance, t


__all__ = ["ANCHORS", "anchor_points", "line_side", "polygon_distance"]
