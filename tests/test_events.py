"""The one event model: `Event` (envelope + type fields), `Context.emit`, the ``streamcnn_event`` hook,
`Sink.event` (before the frame's write), camera events through the same path, ``events_jsonl``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streamcnn import Context, Detections, Frame
from streamcnn.events import ENVELOPE, Event, EventQueue, make_event

from .conftest import run_cli, write

PLUGIN = '''
import json, os, time
import numpy as np
import streamcnn

OUT = os.environ["EVENTS_TEST_OUT"]


class Flaky(streamcnn.Source):
    """A live source: 5 frames, an outage (read fails), then frames again."""
    live = True

    @classmethod
    def claims(cls, uri):
        return uri == "flaky"

    def open(self):
        self.opened = getattr(self, "opened", 0) + 1
        self.n = getattr(self, "n", 0)

    def read(self):
        self.n += 1
        if self.n == 6 and self.opened == 1:
            return None
        time.sleep(0.02)  # a 50 fps camera
        return np.full((24, 32, 3), self.n, np.uint8), None

    @property
    def fps(self):
        return 50.0


class Ping(streamcnn.Stage):
    def process(self, frame):
        if frame.index % 10 == 0:
            self.ctx.emit("ping", frame, n=np.int64(frame.index // 10), level=np.float32(0.5), gone=float("nan"))
        return frame


class Recorder(streamcnn.Sink):
    class Params(streamcnn.Params):
        path: str

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.seen = []

    def event(self, event):
        self.seen.append(["event", event.type, event.frame_index])

    def write(self, frame):
        self.seen.append(["write", frame.index])

    def close(self):
        with open(self.ctx.resolve(self.params.path), "w") as f:
            json.dump(self.seen, f)


@streamcnn.hookimpl
def streamcnn_event(pipeline, event):
    with open(os.path.join(OUT, "hook.jsonl"), "a") as f:
        f.write(json.dumps([pipeline, event.to_dict()]) + "\\n")


@streamcnn.hookimpl
def streamcnn_source_types():
    return {"flaky": Flaky}


@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"ping": Ping}


@streamcnn.hookimpl
def streamcnn_sink_types():
    return {"recorder": Recorder}
'''


def test_event_dict_has_the_envelope_then_the_fields():
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 12, 1.2, "cam", 1_796_280_000.25)
    ev = make_event("crossed", "door", "ignored", frame=frame, zone="door", direction="in",
                    xyxy=np.array([1.5, 2, 3, 4], np.float32), conf=np.float32(0.5), similarity=math.nan)
    d = ev.to_dict()
    assert list(d)[:len(ENVELOPE)] == list(ENVELOPE)
    assert d == {"type": "crossed", "pipeline": "door", "source": "cam", "time": "2026-12-03T06:40:00.250+00:00",
                 "epoch": 1_796_280_000.25, "pts": 1.2, "frame_index": 12, "zone": "door", "direction": "in",
                 "xyxy": [1.5, 2.0, 3.0, 4.0], "conf": 0.5, "similarity": None}
    assert json.loads(ev.to_json()) == d
    assert ev.get("zone") == "door" and ev.get("pipeline") == "door" and ev.get("nope", 3) == 3
    camera = make_event("disconnected", "door", "rtsp://***@cam/1", epoch=10.0, index=40, reason="no frame for 5 s")
    assert camera.to_dict() == {"type": "disconnected", "pipeline": "door", "source": "rtsp://***@cam/1",
                                "time": "1970-01-01T00:00:10.000+00:00", "epoch": 10.0, "pts": None,
                                "frame_index": 40, "reason": "no frame for 5 s"}


def test_context_emit_queues_events_and_goes_nowhere_outside_a_run(tmp_path):
    queue = EventQueue()
    ctx = Context("zones", "p", tmp_path, source="cam", events=queue)
    frame = Frame(np.zeros((4, 4, 3), np.uint8), 3, 0.3, "cam", 5.0, Detections.empty())
    ev = ctx.emit("entered", frame, zone="a")
    assert isinstance(ev, Event) and queue.take() == [ev] and queue.take() == []
    assert ctx.emit("entered").frame_index is None and queue.take()[0].pts is None
    with pytest.raises(ValueError, match=r"^event 'clash': the field name 'pts' is taken by the envelope every event "
                                         r"has \(type, pipeline, source, time, epoch, pts, frame_index\); name the "
                                         r"field otherwise$"):
        ctx.emit("clash", frame, pts=99)
    with pytest.raises(ValueError, match=r"^event 'odd': field 'thing' cannot be written as JSON \(Object of type "
                                         r"object is not JSON serializable\); give str, int, float, bool, None, "
                                         r"lists or dicts of those \(numpy values are fine\)$"):
        ctx.emit("odd", frame, thing=object())
    assert queue.take() == []  # refused events are not queued
    alone = Context("zones", "p", tmp_path)  # validate builds stages without a run: emit is harmless
    assert alone.emit("entered", frame).type == "entered"


def test_events_reach_the_hook_and_the_sinks_before_their_frame_and_camera_events_too(tmp_path):
    write(tmp_path / "evplug.py", PLUGIN)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./evplug.py]
        pipelines:
          cam:
            source: {uri: flaky, backoff_initial: 0.05, policy: all}
            stages: [ping]
            sinks:
              - recorder: {path: order.json}
              - events_jsonl: {path: "out/{pipeline}.events.jsonl"}
              - events_jsonl: {path: out/only_pings.jsonl, types: [ping]}
        """)
    r = run_cli("run", str(cfg), "--max-frames", "25", cwd=tmp_path, env={"EVENTS_TEST_OUT": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    hook = [json.loads(line) for line in (tmp_path / "hook.jsonl").read_text().splitlines()]
    assert {p for p, _ in hook} == {"cam"}
    events = [e for _, e in hook]
    assert [e["type"] for e in events] == ["ping", "disconnected", "reconnected", "ping", "ping"]
    indices = [e["frame_index"] for e in events]
    assert indices[:2] == [0, 5] and 5 <= indices[2] <= 10 and indices[3:] == [10, 20]  # frames read when seen
    pings = [e for e in events if e["type"] == "ping"]
    assert [(e["n"], e["level"], e["gone"]) for e in pings] == [(0, 0.5, None), (1, 0.5, None), (2, 0.5, None)]
    assert pings[1]["source"] == "flaky" and pings[1]["pts"] > pings[0]["pts"]
    down, up = events[1], events[2]
    assert down["source"] == "flaky" and down["pts"] is None and down["reason"] and down["first_connect"] is False
    assert up["attempts"] >= 1 and up["downtime"] >= 0
    # the sinks got the same events, in the same order: events_jsonl all of them, the filtered one the pings
    written = [json.loads(line) for line in (tmp_path / "out" / "cam.events.jsonl").read_text().splitlines()]
    assert written == events
    assert [json.loads(line) for line in (tmp_path / "out" / "only_pings.jsonl").read_text().splitlines()] == pings
    # each frame's events come before that frame's write
    order = json.loads((tmp_path / "order.json").read_text())
    writes = [o[1] for o in order if o[0] == "write"]
    assert writes == list(range(25))
    for kind, *rest in order:
        if kind == "event" and rest[0] == "ping":
            at = order.index(["event", "ping", rest[1]])
            assert order[at + 1] == ["write", rest[1]]
    assert order.index(["event", "disconnected", 5]) < order.index(["write", 5])


def test_a_sink_that_fails_on_an_event_is_named_with_the_event(tmp_path):
    write(tmp_path / "evplug.py", PLUGIN + '''

class Broken(streamcnn.EventSink):
    def event(self, event):
        raise RuntimeError("no broker here")


@streamcnn.hookimpl(specname="streamcnn_sink_types")
def more_sinks():
    return {"broken": Broken}
''')
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./evplug.py]
        pipelines:
          cam:
            source: {uri: pattern, frames: 12}
            stages: [ping]
            sinks: [broken, {events_jsonl: {path: ev.jsonl}}]
        """)
    r = run_cli("run", str(cfg), cwd=tmp_path, env={"EVENTS_TEST_OUT": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert ("pipeline 'cam': sink 'broken' failed on frame 0: RuntimeError: no broker here at "
            f"{tmp_path / 'evplug.py'}:") in r.stderr
    assert "(event 'ping') (1 event errors so far)" in r.stderr
    assert "(event 'ping') (2 event errors so far)" in r.stderr  # frame 10's
    assert "Traceback" not in r.stderr
    # the other sink still got both events, and all 12 frames went through
    assert [json.loads(x)["frame_index"] for x in (tmp_path / "ev.jsonl").read_text().splitlines()] == [0, 10]
    assert "12 frames" in r.stderr + r.stdout


def test_an_event_type_filter_with_a_typo_is_warned_about(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          p:
            source: {uri: pattern, frames: 3}
            sinks:
              - events_jsonl: {path: e.jsonl, types: [crossing, crossed]}
              - events_jsonl: {path: f.jsonl, types: [crowd]}
        """)
    r = run_cli("validate", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warnings = [line.split("WARNING ")[1] for line in r.stderr.splitlines() if "WARNING" in line]
    built_in = "appeared, disappeared, recognised, entered, left, crossed, disconnected, reconnected"
    assert warnings == [
        "streamcnn.p.events_jsonl: sink 'events_jsonl': types: 'crossing' (did you mean 'crossed'?): no built-in "
        f"stage emits this event type; fine if a plugin of yours does (built-in types: {built_in})",
        "streamcnn.p.events_jsonl: sink 'events_jsonl': types: 'crowd' (did you mean 'crossed'?): no built-in stage "
        f"emits this event type; fine if a plugin of yours does (built-in types: {built_in})"]
