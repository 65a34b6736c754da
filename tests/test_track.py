"""The ``track`` stage: ByteTrack (Roboflow's trackers) over real YOLOX-nano detections of vtest.avi,
checked against the library itself, plus ids across a missed frame, events, identities, snapshots."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from streamcnn import Context, Detections, Frame
from streamcnn.events import EventQueue

from .conftest import media, run_cli, write
from .vtest_detections import VTEST_FPS, vtest_detections

trackers = pytest.importorskip("trackers", reason="the track stage needs trackers: pip install -e '.[track]' && "
                               "pip install --no-deps 'trackers==2.6.1'")
from streamcnn_plugins.track import TrackStage  # noqa: E402


def _stage(tmp_path, **options) -> tuple[TrackStage, EventQueue]:
    queue = EventQueue()
    ctx = Context("track", "street", tmp_path, source="vtest.avi", fps=VTEST_FPS, events=queue)
    return TrackStage(TrackStage.Params(**options), ctx), queue


def _copy(det: Detections) -> Detections:
    return det[np.arange(len(det))]  # fancy indexing: new arrays (the stage writes track_id into its frame's)


def _run(stage: TrackStage, dets, drop: int | None = None, step: int = 1) -> list[Detections]:
    out = []
    for i in range(0, len(dets), step):
        det = Detections.empty() if i == drop else _copy(dets[i])
        frame = Frame(np.zeros((576, 768, 3), np.uint8), i, i / VTEST_FPS, "vtest.avi", 1000.0 + i / VTEST_FPS, det)
        out.append(stage.process(frame).detections)
    stage.finish()
    return out


@pytest.fixture(scope="module")
def dets(request):
    from .conftest import assets_dir, missing_asset
    path = assets_dir()
    if not (path / "media" / "vtest.avi").is_file():
        missing_asset(f"real media file {path / 'media' / 'vtest.avi'} not found")
    return vtest_detections(path)


def test_vtest_ids_are_about_the_people_in_the_clip(tmp_path, dets):
    """I counted the people in vtest.avi from the crops of every track and frames every 4 s: about 24
    different people walk through in 79.5 s (MEDIA.md: 4-9 at a time). Ids may exceed people by the
    tracker's id switches (two seen by eye: the light-blue jacket at 19 s, the red-and-navy jacket at
    56 s), never fall far below them."""
    stage, queue = _stage(tmp_path, classes=["person"])
    out = _run(stage, dets)
    ids = {int(t) for d in out for t in d.track_id if t >= 0}
    assert 20 <= len(ids) <= 32, sorted(ids)
    assert ids == set(range(len(ids)))  # the library numbers confirmed tracks 0, 1, 2 ... per stage
    per_frame = [int((d.track_id >= 0).sum()) for d in out]
    assert np.median(per_frame) >= 5  # MEDIA.md: median 7 persons > 0.5 per frame
    # only persons are tracked; every other row keeps -1
    for d in out:
        assert (d.track_id[~d.class_mask("person")] == -1).all()
    events = queue.take()
    appeared = [e for e in events if e.type == "appeared"]
    gone = [e for e in events if e.type == "disappeared"]
    assert sorted(e.get("track_id") for e in appeared) == sorted(ids)
    assert sorted(e.get("track_id") for e in gone) == sorted(ids)  # finish() closes the ones still in view
    for e in gone:
        if e.get("reason") == "lost":  # dropped after lost_buffer (1 s) unmatched, to the frame
            assert e.pts - e.get("last_seen") == pytest.approx(1.1, abs=1e-6)
        else:
            assert e.get("reason") == "end" and e.frame_index == 794
    first = {e.get("track_id"): e for e in appeared}
    for d_i, d in enumerate(out):
        for t in d.track_id[d.track_id >= 0]:
            assert first[int(t)].frame_index <= d_i  # appeared at (or before) its first frame with the id


def test_stage_output_equals_the_library_on_the_same_detections(tmp_path, dets):
    """Reference match: ByteTrackTracker driven by hand with the same boxes, scores and pts."""
    stage, _ = _stage(tmp_path, classes=["person"], track_thresh=0.45, match_thresh=0.75, lost_buffer=1.5, min_hits=2)
    out = _run(stage, dets)
    import supervision as sv

    ref = trackers.ByteTrackTracker(lost_track_buffer=45, frame_rate=10.0, track_activation_threshold=0.55,
                                    minimum_consecutive_frames=2, minimum_iou_threshold=0.25,
                                    high_conf_det_threshold=0.45)
    compared = 0
    for i, det in enumerate(dets):
        persons = np.flatnonzero(det.class_mask("person"))
        sv_det = sv.Detections(xyxy=det.xyxy[persons], confidence=det.conf[persons], data={"i": persons})
        res = ref.update(sv_det, timestamp=i / VTEST_FPS)
        want = np.full(len(det), -1)
        want[res.data["i"].astype(int)] = res.tracker_id
        assert out[i].track_id.tolist() == want.tolist(), f"frame {i}"
        compared += int((want >= 0).sum())
    assert compared > 3000  # thousands of confirmed rows compared, not an empty clip


def test_ids_survive_one_frame_without_detections(tmp_path, dets):
    """One frame loses all its detections (a detector glitch): every track seen the frame before comes
    back on the frame after with its own id, on the same rows as in a run that had the frame."""
    full = _run(_stage(tmp_path, classes=["person"])[0], dets)

    def confirmed(i):
        return set(full[i].track_id[full[i].track_id >= 0].tolist())

    # the busiest frame whose neighbours show the same people (so the drop is the only difference)
    k = max((i for i in range(300, 500) if confirmed(i - 1) == confirmed(i + 1)), key=lambda i: len(confirmed(i)))
    dropped = _run(_stage(tmp_path, classes=["person"])[0], dets, drop=k)
    assert len(dropped[k]) == 0 and len(confirmed(k - 1)) >= 5
    assert dropped[k - 1].track_id.tolist() == full[k - 1].track_id.tolist()
    assert dropped[k + 1].track_id.tolist() == full[k + 1].track_id.tolist()
    assert set(dropped[k + 1].track_id.tolist()) >= confirmed(k - 1)


def test_lost_buffer_is_seconds_at_any_frame_rate(tmp_path, dets):
    """Every other frame (5 fps instead of 10): a track is still dropped 1.0-1.2 s after it was last
    matched (one frame interval of slack), as at the full rate."""
    stage, queue = _stage(tmp_path, classes=["person"])
    _run(stage, dets, step=2)
    lost = [e for e in queue.take() if e.type == "disappeared" and e.get("reason") == "lost"]
    assert lost
    for e in lost:
        assert 1.0 < e.pts - e.get("last_seen") <= 1.2 + 1e-6, e.to_dict()


def _face(identity, similarity, x=100.0):
    return Detections(np.array([[x, 100, x + 60, 180]]), [0.9], [0], ["face"],
                      identity=np.array([identity], object), similarity=[similarity])


def test_track_keeps_its_name_and_recognised_is_emitted_once(tmp_path):
    stage, queue = _stage(tmp_path, min_hits=1)
    names = ["obama"] * 3 + ["unknown"] * 3 + [None] * 2 + ["obama"] * 2
    sims = [0.61, 0.72, 0.65, 0.1, 0.2, 0.15, np.nan, np.nan, 0.7, 0.5]
    shown = []
    for i, (name, sim) in enumerate(zip(names, sims)):
        det = _face(name, sim, 100.0 + i)
        frame = stage.process(Frame(np.zeros((480, 640, 3), np.uint8), i, i / 10, "cam", 0.0, det))
        shown.append((frame.detections.identity[0], round(float(frame.detections.similarity[0]), 2),
                      int(frame.detections.track_id[0])))
    assert [s[0] for s in shown] == ["obama"] * 10
    assert [s[1] for s in shown[3:8]] == [0.72] * 5  # the best similarity the track had so far
    # min_hits 1: the id is published on the first frame after the one that started the track
    assert [s[2] for s in shown] == [-1] + [0] * 9
    recognised = [e.to_dict() for e in queue.take() if e.type == "recognised"]
    assert len(recognised) == 1
    assert recognised[0]["identity"] == "obama" and recognised[0]["similarity"] == 0.72
    assert recognised[0]["track_id"] == 0 and recognised[0]["frame_index"] == 1


def test_snapshots_are_crops_of_the_best_detection(tmp_path, dets):
    """Each frame is filled with its index as grey level: a snapshot's pixels tell which frame it is from."""
    import cv2

    stage, queue = _stage(tmp_path, classes=["person"], snapshots="snaps/{pipeline}")
    out = []
    for i in range(60):
        img = np.full((576, 768, 3), i, np.uint8)
        out.append(stage.process(Frame(img, i, i / VTEST_FPS, "vtest.avi", 0.0, _copy(dets[i]))).detections)
    stage.finish()
    gone = [e for e in queue.take() if e.type == "disappeared"]
    assert len(gone) >= 5
    for e in gone:
        tid, path = e.get("track_id"), e.get("snapshot")
        assert path.startswith(str(tmp_path / "snaps" / "street")) and path.endswith(f"-{tid}.jpg")
        confs = [(float(d.conf[d.track_id == tid].max()), i) for i, d in enumerate(out) if (d.track_id == tid).any()]
        best_conf, best_frame = max(confs)
        assert e.get("best_conf") == round(best_conf, 4)
        crop = cv2.imread(path)
        assert crop is not None and crop.shape[0] > 20
        assert abs(int(np.median(crop)) - best_frame) <= 1


