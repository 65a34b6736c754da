"""zones: line crossings and polygon enter/leave of synthetic tracks whose events are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamcnn import ZONES, Context, Detections, Frame
from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.errors import ConfigError
from streamcnn.events import EventQueue
from streamcnn_plugins.annotate import AnnotateStage, class_color, label_box, zone_color
from streamcnn_plugins.zones import CHAIN_MESSAGE, ZonesStage

from .conftest import run_cli, write

NAMES = ["person", "car"]
FPS = 25.0


def box(x: float, y: float, w: float = 20, h: float = 40) -> list[float]:
    """A box whose bottom-centre anchor is (x, y)."""
    return [x - w / 2, y - h, x + w / 2, y]


def detections(rows: list[tuple[int, list[float], str]]) -> Detections:
    """Rows ``(track_id, xyxy, class_name)``."""
    if not rows:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0), NAMES, track_id=np.zeros(0, np.int64))
    return Detections(np.array([r[1] for r in rows], np.float32), np.full(len(rows), 0.9),
                      np.array([NAMES.index(r[2]) for r in rows]), NAMES,
                      track_id=np.array([r[0] for r in rows], np.int64))


class Driver:
    """A zones stage fed frames by hand; collects the events it emits."""

    def __init__(self, zones: list[dict], size: tuple[int, int] = (200, 200), **options) -> None:
        self.queue = EventQueue()
        self.stage = ZonesStage(ZonesStage.Params(zones=zones, **options),
                                Context("zones", "t", source="synthetic", events=self.queue))
        self.size = size
        self.index = 0
        self.events: list = []

    def step(self, rows: list[tuple[int, list[float], str]], pts: float | None = None) -> Frame:
        w, h = self.size
        pts = self.index / FPS if pts is None else pts
        frame = Frame(np.zeros((h, w, 3), np.uint8), self.index, pts, source="synthetic",
                      capture_time=1000.0 + pts, detections=detections(rows))
        out = self.stage.process(frame)
        self.events += self.queue.take()
        self.index += 1
        return out

    def finish(self) -> None:
        self.stage.finish()
        self.events += self.queue.take()

    def summary(self) -> list[tuple]:
        return [(e.frame_index, e.type, e.get("zone"), e.get("track_id"), e.get("direction")) for e in self.events]


LINE = {"name": "gate", "line": [[0, 100], [200, 100]]}  # drawn left→right: "in" is down the image
BOTTOMS = [80 + 5 * i for i in range(10)]  # a box's bottom edge moving down across y = 100


def first_past(values: list[float], threshold: float) -> int:
    return next(i for i, v in enumerate(values) if v > threshold)


def test_crossing_down_is_one_in_at_the_frame_past_the_hysteresis():
    d = Driver([LINE])
    for y in BOTTOMS:
        d.step([(7, box(100, y), "person")])
    expected = first_past([y - 100 for y in BOTTOMS], 4)  # signed distance passes +hysteresis (4 px)
    assert expected == 5
    assert d.summary() == [(expected, "crossed", "gate", 7, "in")]
    ev = d.events[0]
    assert ev.get("class_name") == "person" and ev.get("xyxy") == box(100, BOTTOMS[expected])
    assert ev.get("counts") == {"inside": 0, "in": 1, "out": 0}
    # the envelope: this pipeline, the frame's index, pts, source and capture time
    assert (ev.pipeline, ev.source, ev.frame_index) == ("t", "synthetic", expected)
    assert ev.pts == expected / FPS and ev.epoch == 1000.0 + expected / FPS
    assert d.stage.counts == {"gate": {"inside": 0, "in": 1, "out": 0}}
    # back up again: one "out", where the distance passes −hysteresis
    for y in BOTTOMS[::-1]:
        d.step([(7, box(100, y), "person")])
    back = first_past([100 - y for y in BOTTOMS[::-1]], 4)
    assert d.summary()[1:] == [(10 + back, "crossed", "gate", 7, "out")]
    assert d.events[1].get("counts") == {"inside": 0, "in": 1, "out": 1}


def test_jitter_within_the_hysteresis_band_is_no_crossing():
    d = Driver([LINE])
    d.step([(1, box(100, 90), "person")])  # takes its side: above, 10 px out
    for y in [97, 103, 98, 104, 96, 102, 100, 104]:  # within ±4 px of the line
        d.step([(1, box(100, y), "person")])
    assert d.events == []
    d.step([(1, box(100, 104.5), "person")])
    assert d.summary() == [(9, "crossed", "gate", 1, "in")]


def test_a_first_side_and_jitter_without_one_are_no_crossing():
    d = Driver([LINE])
    for y in [101, 99, 103, 110, 120]:  # in the band at first, then down: its first side, not a crossing
        d.step([(1, box(100, y), "person")])
    assert d.events == []


def test_crossing_beside_the_segment_is_not_counted_but_moves_the_side():
    d = Driver([{"name": "short", "line": [[0, 100], [100, 100]]}])
    for y in BOTTOMS:  # x = 150 projects at t = 1.5: beside the segment
        d.step([(3, box(150, y), "person")])
    assert d.events == [] and d.stage.counts["short"] == {"inside": 0, "in": 0, "out": 0}
    # it walks round below the segment and back up across it: an "out"
    for y in BOTTOMS[::-1]:
        d.step([(3, box(50, y), "person")])
    assert [e[1:] for e in d.summary()] == [("crossed", "short", 3, "out")]


def test_two_tracks_in_row_order_and_classes():
    d = Driver([LINE, {"name": "cars", "line": [[0, 100], [200, 100]], "classes": ["car"]}])
    for y in BOTTOMS:
        d.step([(2, box(60, 200 - y), "person"), (1, box(140, y), "person"), (5, box(100, y), "car"),
                (-1, box(20, y), "person")])  # −1: an unconfirmed track, ignored
    down = first_past([y - 100 for y in BOTTOMS], 4)
    up = first_past([100 - (200 - y) for y in BOTTOMS], 4)
    assert down == up == 5
    # one frame: zone order, then row order
    assert d.summary() == [(5, "crossed", "gate", 2, "out"), (5, "crossed", "gate", 1, "in"),
                           (5, "crossed", "gate", 5, "in"), (5, "crossed", "cars", 5, "in")]
    assert [e.get("counts") for e in d.events] == [
        {"inside": 0, "in": 0, "out": 1}, {"inside": 0, "in": 1, "out": 1}, {"inside": 0, "in": 2, "out": 1},
        {"inside": 0, "in": 1, "out": 0}]


def test_frames_without_track_ids_are_ignored():
    d = Driver([LINE])
    for y in BOTTOMS:
        frame = Frame(np.zeros((200, 200, 3), np.uint8), d.index, d.index / FPS,
                      detections=Detections(np.array([box(100, y)], np.float32), [0.9], [0], NAMES))
        d.stage.process(frame)
        d.index += 1
    assert d.queue.take() == []


SQUARE = {"name": "room", "polygon": [[50, 50], [150, 50], [150, 150], [50, 150]]}


def test_polygon_enter_and_leave_with_dwell_from_pts():
    d = Driver([SQUARE])
    xs = list(range(30, 180, 10))
    pts = [0.0, 0.1, 0.25, 0.4, 0.7, 0.8, 1.0, 1.3, 1.35, 1.5, 1.9, 2.0, 2.05, 2.5, 3.0]
    inside = [min(x - 50, 150 - x) for x in xs]  # signed distance to the outline at y = 100
    for x, t in zip(xs, pts):
        frame = d.step([(4, box(x, 100), "person")], pts=t)
    enter = next(i for i, v in enumerate(inside) if v >= 4)
    leave = next(i for i, v in enumerate(inside) if i > enter and v <= -4)
    assert (enter, leave) == (3, 13)
    assert d.summary() == [(enter, "entered", "room", 4, None), (leave, "left", "room", 4, None)]
    entered, left = d.events
    assert entered.get("counts") == {"inside": 1, "in": 1, "out": 0}
    assert entered.get("xyxy") == box(xs[enter], 100)
    assert left.get("dwell") == round(pts[leave] - pts[enter], 6) == 2.1
    assert left.get("lost") is False and left.get("reason") == "left"
    assert left.get("counts") == {"inside": 0, "in": 1, "out": 1}
    # what annotate draws
    (meta,) = frame.meta[ZONES]
    assert meta["name"] == "room" and meta["kind"] == "polygon" and meta["counts"] == {"inside": 0, "in": 1, "out": 1}
    assert meta["points"].dtype == np.int32 and meta["points"].tolist() == SQUARE["polygon"]


def test_counts_while_inside_and_meta_appended_to_earlier_zones_stage():
    d = Driver([SQUARE, LINE])
    frame = Frame(np.zeros((200, 200, 3), np.uint8), 0, 0.0, detections=detections([(1, box(100, 80), "person")]))
    frame.meta[ZONES] = [{"name": "other", "kind": "line", "points": np.zeros((2, 2), np.int32), "counts": {}}]
    d.stage.process(frame)
    assert [z["name"] for z in frame.meta[ZONES]] == ["other", "room", "gate"]
    assert frame.meta[ZONES][1]["counts"] == {"inside": 1, "in": 1, "out": 0}
    assert frame.meta[ZONES][2]["points"].tolist() == [[0, 100], [200, 100]]


def test_forget_leaves_the_polygon_lost_and_drops_the_line_side():
    d = Driver([SQUARE, LINE], forget=1.0)
    d.step([(9, box(100, 90), "person")], pts=0.0)  # inside the room, above the line
    d.step([(9, box(100, 92), "person")], pts=0.5)
    for t in (0.9, 1.2, 1.5, 1.6):
        d.step([], pts=t)
    # not seen since pts 0.5: at pts 1.5 (≥ 1.0 s later) it leaves the room, lost
    assert d.summary() == [(0, "entered", "room", 9, None), (4, "left", "room", 9, None)]
    left = d.events[1]
    assert left.get("lost") is True and left.get("reason") == "lost" and left.get("dwell") == 1.5
    assert left.get("xyxy") == box(100, 92) and left.get("counts") == {"inside": 0, "in": 1, "out": 1}
    # back below the line: a new first side, not a crossing; inside the room again: entered
    d.step([(9, box(100, 120), "person")], pts=1.7)
    assert d.summary()[2:] == [(6, "entered", "room", 9, None)]
    d.finish()  # the stream ends with it inside: it leaves, reason "end", at the last frame
    assert d.summary()[3:] == [(6, "left", "room", 9, None)]
    assert d.events[3].get("reason") == "end" and d.events[3].get("lost") is True and d.events[3].get("dwell") == 0


def _run_scaled(zones: list[dict], size: tuple[int, int], **options) -> list[tuple]:
    """The events of two tracks moving in fractions of the frame (crossing the middle, entering the centre)."""
    w, h = size
    d = Driver(zones, size=size, **options)
    for i in range(20):
        fy = 0.3 + 0.02 * i  # the first track's bottom moves down from 0.3 to 0.68 of the height
        fx = 0.1 + 0.04 * i  # the second moves right along y = 0.5 + 0.05
        d.step([(1, box(0.5 * w, fy * h, 0.05 * w, 0.1 * h), "person"),
                (2, box(fx * w, 0.55 * h, 0.05 * w, 0.1 * h), "person")])
    return [(*s, e.get("counts"), e.get("dwell")) for s, e in zip(d.summary(), d.events)]


@pytest.mark.parametrize("size", [(320, 240), (1280, 720)])
def test_fraction_units_give_the_events_of_the_pixel_config(size):
    w, h = size
    fractions = [{"name": "mid", "line": [[0, 0.5], [1, 0.5]]},
                 {"name": "centre", "polygon": [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]}]
    pixels = [{"name": "mid", "line": [[0, h / 2], [w, h / 2]]},
              {"name": "centre", "polygon": [[w / 4, h / 4], [3 * w / 4, h / 4], [3 * w / 4, 3 * h / 4],
                                             [w / 4, 3 * h / 4]]}]
    want = _run_scaled(pixels, size, units="pixels")
    assert {e[1] for e in want} == {"crossed", "entered", "left"}
    assert _run_scaled(fractions, size, units="fraction") == want
    assert _run_scaled(fractions, size) == want  # auto: all coordinates within [0, 1]


# --- through a real pipeline run -------------------------------------------------------------------

FAKE_TRACKS = '''
import numpy as np
import streamcnn


class FakeTracks(streamcnn.Stage):
    """Track 1 walks down the frame's middle column, 2 px per frame; track 2 stays at the top."""

    fills_track_id = True

    def process(self, frame):
        y = 4 + 2 * frame.index
        xyxy = np.array([[28, y - 8, 36, y], [2, 2, 8, 8]], np.float32)
        frame.add_detections(streamcnn.Detections(xyxy, [0.9, 0.8], [0, 0], ["person"], track_id=[1, 2]),
                             self.ctx.name)
        return frame


