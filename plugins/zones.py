"""Built-in stage ``zones``: counts tracked objects entering polygons and crossing lines.

Needs track ids, so a ``track`` stage (or another stage whose class sets ``fills_track_id``) must
come before it. Each tracked row (``track_id`` ≥ 0; −1 rows and frames without track ids are
ignored) is reduced to one anchor point of its box (`streamcnn.ops.anchor_points`, by default the
middle of its bottom edge), and each zone keeps a state per track id. YAML::

    stages:
      - yolo: {model: yolox_nano_coco_416, classes: [person]}
      - track: {classes: [person]}
      - zones:
          units: auto            # auto | pixels | fraction
          forget: 2.0            # seconds (pts) a track may go unseen before it is dropped
          zones:
            - name: door         # an area: `entered` / `left` events, tracks inside counted
              polygon: [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9], [0.1, 0.9]]
              classes: [person]  # default: every class
              anchor: bottom_center
              hysteresis: 4      # pixels
            - name: gate         # a counting line: `crossed` events with direction in / out
              line: [[0.0, 0.5], [1.0, 0.5]]

**Coordinates**: ``units: pixels`` are frame pixels; ``units: fraction`` are fractions 0–1 of the
frame's width (x) and height (y), converted at each frame's size, so one configuration fits every
resolution (x = 1 is the right edge, pixel column ``width``); ``units: auto`` (default) reads a
zone's points as fractions when every coordinate of that zone is within [0, 1], else as pixels.
``hysteresis`` is always in pixels.

**Lines**: the signed distance of the anchor to the infinite line A→B (`streamcnn.ops.line_side`) is
positive on the line's right-hand side as seen on the screen. **"in" is that right-hand side**: for a
line drawn left→right (``[[x1, y], [x2, y]]`` with x1 < x2), moving down the image is ``in`` and
moving up is ``out``; to swap them, swap the two points. Per (zone, track) a side is kept: it
changes only when the distance passes ``+hysteresis`` (to the right/in side) or ``−hysteresis`` (to
the left/out side); inside the band the previous side is kept. A track's first side (taken once it
is first outside the band) is not a crossing. A change of side is a ``crossed`` event (and counted)
only when the anchor projects onto the segment (0 ≤ t ≤ 1, `streamcnn.ops.line_side`) on that
frame; a track passing beside the segment changes side silently.

**Polygons**: per (zone, track) an inside state: a track enters when the anchor's signed distance
to the outline (`streamcnn.ops.polygon_distance`, + inside) is ≥ ``+hysteresis`` and leaves when it
is ≤ ``−hysteresis`` (with ``hysteresis: 0``: when it is < 0). A track first seen already inside
enters at that frame. (An anchor never gets ``hysteresis`` pixels deep into a polygon narrower than
twice that: keep the hysteresis small against the zone.)

**Forgetting**: a track not seen by a zone (no row with its id and one of the zone's classes) for
``forget`` seconds of pts or more leaves every polygon it was in (``left`` with ``lost: true``,
``reason: "lost"``), and its line sides are dropped (when it comes back it takes a first side
again). When the stream ends, the tracks still inside polygons leave (``lost: true``,
``reason: "end"``, at the last frame), so every ``entered`` has its ``left``.

**Events** (`streamcnn.Context.emit`; within a frame in zone order, then row order, then the zone's
forgotten tracks by id), each with ``zone`` (name), ``track_id`` (int), ``class_name``, ``xyxy``
(the box in frame pixels; for a forgotten track its last box) and ``counts`` (the zone's counts after
the event):

* ``crossed``: a line was crossed; ``direction``: ``"in"`` (left → right-hand side of A→B) or ``"out"``.
* ``entered``: a track entered a polygon.
* ``left``: a track left a polygon; ``dwell`` (s, pts now − pts when it entered), ``lost`` (bool: it
  was forgotten or the stream ended, not seen leaving) and ``reason`` (``"left"``, ``"lost"``, ``"end"``).

**Counts** per zone: ``inside`` (tracks in the polygon now; 0 for lines), ``in`` (entered / crossed
in, since the start), ``out`` (left / crossed out). `ZonesStage.counts` gives them; every frame
also gets each zone's pixel points and counts appended to ``frame.meta[streamcnn.ZONES]`` (for
``annotate``, which draws them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import ValidationInfo, field_validator, model_validator

from streamcnn import ZONES, Context, Field, Frame, NameWatch, Params, Stage, hookimpl, suggest
from streamcnn.ops import ANCHORS, anchor_points, line_side, polygon_distance

Anchor = Literal[tuple(ANCHORS)]  # type: ignore[valid-type]  # the names of streamcnn.ops.ANCHORS

CHAIN_MESSAGE = "zones needs track ids: put a `track` stage before it (e.g. `- track: {classes: [person]}`)"


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` for a message, YAML-like (``[[1, 2], [3, 4]]``, ``'text'``), cut to ``limit`` characters."""
    if isinstance(value, str):
        return repr(value)
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _zone_of(info: ValidationInfo) -> str:
    """``zone 'door'`` (or ``zone``) for messages of a zone's field validators."""
    name = info.data.get("name")
    return f"zone {name!r}" if isinstance(name, str) else "zone"


