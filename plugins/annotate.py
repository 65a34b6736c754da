"""Built-in stage ``annotate``: draws ``frame.detections`` onto ``frame.image`` for video sinks.

Boxes in a colour per class name (so a YOLO stage's persons and a face detector's faces on the
same frame differ), a label ``name conf`` (or ``identity similarity`` on rows a recogniser set an
identity on; ``#track_id`` in front on tracked rows) on a filled background so it stays readable,
and landmarks as dots (rows with empty, NaN landmarks get none). All boxes are drawn before any
label, labels in increasing confidence (the best one ends on top where labels overlap), each moved
inside the image rather than cut at its edge.

Zones (``frame.meta[streamcnn.ZONES]``, from a ``zones`` stage; option ``zones``) are drawn first,
under the boxes, each in a colour of its own: a polygon's outline, or a line with an arrow from its
middle towards its "in" side (the right-hand side of A→B on screen), and a label ``name in N out M``
(``name inside K in N out M`` for a polygon) at the zone's top-left corner.
"""

from __future__ import annotations

import functools
import zlib

import cv2
import numpy as np

from streamcnn import ZONES, Detections, Field, Frame, Params, Stage, hookimpl


@functools.lru_cache(maxsize=1024)
def class_color(key: int | str) -> tuple[int, int, int]:
    """A stable, saturated BGR colour (uint8 values, one channel 255) for a class id (golden-ratio
    hue steps) or a class name (hue from its CRC-32, the same in every run; annotate uses names)."""
    if isinstance(key, str):
        hue = zlib.crc32(key.encode("utf-8")) % 180
    else:
        hue = int((key * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


class AnnotateStage(Stage):
    """Draw boxes, labels, landmarks and identities (in place on ``frame.image``)."""

    stateless = True  # draws on the frame it is given only

    class Params(Params):
        thickness: int = Field(2, ge=1, description="box line width in pixels")
        font_scale: float = Field(0.5, gt=0)
        labels: bool = True
        landmarks: bool = True
        min_conf: float = Field(0.0, ge=0, le=1, description="draw only detections above this score")
        zones: bool = Field(True, description="draw the zones and counting lines of a zones stage, with their counts")

    def process(self, frame: Frame) -> Frame:
        det = frame.detections
        p = self.params
        zones = frame.meta.get(ZONES) if p.zones else None
        if not len(det) and not zones:
            return frame
        img = frame.image
        if not img.flags.writeable:
            img = frame.image = img.copy()
        if zones:
            draw_zones(img, zones, p.thickness, p.font_scale, labels=False)
        if len(det):
            self._draw_detections(img, det)
        if zones and p.labels:  # on top of the boxes and their labels: the counts stay readable
            draw_zone_labels(img, zones, p.font_scale)
        return frame

    def _draw_detections(self, img: np.ndarray, det: Detections) -> None:
        """Boxes and landmarks, then the labels (in increasing confidence)."""
        p = self.params
        if p.min_conf > 0:
            det = det[det.conf > p.min_conf]
        names = det.class_name
        colors = [class_color(n) for n in names]
        # points to draw: finite ones only (rows from a stage without landmarks are NaN after a merge)
        points = None if not p.landmarks or det.landmarks is None else np.isfinite(det.landmarks).all(axis=2)
        for i in range(len(det)):  # boxes and landmarks first, so no box line crosses a label
            x1, y1, x2, y2 = (int(round(v)) for v in det.xyxy[i])
            cv2.rectangle(img, (x1, y1), (x2, y2), colors[i], p.thickness, cv2.LINE_AA)
            if points is not None:
                for x, y in det.landmarks[i][points[i]]:
                    cv2.circle(img, (int(round(x)), int(round(y))), max(1, p.thickness), colors[i], -1, cv2.LINE_AA)
        if not p.labels:
            return
        # labels last, in increasing confidence: where labels overlap, the most confident is on top
        for i in np.argsort(det.conf, kind="stable"):
            if det.identity is not None and det.identity[i] is not None:
                score = None if det.similarity is None or np.isnan(det.similarity[i]) else float(det.similarity[i])
                # "unknown 0.00" (an empty database) would read as a real score: show it only when there is one
                show = score is not None and (score > 0 or det.identity[i] != "unknown")
                sim = f" {score:.2f}" if show else ""
                text = f"{det.identity[i]}{sim}"
            else:
                text = f"{names[i]} {det.conf[i]:.2f}"
            if det.track_id is not None and det.track_id[i] >= 0:
                text = f"#{det.track_id[i]} {text}"
            x1, y1 = (int(round(v)) for v in det.xyxy[i, :2])
            draw_label(img, text, x1, y1, colors[i], p.font_scale)


def zone_color(name: str) -> tuple[int, int, int]:
    """The BGR colour of the zone ``name`` (`class_color` of ``"zone " + name``, so a zone named
    like a class does not take that class's colour)."""
    return class_color(f"zone {name}")


def draw_zones(img: np.ndarray, zones: list[dict], thickness: int = 2, font_scale: float = 0.5,
               labels: bool = True) -> None:
    """Draw the zones of ``frame.meta[ZONES]`` (see `streamcnn.ZONES`) on ``img`` in place.

    A polygon: its closed outline. A line: the segment A→B and an arrow from its middle towards
    its "in" side (the right-hand side of A→B on screen, image y down), 1/4 of its length (12 to
    40 pixels) long. With ``labels``: ``name in N out M`` (a polygon: ``name inside K in N out M``)
    by `draw_label` at the top-left corner of the zone's points.

    Args:
        img: uint8 (H, W, 3) BGR image, drawn on in place.
        zones: dicts ``{"name", "kind", "points": int (K, 2) pixels, "counts": {"inside", "in", "out"}}``.
        thickness: line width in pixels; font_scale: the label's OpenCV font scale.
    """
    for zone in zones:
        pts = np.asarray(zone["points"], np.int32).reshape(-1, 2)
        if not len(pts):
            continue
        color = zone_color(str(zone["name"]))
        if zone.get("kind") == "line" and len(pts) >= 2:
            a, b = pts[0].astype(np.float64), pts[1].astype(np.float64)
            ends = tuple(int(v) for v in pts[0]), tuple(int(v) for v in pts[1])
            cv2.line(img, *ends, (0, 0, 0), thickness + 2, cv2.LINE_AA)  # a dark rim: apart from box edges
            cv2.line(img, *ends, color, thickness, cv2.LINE_AA)
            d = b - a
            length = float(np.hypot(*d))
            if length > 0:
                normal = np.array([-d[1], d[0]]) / length  # the right-hand side of A→B on screen (y down)
                mid = (a + b) / 2
                tip = mid + normal * min(40.0, max(12.0, length / 4))
                cv2.arrowedLine(img, (int(round(mid[0])), int(round(mid[1]))), (int(round(tip[0])), int(round(tip[1]))),
                                color, thickness, cv2.LINE_AA, tipLength=0.35)
        else:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], True, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], True, color, thickness, cv2.LINE_AA)
    if labels:
        draw_zone_labels(img, zones, font_scale)