class NoTracks(streamcnn.Stage):
    def process(self, frame):
        return frame


@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"fake_tracks": FakeTracks, "no_tracks": NoTracks}
'''


def test_pipeline_run_writes_crossing_events_to_jsonl(tmp_path):
    write(tmp_path / "fake.py", FAKE_TRACKS)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./fake.py]
        pipelines:
          hall:
            source: {uri: pattern, size: 64x48, frames: 20, fps: 10}
            stages:
              - fake_tracks
              - zones:
                  zones:
                    - {name: mid, line: [[0, 0.5], [1, 0.5]], hysteresis: 3}
                    - {name: top, polygon: [[0, 0], [64, 0], [64, 12], [0, 12]], hysteresis: 0}
              - annotate
            sinks:
              - events_jsonl: {path: events.jsonl}
        """)
    stats = Engine(load_config(cfg)).run()[0]
    assert stats.frames == 20 and stats.error is None
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    # track 1's bottom: 4 + 2i; the line is at y 24, "in" below it: first past +3 px at i = 12 (y 28)
    crossing = next(i for i in range(20) if 4 + 2 * i - 24 > 3)
    # the top polygon (y ≤ 12): both start inside; track 1 leaves once its bottom is below y 12 (i = 5)
    leave = next(i for i in range(20) if 4 + 2 * i > 12)
    short = [(e["type"], e["zone"], e["track_id"], e["frame_index"]) for e in lines]
    assert short == [("entered", "top", 1, 0), ("entered", "top", 2, 0), ("left", "top", 1, leave),
                     ("crossed", "mid", 1, crossing), ("left", "top", 2, 19)]
    cross = lines[3]
    assert cross["pipeline"] == "hall" and cross["pts"] == crossing / 10 and cross["direction"] == "in"
    assert cross["class_name"] == "person" and cross["xyxy"] == [28, 2 * crossing - 4, 36, 4 + 2 * crossing]
    assert cross["counts"] == {"inside": 0, "in": 1, "out": 0}
    assert lines[2]["dwell"] == leave / 10 and lines[2]["lost"] is False
    assert lines[4]["reason"] == "end" and lines[4]["lost"] is True and lines[4]["dwell"] == 1.9


# --- configuration errors --------------------------------------------------------------------------

def _errors_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, check=True)
    return str(info.value)


def test_zones_without_a_tracker_before_it(tmp_path):
    write(tmp_path / "fake.py", FAKE_TRACKS)
    path = write(tmp_path / "p.yaml", """
        plugins: [./fake.py]
        pipelines:
          demo:
            source: {uri: pattern, size: 64x48, frames: 3}
            stages:
              - no_tracks
              - zones: {zones: [{name: a, line: [[0, 0.5], [1, 0.5]]}]}
        """)
    assert _errors_of(path) == f"{path}:7:9: pipelines.demo.stages[1].zones: {CHAIN_MESSAGE}"
    assert CHAIN_MESSAGE == ("zones needs track ids: put a `track` stage before it "
                             "(e.g. `- track: {classes: [person]}`)")


def test_validate_reports_each_zone_error(tmp_path):
    write(tmp_path / "fake.py", FAKE_TRACKS)
    path = write(tmp_path / "p.yaml", """
        plugins: [./fake.py]
        pipelines:
          demo:
            source: {uri: pattern, size: 64x48, frames: 3}
            stages:
              - fake_tracks
              - zones:
                  zones:
                    - {name: a, polygon: [[0, 0], [1, 0]]}
                    - {name: b, line: [[0, 0], [0, 0]]}
                    - {name: c, line: [[0, 0], [1, 0], [1, 1]]}
                    - {name: d, polygon: [[0, 0], [1, 0], [1, 1]], line: [[0, 0], [1, 1]]}
                    - {name: e}
                    - {name: f, line: [[0, 0], [1, 1]], anchor: botom_center}
                    - {name: g, polgon: [[0, 0], [1, 0], [1, 1]]}
              - zones:
                  zones:
                    - {name: a, line: [[0, 0], [1, 1]]}
                    - {name: a, polygon: [[0, 0], [1, 0], [1, 1]]}
              - zones:
                  units: fraction
                  zones:
                    - {name: a, polygon: [[0, 0], [640, 0], [0.5, 1]]}
        """)
    res = run_cli("validate", str(path))
    assert res.returncode != 0
    base = f"{path}:{{}}: pipelines.demo.stages[{{}}].zones.zones"
    assert res.stderr.strip().splitlines() == [
        base.format("9:34", 1) + "[0].polygon: zone 'a': a polygon needs at least 3 points, got 2 (for a counting "
                                 "line use `line: [[x1, y1], [x2, y2]]`)",
        base.format("10:31", 1) + "[1].line: zone 'b': the line's 2 points are the same point [0, 0]; give two "
                                  "different points",
        base.format("11:31", 1) + "[2].line: zone 'c': a line needs exactly 2 points [[x1, y1], [x2, y2]], got 3 "
                                  "(for an area use `polygon:`)",
        base.format("12:15", 1) + "[3]: zone 'd' has both a polygon and a line: give one of them (a zone is either "
                                  "an area or a counting line)",
        base.format("13:15", 1) + "[4]: zone 'e' needs a polygon (`polygon: [[x, y], ...]`, at least 3 points) or "
                                  "a line (`line: [[x1, y1], [x2, y2]]`)",
        base.format("14:57", 1) + "[5].anchor: zone 'f': unknown anchor 'botom_center' — did you mean "
                                  "'bottom_center'? (anchors: center, bottom_center, top_center, bottom_left, "
                                  "bottom_right, top_left, top_right, center_left, center_right)",
        base.format("15:15", 1) + "[6]: unknown option 'polgon' for zone 'g' — did you mean 'polygon'? (options: "
                                  "name, polygon, line, classes, anchor, hysteresis)",
        base.format("18:13", 2) + ": two zones are named 'a' (zones[0] and zones[1]): zone names must differ "
                                  "(events and counts are reported by name)",
        base.format("23:13", 3) + ": zone 'a': with units: fraction every coordinate must be within 0–1 "
                                  "(fractions of the frame width and height), but point 2 is [640, 0]; use "
                                  "units: pixels (or auto) for pixel coordinates",
    ]


def test_more_option_errors_in_words():
    def message(**zone) -> str:
        with pytest.raises(ValueError) as info:
            ZonesStage.Params(zones=[{"name": "z", **zone}])
        return str(info.value)

    assert "zone 'z': hysteresis must be a number ≥ 0 (pixels), got -1" in message(line=[[0, 0], [1, 1]],
                                                                                     hysteresis=-1)
    assert "zone 'z': classes must be a list of class names like [person, car], got 'person'" in message(
        line=[[0, 0], [1, 1]], classes="person")
    assert "zone 'z': the polygon's points [[0, 0], [1, 1], [2, 2]] lie on one line" in message(
        polygon=[[0, 0], [1, 1], [2, 2]])
    assert "zone 'z': polygon must be a list of [x, y] points (pairs of numbers) like [[x, y], ...], got " \
           "[[0, 0, 1], [1, 1], [2, 0]]" in message(polygon=[[0, 0, 1], [1, 1], [2, 0]])
    with pytest.raises(ValueError, match="give at least one zone"):
        ZonesStage.Params(zones=[])


# --- annotate --------------------------------------------------------------------------------------

def test_annotate_draws_zones_before_boxes_with_their_counts():
    img = np.zeros((120, 200, 3), np.uint8)
    zones = [{"name": "room", "kind": "polygon", "points": np.int32([[20, 40], [90, 40], [90, 100], [20, 100]]),
              "counts": {"inside": 2, "in": 5, "out": 3}},
             {"name": "gate", "kind": "line", "points": np.int32([[110, 60], [190, 60]]),
              "counts": {"inside": 0, "in": 1, "out": 4}}]
    frame = Frame(img, 0, 0.0, meta={ZONES: zones})
    out = AnnotateStage(AnnotateStage.Params(), Context("annotate", "t")).process(frame).image
    room, gate = np.array(zone_color("room")), np.array(zone_color("gate"))
    assert (out[70, 20] == room).all() and (out[100, 55] == room).all()  # the outline's left and bottom edges
    assert (out[70, 55] == 0).all()  # not filled
    assert (out[60, 120] == gate).all() and (out[60, 185] == gate).all()  # the line
    # the arrow points to the "in" side: down from the middle of a left→right line, not up (no labels above it)
    bare = AnnotateStage(AnnotateStage.Params(labels=False), Context("annotate", "t")).process(
        Frame(np.zeros_like(img), 0, 0.0, meta={ZONES: zones})).image
    assert (bare[62:80, 150] == gate).all(axis=1).sum() >= 12 and not bare[30:58, 110:191].any()
    # the labels, on black: "room inside 2 in 5 out 3" above the polygon's top-left corner
    for text, x, y, color in [("room inside 2 in 5 out 3", 20, 40, room), ("gate in 1 out 4", 110, 60, gate)]:
        x1, y1, x2, y2 = label_box(text, x, y, 200, 120)[0]
        patch = out[y1:y2 + 1, x1:x2 + 1].reshape(-1, 3)
        assert (patch == color).all(axis=1).mean() > 0.5 and (patch.max(axis=1) < 255).any()  # background, text
    # zones: false draws nothing; a frame without zones is untouched either way
    blank = np.zeros((120, 200, 3), np.uint8)
    off = AnnotateStage(AnnotateStage.Params(zones=False), Context("annotate", "t"))
    assert not off.process(Frame(blank.copy(), 0, 0.0, meta={ZONES: zones})).image.any()
    # boxes go on top of the zones: where a box edge crosses the outline, the box's colour shows
    det = Detections(np.float32([[40, 30, 60, 110]]), [0.9], [0], NAMES)
    on_top = AnnotateStage(AnnotateStage.Params(labels=False), Context("annotate", "t")).process(
        Frame(blank.copy(), 0, 0.0, detections=det, meta={ZONES: zones})).image
    assert (on_top[100, 40] == class_color("person")).all() and (on_top[100, 30] == room).all()


def test_a_zone_outside_the_frame_is_warned_about_and_a_bow_tie_is_explained(tmp_path, caplog):
    import logging

    from streamcnn.events import EventQueue
    from streamcnn_plugins.zones import ZonesStage

    with pytest.raises(Exception, match="enclose no area: its edges cross each other; list the points in order "
                                        "around the area"):
        ZonesStage.Params.model_validate({"zones": [{"name": "bow", "polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]}]})
    params = ZonesStage.Params.model_validate({"zones": [{"name": "far", "line": [[1000, 1000], [1200, 1300]]},
                                                         {"name": "near", "line": [[0, 10], [30, 10]]}]})
    stage = ZonesStage(params, Context("zones", "p", tmp_path, events=EventQueue()))
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            stage.process(Frame(np.zeros((240, 320, 3), np.uint8), i, i / 10))
    assert [r.getMessage() for r in caplog.records] == [
        "stage 'zones': zone 'far' lies outside the 320x240 frame (x 1000 to 1200, y 1000 to 1300 pixels): it will "
        "count nothing; check its coordinates and units"]