class ZoneSpec(Params):
    """One zone: a polygon (an area) or a line (2 points), in the stage's ``units``.

    The field validators give their own messages (the zones list is a list of mappings, which the
    generic YAML messages describe only as "a mapping").
    """

    name: str = Field(description="the zone's name, in events, counts and the annotate label (unique)")
    polygon: list[tuple[float, float]] | None = Field(
        None, description="an area: [[x, y], ...] at least 3 points (units: see `units`); the last joins the first")
    line: list[tuple[float, float]] | None = Field(
        None, description="a counting line: [[x1, y1], [x2, y2]]; 'in' is the right-hand side of 1→2 on screen")
    classes: list[str] | None = Field(None, description="class names counted (default: every class)")
    anchor: Anchor = Field("bottom_center", description="the point of each box that is tested "
                           f"({', '.join(ANCHORS)})")
    hysteresis: float = Field(4.0, ge=0, description="pixels the anchor must pass the outline/line by before the "
                              "state changes (against jitter)")

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected a zone: a mapping like {{name: door, polygon: [[x, y], ...]}} or "
                             f"{{name: gate, line: [[x1, y1], [x2, y2]]}}, got {_shown(data)}")
        options = list(cls.model_fields)
        name = data.get("name")
        zone = f"zone {name!r}" if isinstance(name, str) else "zone"
        for key in data:
            if key not in cls.model_fields:
                raise ValueError(f"unknown option {key!r} for {zone}{suggest(str(key), options)} "
                                 f"(options: {', '.join(options)})")
        if "name" not in data:
            raise ValueError("a zone needs a 'name' (e.g. name: door): events and counts are reported by it")
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a zone's name must be a non-empty string, got {_shown(value)}")
        return value

    @field_validator("polygon", "line", mode="before")
    @classmethod
    def _points(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        kind, zone = info.field_name, _zone_of(info)
        example = "[[x, y], ...]" if kind == "polygon" else "[[x1, y1], [x2, y2]]"
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(c) for c in p) for p in value):
            raise ValueError(f"{zone}: {kind} must be a list of [x, y] points (pairs of numbers) like {example}, "
                             f"got {_shown(value)}")
        pts = np.asarray(value, np.float64).reshape(-1, 2)
        if kind == "polygon":
            if len(pts) < 3:
                raise ValueError(f"{zone}: a polygon needs at least 3 points, got {len(pts)} (for a counting line "
                                 "use `line: [[x1, y1], [x2, y2]]`)")
            x, y = pts[:, 0], pts[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
            span = float(np.ptp(pts, axis=0).max())
            if area <= 1e-9 * span * span:
                d = pts[1:] - pts[0]
                collinear = np.abs(d[:, 0] * d[-1, 1] - d[:, 1] * d[-1, 0]).max() <= 1e-9 * span * span
                raise ValueError(f"{zone}: the polygon's points {_shown(value)} " + (
                    "lie on one line, so it encloses no area" if collinear else
                    "enclose no area: its edges cross each other; list the points in order around the area"))
        else:
            if len(pts) != 2:
                raise ValueError(f"{zone}: a line needs exactly 2 points [[x1, y1], [x2, y2]], got {len(pts)}"
                                 + (" (for an area use `polygon:`)" if len(pts) > 2 else ""))
            if (pts[0] == pts[1]).all():
                raise ValueError(f"{zone}: the line's 2 points are the same point {_shown(value[0])}; "
                                 "give two different points")
        return value

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value)):
            raise ValueError(f"{_zone_of(info)}: classes must be a list of class names like [person, car], "
                             f"got {_shown(value)}")
        return value

    @field_validator("anchor", mode="before")
    @classmethod
    def _anchor(cls, value: Any, info: ValidationInfo) -> Any:
        if not (isinstance(value, str) and value in ANCHORS):
            hint = suggest(value, ANCHORS) if isinstance(value, str) else ""
            raise ValueError(f"{_zone_of(info)}: unknown anchor {_shown(value)}{hint} "
                             f"(anchors: {', '.join(ANCHORS)})")
        return value

    @field_validator("hysteresis", mode="before")
    @classmethod
    def _hysteresis(cls, value: Any, info: ValidationInfo) -> Any:
        if not _is_number(value) or value < 0:
            raise ValueError(f"{_zone_of(info)}: hysteresis must be a number ≥ 0 (pixels), got {_shown(value)}")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> ZoneSpec:
        if self.polygon is not None and self.line is not None:
            raise ValueError(f"zone {self.name!r} has both a polygon and a line: give one of them (a zone is "
                             "either an area or a counting line)")
        if self.polygon is None and self.line is None:
            raise ValueError(f"zone {self.name!r} needs a polygon (`polygon: [[x, y], ...]`, at least 3 points) "
                             "or a line (`line: [[x1, y1], [x2, y2]]`)")
        return self

    @property
    def kind(self) -> Literal["polygon", "line"]:
        return "polygon" if self.polygon is not None else "line"

    @property
    def points(self) -> list[tuple[float, float]]:
        """The polygon's or the line's points as given (in the stage's units)."""
        return self.polygon if self.polygon is not None else self.line  # type: ignore[return-value]


