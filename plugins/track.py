"""Built-in stage ``track``: multi-object tracking of ``frame.detections`` with ByteTrack.

The tracker is Roboflow's ``trackers`` package (``ByteTrackTracker``, Apache-2.0), fed each frame's
boxes and its pts (the library's variable-frame-rate mode: a track's lost buffer is measured in
seconds, so a live camera whose rate varies keeps the same behaviour). This stage adds what a
pipeline needs around it: ``track_id`` on the frame's rows (−1 while unconfirmed), the identity
a face recogniser gave a track kept on later frames, and the object events ``appeared``,
``disappeared`` and ``recognised``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from streamcnn import Context, Detections, Field, Frame, NameWatch, Params, Stage, hookimpl

#: an identity that is not a name: a recogniser's "not in the database", or no recogniser at all
_NO_NAME = (None, "unknown")
_INSTALL = ("pip install -e '.[track]' && pip install --no-deps 'trackers==2.6.1' (--no-deps: trackers' "
            "metadata asks for opencv-python, which would overwrite opencv-python-headless)")


def load_bytetrack() -> tuple[Any, Any]:
    """``(trackers.ByteTrackTracker, supervision.Detections)``, imported on first use (~0.8 s).

    Raises:
        ValueError: trackers or supervision is not installed (the message says how to install them).
    """
    try:
        from supervision import Detections as SvDetections
        from trackers import ByteTrackTracker
    except ImportError as exc:
        raise ValueError(f"the track stage needs Roboflow's trackers package ({exc}): {_INSTALL}") from None
    return ByteTrackTracker, SvDetections


@dataclass
class TrackState:
    """What the stage remembers of one confirmed track (pts in seconds, frame pixels)."""

    track_id: int
    class_name: str
    first_seen: float
    last_seen: float
    best_conf: float
    xyxy: list[float]
    identity: str | None = None
    similarity: float = math.nan
    named: set[str] = field(default_factory=set)  # identities already announced as `recognised`
    snapshot: str | None = None
    snapshot_conf: float = -1.0


class TrackStage(Stage):
    """ByteTrack over the detections of the chosen classes; fills ``track_id`` and emits events.

    Rows of classes not tracked keep ``track_id`` −1 (and rows are never reordered or dropped). A
    track's id is published (``track_id`` ≥ 0) once it was detected in ``min_hits`` frames in a row,
    never on the frame that started it (the library's ``minimum_consecutive_frames``); before that
    its rows carry −1, and ``first_seen`` is the pts of the frame its id was published on. Ids count
    0, 1, 2 ... per pipeline run. The tracker is class-agnostic (like supervision's ByteTrack): a
    track takes the class of its latest detection.

    Events (`streamcnn.Context.emit`, see `streamcnn.EVENT_TYPES`):

    * ``appeared``: a track id is published: ``track_id``, ``class_name``, ``conf``, ``xyxy``,
      ``first_seen`` (pts, s), ``snapshot`` (path, with ``snapshots``).
    * ``disappeared``: the tracker dropped the track (not matched for ``lost_buffer`` s), or the
      stream ended (``reason`` ``"lost"`` / ``"end"``): ``track_id``, ``class_name``, ``best_conf``,
      ``first_seen``, ``last_seen`` (pts of its last matched detection), ``duration`` (s), ``snapshot``.
    * ``recognised``: a track got an identity from a recogniser (``face_recognize``) for the first
      time: ``track_id``, ``identity``, ``similarity``, ``class_name``, ``xyxy``; once per track and
      identity.

    Identities: a row whose recogniser gave no name on this frame (``unknown``, or no recognition:
    ``face_recognize`` with ``every: N``) gets its track's name back (the best-similarity name the
    track had so far, with that similarity).

    Raises (at start): ValueError when the ``trackers`` package is missing (says how to install it).
    """

    fills_track_id: ClassVar[bool] = True  # for stages that need track ids (zones) to check the chain

    class Params(Params):
        classes: list[str] | None = Field(None, description="class names to track (default: every row)")
        track_thresh: float = Field(
            0.5, ge=0, le=1, description="ByteTrack's split: detections at least this confident are matched first, "
            "the others only to tracks left over (ByteTrack paper: 0.5; give the detector a low conf, e.g. 0.1, "
            "so it has low-score boxes to offer)")
        new_track_thresh: float | None = Field(
            None, ge=0, le=1, description="confidence a detection needs to start a track (default track_thresh + "
            "0.1, as in ByteTrack's reference code)")
        match_thresh: float = Field(
            0.8, ge=0, lt=1, description="largest IoU distance (1 − IoU) of a match, ByteTrack's meaning: 0.8 "
            "matches boxes that overlap with IoU ≥ 0.2")
        lost_buffer: float = Field(1.0, ge=0, description="seconds a track lives on unmatched before it is "
                                   "dropped (ByteTrack: 30 frames at 30 fps)")
        min_hits: int = Field(3, ge=1, description="frames in a row a new track must be detected in before its id "
                              "is published (never on the frame that started it; −1 until then)")
        snapshots: str | None = Field(None, description="folder for a JPEG crop of each object (its most "
                                      "confident detection); {pipeline} is replaced; paths go into the events")

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self._bytetrack, self._sv_detections = load_bytetrack()
        self.tracker: Any = None  # made at the first frame, when the stream's frame rate is known
        self.tracks: dict[int, TrackState] = {}
        self.classes = None if params.classes is None else list(params.classes)
        self.snapshot_dir: Path | None = None
        if params.snapshots:
            self.snapshot_dir = ctx.output_path(params.snapshots)
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._run = time.strftime("%Y%m%d-%H%M%S")  # snapshot names: ids restart in every run
        self._last: Frame | None = None
        self._names = NameWatch(f"stage '{ctx.name}': classes", self.classes, ctx.log)

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        load_bytetrack()
        if params.snapshots:
            ctx.check_writable(str(Path(params.snapshots) / "probe.jpg"))

    def make_tracker(self, fps: float | None) -> Any:
        """A ``ByteTrackTracker`` with this stage's options (``lost_buffer`` in the library's unit,
        frames at 30 fps; ``fps`` its reference rate for the Kalman steps, 30 when unknown)."""
        p = self.params
        return self._bytetrack(
            lost_track_buffer=int(round(p.lost_buffer * 30)),
            frame_rate=float(fps or 30.0),
            track_activation_threshold=p.track_thresh + 0.1 if p.new_track_thresh is None else p.new_track_thresh,
            minimum_consecutive_frames=p.min_hits,
            minimum_iou_threshold=1.0 - p.match_thresh,
            high_conf_det_threshold=p.track_thresh,
        )

    def process(self, frame: Frame) -> Frame:
        if self.tracker is None:
            self.tracker = self.make_tracker(self.ctx.fps)
        det = frame.detections
        self._names.see(det.class_name)
        rows = np.arange(len(det)) if self.classes is None else np.flatnonzero(det.class_mask(*self.classes))
        ids = self.update(det[rows], frame.pts)
        track_id = np.full(len(det), -1, np.int64) if det.track_id is None else det.track_id.copy()
        track_id[rows] = ids
        det.track_id = track_id
        self._remember(frame, rows, ids)
        self._last = frame
        return frame

    def update(self, det: Detections, pts: float) -> np.ndarray:
        """Run the tracker on ``det`` at time ``pts`` (s): int64 (N,) ids in ``det``'s row order."""
        # data["row"]: where each of the tracker's (reordered) output rows came from
        sv_det = self._sv_detections(xyxy=det.xyxy, confidence=det.conf, class_id=det.class_id,
                                     data={"row": np.arange(len(det))})
        out = self.tracker.update(sv_det, timestamp=float(pts))
        ids = np.full(len(det), -1, np.int64)
        if len(out):
            ids[np.asarray(out.data["row"], np.intp)] = np.asarray(out.tracker_id, np.int64)
        return ids

    def _remember(self, frame: Frame, rows: np.ndarray, ids: np.ndarray) -> None:
        det, pts = frame.detections, frame.pts
        names = det.class_name
        for row, tid in zip(rows.tolist(), ids.tolist()):
            if tid < 0:
                continue
            conf, box = float(det.conf[row]), [round(float(v), 2) for v in det.xyxy[row]]
            state = self.tracks.get(tid)
            if state is None:
                state = self.tracks[tid] = TrackState(tid, names[row], pts, pts, conf, box)
                self._snapshot(frame, row, state)
                self.ctx.emit("appeared", frame, track_id=tid, class_name=state.class_name, conf=round(conf, 4),
                              xyxy=box, first_seen=round(pts, 6), snapshot=state.snapshot)
            else:
                state.class_name, state.last_seen, state.xyxy = names[row], pts, box
                if conf > state.best_conf:
                    state.best_conf = conf
                    self._snapshot(frame, row, state)
            self._identity(frame, row, state)
        alive = {t.tracker_id for t in self.tracker.tracks if t.tracker_id >= 0}
        for tid in [t for t in self.tracks if t not in alive]:
            self._gone(self.tracks.pop(tid), frame, "lost")

    def _identity(self, frame: Frame, row: int, state: TrackState) -> None:
        """Keep the track's best name; give it back to a row the recogniser left unnamed."""
        det = frame.detections
        if det.identity is None:
            return
        name = det.identity[row]
        sim = math.nan if det.similarity is None else float(det.similarity[row])
        if name not in _NO_NAME:
            if state.identity is None or not sim <= state.similarity:  # a better (or first) name
                state.identity, state.similarity = str(name), sim
            if name not in state.named:
                state.named.add(str(name))
                self.ctx.emit("recognised", frame, track_id=state.track_id, identity=str(name),
                              similarity=None if math.isnan(sim) else round(sim, 4), class_name=state.class_name,
                              xyxy=state.xyxy)
        elif state.identity is not None:
            det.identity[row] = state.identity
            if det.similarity is not None:
                det.similarity[row] = state.similarity

    def _snapshot(self, frame: Frame, row: int, state: TrackState) -> None:
        """Write the crop of ``row`` (its box with a 10 % margin) as the track's snapshot JPEG."""
        if self.snapshot_dir is None:
            return
        x1, y1, x2, y2 = frame.detections.xyxy[row]
        mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
        h, w = frame.image.shape[:2]
        a, b = int(max(0, x1 - mx)), int(max(0, y1 - my))
        c, d = int(min(w, math.ceil(x2 + mx))), int(min(h, math.ceil(y2 + my)))
        if c <= a or d <= b:
            return
        path = self.snapshot_dir / f"{self._run}-{state.track_id}.jpg"
        if not cv2.imwrite(str(path), frame.image[b:d, a:c]):
            raise OSError(f"cannot write the snapshot {path}")
        state.snapshot, state.snapshot_conf = str(path), float(frame.detections.conf[row])

    def _gone(self, state: TrackState, frame: Frame, reason: str) -> None:
        self.ctx.emit("disappeared", frame, track_id=state.track_id, class_name=state.class_name,
                      best_conf=round(state.best_conf, 4), first_seen=round(state.first_seen, 6),
                      last_seen=round(state.last_seen, 6), duration=round(state.last_seen - state.first_seen, 6),
                      reason=reason, snapshot=state.snapshot)

    def finish(self) -> None:
        """The stream ended: ``disappeared`` (reason ``end``) for every track still alive, at the last frame."""
        self._names.done()
        if self._last is None:
            return
        for tid in sorted(self.tracks):
            self._gone(self.tracks[tid], self._last, "end")
        self.tracks.clear()


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"track": TrackStage}