def test_pipeline_track_events_jsonl(tmp_path, assets):
    """Through `streamcnn run`: 60 frames of vtest → yolo → track → events_jsonl + jsonl."""
    cfg = write(tmp_path / "p.yaml", f"""
        pipelines:
          street:
            source: {media(assets, "vtest.avi")}
            stages:
              - yolo: {{model: yolox_nano_coco_416, conf: 0.1}}
              - track: {{classes: [person]}}
            sinks:
              - events_jsonl: {{path: out/events.jsonl}}
              - jsonl: {{path: out/frames.jsonl}}
        """)
    r = run_cli("run", str(cfg), "--max-frames", "60", cwd=tmp_path, env={"STREAMCNN_ASSETS": str(assets)})
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    frames = [json.loads(line) for line in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    ids = {d["track_id"] for f in frames for d in f["detections"] if d["track_id"] >= 0}
    assert sorted(e["track_id"] for e in events if e["type"] == "appeared") == sorted(ids)
    assert sorted(e["track_id"] for e in events if e["type"] == "disappeared") == sorted(ids)
    ev = next(e for e in events if e["type"] == "appeared")
    assert list(ev)[:7] == ["type", "pipeline", "source", "time", "epoch", "pts", "frame_index"]
    assert ev["pipeline"] == "street" and ev["source"].endswith("vtest.avi") and ev["class_name"] == "person"
    assert ev["pts"] == pytest.approx(ev["frame_index"] / 10)
    row = next(d for d in frames[ev["frame_index"]]["detections"] if d["track_id"] == ev["track_id"])
    assert ev["xyxy"] == row["xyxy"] and ev["conf"] == row["conf"]
    # a frame's events are written before the next frames' (events_jsonl in frame order)
    assert [e["frame_index"] for e in events] == sorted(e["frame_index"] for e in events)


def test_missing_trackers_is_a_config_error_saying_how_to_install(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          p:
            source: {uri: pattern, frames: 3}
            stages:
              - track: {}
            sinks: [null]
        """)
    code = ("import sys; sys.modules['trackers'] = None; from streamcnn.cli import main; "
            f"sys.argv = ['streamcnn', 'validate', {str(cfg)!r}]; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert (f"{cfg}:5:" in r.stderr and "pipelines.p.stages[0].track: the track stage needs Roboflow's trackers "
            "package (import of trackers halted; None in sys.modules): pip install -e '.[track]' && pip install "
            "--no-deps 'trackers==2.6.1'") in r.stderr, r.stderr


def test_detections_to_and_from_supervision():
    import supervision as sv

    det = Detections(np.array([[1, 2, 30, 40], [5, 6, 70, 80]]), [0.9, 0.4], [0, 2], ["person", "bicycle", "car"],
                     landmarks=np.arange(20, dtype=np.float32).reshape(2, 5, 2),
                     identity=np.array(["bob", None], object), similarity=[0.7, np.nan], track_id=[3, -1],
                     data={"extra": np.array([1.5, 2.5])}, stage="yolo")
    out = det.to_supervision()
    assert isinstance(out, sv.Detections)
    assert out.xyxy.tolist() == det.xyxy.tolist() and out.confidence.tolist() == det.conf.tolist()
    assert out.class_id.tolist() == [0, 2] and out.tracker_id.tolist() == [3, -1]
    assert out.data["class_name"].tolist() == ["person", "car"]
    assert Detections.from_supervision(out) == det
    # supervision's tools work on it: an annotator draws the two boxes
    img = sv.BoxAnnotator(thickness=1).annotate(np.zeros((100, 100, 3), np.uint8), out)
    assert img[2, 10].any() and img[6, 40].any() and not img[50, 50].any()
    # and a supervision result comes back: a filtered selection
    back = Detections.from_supervision(out[out.confidence > 0.5])
    assert back.class_name == ["person"] and back.track_id.tolist() == [3] and back.identity.tolist() == ["bob"]


def test_a_class_name_no_detection_has_is_warned_about_once(tmp_path, dets, caplog):
    import logging

    stage, _ = _stage(tmp_path, classes=["persons", "car"])
    with caplog.at_level(logging.WARNING):
        _run(stage, dets[:150])
    warned = [r.getMessage() for r in caplog.records if "no detection of" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith("stage 'track': classes: no detection of 'persons' — did you mean 'person'? in the "
                                "first 100 frames (seen: ")
    assert "car" not in warned[0].split("(seen")[0]  # cars are there