@dataclass
class Zone:
    """One zone while the stage runs: its geometry, counts and per-track state.

    Attributes:
        spec: the zone's options.
        fraction: its points are fractions of the frame size (else pixels).
        counts: ``{"inside", "in", "out"}`` (see the module docstring).
        side: lines: track id → side, +1 right-hand ("in") side, −1 left-hand ("out") side.
        entered: polygons: track id → pts (s) when it entered (the tracks inside now).
        seen: track id → (pts of its last row, its class name, its box xyxy in pixels).
    """

    spec: ZoneSpec
    fraction: bool
    counts: dict[str, int] = field(default_factory=lambda: {"inside": 0, "in": 0, "out": 0})
    side: dict[int, int] = field(default_factory=dict)
    entered: dict[int, float] = field(default_factory=dict)
    seen: dict[int, tuple[float, str, list[float]]] = field(default_factory=dict)
    _size: tuple[int, int] | None = None
    _pixels: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def pixels(self, width: int, height: int) -> np.ndarray:
        """float64 (K, 2) the points in pixels of a ``width × height`` frame (cached per size)."""
        if self._size != (width, height) or self._pixels is None:
            pts = np.asarray(self.spec.points, np.float64).reshape(-1, 2)
            self._pixels = pts * np.array([width, height], np.float64) if self.fraction else pts
            self._size = (width, height)
        return self._pixels


def _all_fractions(points: list[tuple[float, float]]) -> bool:
    return all(0.0 <= c <= 1.0 for p in points for c in p)


