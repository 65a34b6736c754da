"""Tracking and counting costs per frame, side by side in one run (issue 12).

    python tools/bench_track.py [--media ../shared/media/vtest.avi] [--repeat 3]

YOLOX-nano's detections of every vtest.avi frame (conf ≥ 0.1) are computed once; then, on exactly
those detections:
- bare ``trackers.ByteTrackTracker.update`` (the library, driven by hand with ``sv.Detections``),
- the ``track`` stage's ``process`` (the library plus the row mapping, identities and events),
- the ``track`` stage followed by a ``zones`` stage with one counting line,
each as milliseconds per frame (median of ``--repeat`` passes over the 795 frames), with the
stage's overhead as a ratio to the bare library.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamcnn import Context, Frame  # noqa: E402
from streamcnn.events import EventQueue  # noqa: E402
from tests.vtest_detections import VTEST_FPS, vtest_detections  # noqa: E402


def bare(dets) -> float:
    """Seconds for ByteTrackTracker.update over the person rows of every frame."""
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(lost_track_buffer=30, frame_rate=VTEST_FPS, track_activation_threshold=0.6,
                               minimum_consecutive_frames=3, minimum_iou_threshold=0.2, high_conf_det_threshold=0.5)
    inputs = []
    for det in dets:
        rows = det.class_mask("person")
        inputs.append(sv.Detections(xyxy=det.xyxy[rows], confidence=det.conf[rows], data={"i": np.flatnonzero(rows)}))
    t0 = time.perf_counter()
    for i, sv_det in enumerate(inputs):
        tracker.update(sv_det, timestamp=i / VTEST_FPS)
    return time.perf_counter() - t0


def staged(dets, with_zones: bool) -> float:
    """Seconds for the track stage (and a zones stage with one line) over every frame."""
    from streamcnn_plugins.track import TrackStage

    folder = Path(tempfile.mkdtemp())
    queue = EventQueue()
    ctx = Context("track", "bench", folder, source="vtest.avi", fps=VTEST_FPS, events=queue)
    stages = [TrackStage(TrackStage.Params(classes=["person"]), ctx)]
    if with_zones:
        from streamcnn_plugins.zones import ZonesStage

        params = ZonesStage.Params.model_validate(
            {"zones": [{"name": "walkway", "line": [[0.05, 0.55], [0.95, 0.55]], "classes": ["person"]}]})
        stages.append(ZonesStage(params, Context("zones", "bench", folder, source="vtest.avi", events=queue)))
    image = np.zeros((576, 768, 3), np.uint8)
    frames = [Frame(image, i, i / VTEST_FPS, "vtest.avi", 0.0, det[np.arange(len(det))]) for i, det in enumerate(dets)]
    t0 = time.perf_counter()
    for frame in frames:
        for stage in stages:
            frame = stage.process(frame)
    elapsed = time.perf_counter() - t0
    queue.take()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", default=os.environ.get("STREAMCNN_ASSETS", "../shared"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    dets = vtest_detections(Path(args.assets).resolve())
    n = len(dets)
    persons = statistics.median(int(d.class_mask("person").sum()) for d in dets)
    rows = {
        "trackers ByteTrackTracker.update (bare)": [bare(dets) for _ in range(args.repeat)],
        "streamcnn track stage": [staged(dets, False) for _ in range(args.repeat)],
        "streamcnn track + zones (one line)": [staged(dets, True) for _ in range(args.repeat)],
    }
    base = statistics.median(rows["trackers ByteTrackTracker.update (bare)"]) / n * 1000
    print(f"vtest.avi: {n} frames, median {persons:g} person boxes per frame (YOLOX-nano, conf >= 0.1)\n")
    print("| | ms per frame | ratio to bare |")
    print("|---|---|---|")
    for name, times in rows.items():
        ms = statistics.median(times) / n * 1000
        print(f"| {name} | {ms:.3f} | **{ms / base:.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
