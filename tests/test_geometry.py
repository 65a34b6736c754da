"""streamcnn.ops.geometry: anchors, signed polygon distance (= cv2.pointPolygonTest), line sides."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamcnn.ops import ANCHORS, anchor_points, line_side, polygon_distance

BOX = np.array([[10, 20, 50, 100]], np.float32)  # x1, y1, x2, y2


@pytest.mark.parametrize(("anchor", "point"), [
    ("center", (30, 60)), ("bottom_center", (30, 100)), ("top_center", (30, 20)), ("bottom_left", (10, 100)),
    ("bottom_right", (50, 100)), ("top_left", (10, 20)), ("top_right", (50, 20)), ("center_left", (10, 60)),
    ("center_right", (50, 60)),
])
def test_anchor_points(anchor, point):
    out = anchor_points(np.repeat(BOX, 3, axis=0), anchor)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    assert (out == np.float32(point)).all()


def test_anchor_points_default_empty_and_unknown():
    assert anchor_points(BOX).tolist() == [[30, 100]]
    assert anchor_points(np.zeros((0, 4), np.float32)).shape == (0, 2)
    assert len(ANCHORS) == 9
    with pytest.raises(ValueError, match="unknown anchor 'feet': expected one of center, bottom_center"):
        anchor_points(BOX, "feet")


@pytest.mark.parametrize("polygon", [
    [[50, 50], [150, 50], [150, 150], [50, 150]],  # a square, clockwise on screen
    [[0, 0], [100, 0], [100, 100], [60, 100], [60, 30], [40, 30], [40, 100], [0, 100]][::-1],  # concave, reversed
    [[10, 10], [90, 20], [50, 95]],
])
def test_polygon_distance_matches_opencv(polygon):
    rng = np.random.default_rng(0)
    pts = rng.uniform(-20, 180, (400, 2))
    pts[:3] = np.asarray(polygon[:3], np.float64)  # vertices: distance 0
    pts[3] = (np.asarray(polygon[0]) + polygon[1]) / 2  # on an edge
    got = polygon_distance(pts, np.asarray(polygon))
    contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    want = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in pts])
    assert got.dtype == np.float64 and got.shape == (400,)
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_polygon_distance_sign_and_errors():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]])
    assert polygon_distance([[5, 5], [5, 1], [15, 5], [5, -3], [10, 5]], square).tolist() == [5, 1, -5, -3, 0]
    assert polygon_distance(np.zeros((0, 2)), square).shape == (0,)
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        polygon_distance([[0, 0]], square[:2])


def test_line_side_sign_is_the_right_hand_side_on_screen():
    # drawn left→right: below (larger y) is the right-hand side, +
    d, t = line_side([[50, 110], [50, 90], [-50, 103], [150, 100]], np.array([0, 100]), np.array([100, 100]))
    assert d.tolist() == [10, -10, 3, 0]
    assert t.tolist() == [0.5, 0.5, -0.5, 1.5]
    # drawn top→bottom: the right-hand side is to the left (smaller x)
    d, t = line_side([[40, 50], [60, 50]], [50, 0], [50, 100])
    assert d.tolist() == [10, -10] and t.tolist() == [0.5, 0.5]
    # a slanted line: the distance is perpendicular, in pixels
    d, _ = line_side([[0, 2]], [0, 0], [2, 2])
    assert d[0] == pytest.approx(np.sqrt(2))
    with pytest.raises(ValueError, match="two distinct points"):
        line_side([[0, 0]], [1, 1], [1, 1])