def draw_zone_labels(img: np.ndarray, zones: list[dict], font_scale: float = 0.5) -> None:
    """The label of each zone (``name in N out M``; a polygon: ``name inside K in N out M``) at the
    top-left corner of its points, by `draw_label` (``annotate`` draws them last, over the boxes)."""
    for zone in zones:
        pts = np.asarray(zone["points"], np.int32).reshape(-1, 2)
        if not len(pts):
            continue
        counts = zone.get("counts") or {}
        inside = f" inside {counts.get('inside', 0)}" if zone.get("kind") != "line" else ""
        text = f"{zone['name']}{inside} in {counts.get('in', 0)} out {counts.get('out', 0)}"
        draw_label(img, text, int(pts[:, 0].min()), int(pts[:, 1].min()), zone_color(str(zone["name"])), font_scale)


def label_box(text: str, x1: int, y1: int, width: int, height: int, font_scale: float = 0.5,
              ) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Where the label of a box with top-left corner (``x1``, ``y1``) goes in a ``width×height`` image.

    Above the box when there is room, else just inside its top edge; then moved (never cut) to lie
    inside the image (unless the label is larger than the image).

    Returns:
        ``(lx1, ly1, lx2, ly2)`` the filled background, inclusive pixel corners, and the text origin.
    """
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    lw, lh = tw + 5, th + base + 3
    ly = y1 - lh if y1 - lh >= 0 else y1
    lx = max(0, min(x1, width - lw))
    ly = max(0, min(ly, height - lh))
    return (lx, ly, lx + lw - 1, ly + lh - 1), (lx + 2, ly + th + 2)


def draw_label(img: np.ndarray, text: str, x1: int, y1: int, color: tuple[int, int, int],
               font_scale: float = 0.5) -> tuple[int, int, int, int]:
    """Draw ``text`` in black on a filled ``color`` box placed by `label_box`; returns the box."""
    box, org = label_box(text, x1, y1, img.shape[1], img.shape[0], font_scale)
    cv2.rectangle(img, box[:2], box[2:], color, -1)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return box


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"annotate": AnnotateStage}