class ZonesStage(Stage):
    """Count tracked objects in polygons and across lines; emits ``entered``, ``left``, ``crossed``.

    See the module docstring for the YAML, the coordinates, the hysteresis, which side of a line
    is "in", the events and their fields.

    Attributes:
        zones: the zones in YAML order (`Zone`: options, counts and per-track state).
    """

    stateless = False  # keeps per-track state: one frame at a time, in order

    class Params(Params):
        units: Literal["auto", "pixels", "fraction"] = Field(
            "auto", description="zone coordinates: pixels, fractions 0–1 of the frame width/height, or auto "
            "(fractions when all of a zone's coordinates are within [0, 1])")
        zones: list[ZoneSpec] = Field(description="the polygons and lines to count on, each with a unique name")
        forget: float = Field(2.0, gt=0, description="seconds (pts) a track may go unseen before it leaves the "
                              "polygons it is in and its line sides are dropped")

        @field_validator("zones")
        @classmethod
        def _zones(cls, zones: list[ZoneSpec], info: ValidationInfo) -> list[ZoneSpec]:
            if not zones:
                raise ValueError("give at least one zone (`- {name: door, polygon: [[x, y], ...]}` or "
                                 "`- {name: gate, line: [[x1, y1], [x2, y2]]}`)")
            first: dict[str, int] = {}
            for i, z in enumerate(zones):
                if z.name in first:
                    raise ValueError(f"two zones are named {z.name!r} (zones[{first[z.name]}] and zones[{i}]): "
                                     "zone names must differ (events and counts are reported by name)")
                first[z.name] = i
            if info.data.get("units") == "fraction":
                for z in zones:
                    bad = [i for i, p in enumerate(z.points) if not _all_fractions([p])]
                    if bad:
                        x, y = z.points[bad[0]]
                        raise ValueError(
                            f"zone {z.name!r}: with units: fraction every coordinate must be within 0–1 (fractions "
                            f"of the frame width and height), but point {bad[0] + 1} is [{x:g}, {y:g}]; use "
                            "units: pixels (or auto) for pixel coordinates")
            return zones

    params: Params

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.zones = [Zone(z, params.units == "fraction" or (params.units == "auto" and _all_fractions(z.points)))
                      for z in params.zones]
        self._classes = [None if z.classes is None else set(z.classes) for z in params.zones]
        self._last: Frame | None = None
        wanted = sorted({c for z in params.zones for c in (z.classes or ())}) or None
        self._names = NameWatch(f"stage '{ctx.name}': the zones' classes", wanted, ctx.log)
        self._size: tuple[int, int] | None = None

    @classmethod
    def check_chain(cls, params: Params, ctx: Context, before: list[tuple[str, type[Stage], Params]]) -> None:
        """A stage whose class sets ``fills_track_id = True`` (``track``) must come before."""
        if not any(getattr(stage_cls, "fills_track_id", False) for _, stage_cls, _ in before):
            raise ValueError(CHAIN_MESSAGE)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Zone name → a copy of its counts ``{"inside", "in", "out"}``, in zone order."""
        return {z.name: dict(z.counts) for z in self.zones}

    def process(self, frame: Frame) -> Frame:
        det = frame.detections
        pts = float(frame.pts)
        tids = det.track_id
        rows = np.zeros(0, np.intp) if tids is None or not len(det) else np.flatnonzero(tids >= 0)
        names = det.class_name if len(rows) else []
        self._names.see(det.class_name)
        if self._size != (frame.width, frame.height):
            self._size = (frame.width, frame.height)
            self._check_in_frame(frame.width, frame.height)
        meta = []
        for zone, classes in zip(self.zones, self._classes):
            pixels = zone.pixels(frame.width, frame.height)
            sel = rows if classes is None else rows[[names[r] in classes for r in rows]]
            if len(sel):
                self._update(zone, frame, pixels, sel, tids, names)
            self._forget(zone, frame, pts)
            meta.append({"name": zone.name, "kind": zone.spec.kind, "points": np.round(pixels).astype(np.int32),
                         "counts": dict(zone.counts)})
        frame.meta.setdefault(ZONES, []).extend(meta)
        self._last = frame
        return frame

    def _update(self, zone: Zone, frame: Frame, pixels: np.ndarray, sel: np.ndarray, tids: np.ndarray,
                names: list[str]) -> None:
        """Move the state of the tracks of rows ``sel`` of ``frame`` in ``zone``; emit their events."""
        spec, pts = zone.spec, float(frame.pts)
        boxes = frame.detections.xyxy[sel]
        anchors = anchor_points(boxes, spec.anchor)
        h = spec.hysteresis
        if spec.kind == "line":
            dist, t = line_side(anchors, pixels[0], pixels[1])
        else:
            dist, t = polygon_distance(anchors, pixels), None
        for j, r in enumerate(sel):
            track, name = int(tids[r]), names[r]
            box = [round(float(v), 2) for v in boxes[j]]
            zone.seen[track] = (pts, name, box)
            d = float(dist[j])
            if t is not None:  # a line
                prev = zone.side.get(track)
                new = 1 if d > h else -1 if d < -h else prev
                if new is None or new == prev:
                    continue
                zone.side[track] = new
                if prev is not None and 0.0 <= float(t[j]) <= 1.0:
                    direction = "in" if new > 0 else "out"
                    zone.counts[direction] += 1
                    self._emit("crossed", frame, zone, track, name, box, direction=direction)
            elif track not in zone.entered:
                if d >= h:
                    zone.entered[track] = pts
                    zone.counts["inside"] += 1
                    zone.counts["in"] += 1
                    self._emit("entered", frame, zone, track, name, box)
            elif (d <= -h) if h > 0 else (d < 0):
                self._leave(zone, frame, track, name, box, "left")

    def _leave(self, zone: Zone, frame: Frame, track: int, name: str, box: list[float], reason: str) -> None:
        """``track`` leaves polygon ``zone`` at ``frame``: counts and the ``left`` event."""
        dwell = round(float(frame.pts) - zone.entered.pop(track), 6)
        zone.counts["inside"] -= 1
        zone.counts["out"] += 1
        self._emit("left", frame, zone, track, name, box, dwell=dwell, lost=reason != "left", reason=reason)

    def _forget(self, zone: Zone, frame: Frame, pts: float) -> None:
        """Drop the tracks ``zone`` has not seen for ``forget`` s or more (leaving its polygon, if inside)."""
        gone = sorted(track for track, (seen, _, _) in zone.seen.items() if pts - seen >= self.params.forget)
        for track in gone:
            _, name, box = zone.seen.pop(track)
            zone.side.pop(track, None)
            if track in zone.entered:
                self._leave(zone, frame, track, name, box, "lost")

    def _emit(self, type_: str, frame: Frame, zone: Zone, track: int, name: str, box: list[float],
              **extra: Any) -> None:
        self.ctx.emit(type_, frame, zone=zone.name, track_id=track, class_name=name, xyxy=box, **extra,
                      counts=dict(zone.counts))

    def _check_in_frame(self, width: int, height: int) -> None:
        """One warning per zone that lies wholly outside a ``width×height`` frame (it can count nothing)."""
        for zone in self.zones:
            px = zone.pixels(width, height)
            lo, hi = px.min(axis=0), px.max(axis=0)
            if hi[0] < 0 or hi[1] < 0 or lo[0] > width or lo[1] > height:
                self.ctx.log.warning(
                    "stage '%s': zone %r lies outside the %dx%d frame (x %g to %g, y %g to %g pixels): it will count "
                    "nothing; check its coordinates and units", self.ctx.name, zone.name, width, height,
                    round(float(lo[0]), 1), round(float(hi[0]), 1), round(float(lo[1]), 1), round(float(hi[1]), 1))

    def finish(self) -> None:
        """The stream ended: every track still inside a polygon leaves (``lost: true``, ``reason: "end"``)
        at the last frame."""
        self._names.done()
        if self._last is None:
            return
        for zone in self.zones:
            for track in sorted(zone.entered):
                _, name, box = zone.seen[track]
                self._leave(zone, self._last, track, name, box, "end")
            zone.side.clear()
            zone.seen.clear()


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"zones": ZonesStage}
