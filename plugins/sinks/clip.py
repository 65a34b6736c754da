"""Built-in sink ``clip``: event clips ("smart record") from a ring buffer of encoded packets.

Every frame is encoded (no B-frames, x264 ``zerolatency``: each packet leaves the encoder with its frame) and kept
in a `streamcnn.recording.PacketRing` of the last ``pre_roll`` seconds (plus the rest of the GOP
they begin in). A trigger opens a clip that starts ``pre_roll`` before it (at the keyframe before
that moment; the mp4 edit list hides the frames before it) and ends ``post_roll`` after the last
trigger: triggers while a clip is open extend it (overlapping events make one clip). Each clip
gets a JSON side-car (same name, ``.json``) describing its triggers.

The trigger: with ``events`` (e.g. ``[entered, crossed, recognised]``), an event of one of those
types (of a class in ``classes`` and a zone in ``zones`` when given; `streamcnn.Sink.event`) at the
frame; without it, a detection on the frame whose class is in ``classes`` (all classes when not
given) with ``conf`` ≥ ``min_conf``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from streamcnn import (
    Context,
    Event,
    Field,
    Frame,
    Output,
    SinkWriteError,
    StreamcnnError,
    StreamInfo,
    unknown_event_types,
)
from streamcnn import recording as rec

from .encoding import EncoderParams, FrameEncoder
from .files import FileSink, os_reason


class ClipParams(EncoderParams):
    path: str = Field("out/{pipeline}/clips/{start:%Y-%m-%d_%H-%M-%S}.mp4",
                      description="clip file template: {pipeline}, {start} (the clip's wall-clock start)")
    pre_roll: float = Field(5.0, ge=0, le=300, description="seconds before the first trigger")
    post_roll: float = Field(5.0, ge=0, le=300, description="seconds after the last trigger")
    max_length: float = Field(300.0, gt=0, description="seconds at most per clip (a longer event continues in "
                              "the next clip)")
    events: list[str] | None = Field(None, description="event types that trigger a clip, e.g. [entered, crossed] "
                                     "(default: detections trigger it, see classes and min_conf)")
    zones: list[str] | None = Field(None, description="with events: only events of these zones")
    classes: list[str] | None = Field(None, description="class names that trigger a clip (default: any)")
    min_conf: float = Field(0.5, ge=0, le=1, description="without events: lowest conf of a triggering detection")
    gop: float = Field(1.0, gt=0, description="seconds between keyframes (a clip starts at most this much "
                       "before its pre-roll; the edit list hides the extra frames)")
    ring_bytes: int = Field(256 * 2**20, gt=0, description="cap on the ring buffer's bytes")


class _Clip:
    """One clip being written: its file and what triggered it."""

    def __init__(self, file: rec.VideoFile, start: int, end: int, wall: float, source: str) -> None:
        self.file, self.start, self.end, self.wall, self.source = file, start, end, wall, source
        self.triggers: list[dict] = []
        self.last_trigger = -1


class ClipSink(FileSink):
    """Writes a short clip around each event: ``pre_roll`` s before the first trigger to
    ``post_roll`` s after the last one (see the module docstring). Memory: the ring holds only
    compressed packets (about 1 MB per second of 1080p25 H.264 at CRF 23; capped by ``ring_bytes``).
    """

    Params = ClipParams

    @classmethod
    def check(cls, params: ClipParams, ctx: Context) -> None:
        warning = unknown_event_types(params.events)
        if warning:
            ctx.log.warning("sink '%s': events: %s", ctx.name, warning)
        problem = rec.template_problem(params.path, segmented=True)
        if problem:
            raise ValueError(problem)
        ctx.check_writable(cls._folder(params, ctx))
        problem = rec.writer_problem(Path(params.path), params.settings(bframes=False, low_delay=True))
        if problem:
            raise ValueError(f"cannot write {ctx.output_path(params.path)}: {problem}")

    @classmethod
    def _folder(cls, params: ClipParams, ctx: Context) -> str:
        return str(Path(rec.index_folder(ctx.fill(params.path))) / ".clips")

    @classmethod
    def outputs(cls, params: ClipParams, ctx: Context) -> list[Output]:
        return [Output.file(ctx.output_path(cls._folder(params, ctx)))]

    @classmethod
    def lock_target(cls, params: ClipParams, ctx: Context) -> Path:
        return ctx.output_path(cls._folder(params, ctx))

    def __init__(self, params: ClipParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.enc = FrameEncoder("clip", params, bframes=False, log=ctx.log, low_delay=True)
        self.ring: rec.PacketRing | None = None
        self.clip: _Clip | None = None
        self.clips: list[Path] = []  # clips finished
        self.classes = set(params.classes) if params.classes else None
        self.pending: list[Event] = []  # triggering events not yet matched to their frame
        self.pre = self.post = self.longest = 0  # pre_roll, post_roll, max_length in encoder ticks

    def open(self, stream: StreamInfo) -> None:
        super().open(stream)
        self.enc.open(stream)

    def event(self, event: Event) -> None:
        p = self.params
        if p.events is None or event.type not in p.events:
            return
        if self.classes is not None and event.get("class_name") not in self.classes:
            return
        if p.zones is not None and event.get("zone") not in p.zones:
            return
        self.pending.append(event)

    def triggers(self, frame: Frame) -> list[dict]:
        """What triggers a clip at ``frame``: the triggering events (their JSON objects) of this frame
        (and camera events since the last frame) with ``events``, else the frame's triggering
        detections as records (class_name, conf, xyxy)."""
        if self.params.events is not None:
            hits = [e.to_dict() for e in self.pending if e.pts is None or e.frame_index <= frame.index]
            self.pending = [e for e in self.pending if e.pts is not None and e.frame_index > frame.index]
            return hits
        det = frame.detections
        if not len(det):
            return []
        keep = det.conf >= self.params.min_conf
        if self.classes is not None:
            keep &= np.isin(det.class_name, list(self.classes))
        if not keep.any():
            return []
        return [r for r, k in zip(det.to_records(), keep) if k]

    def write(self, frame: Frame) -> None:
        if self.enc.encoder is None:
            self.enc.open(self.stream)
            try:
                encoder = self.enc.start(frame, self.params.path)
            except ValueError as exc:
                raise StreamcnnError(f"clip sink: cannot write {self.params.path}: {exc}") from None
            self.ring = rec.PacketRing(self.params.pre_roll + self.params.gop, encoder.time_base,
                                       self.params.ring_bytes)
            tb = encoder.time_base
            self.pre, self.post = round(self.params.pre_roll / tb), round(self.params.post_roll / tb)
            self.longest = round(self.params.max_length / tb)
            self.ctx.log.info("clip sink: clips of %s in %s, %g s before to %g s after each event", encoder.encoder,
                              self.path.parent, self.params.pre_roll, self.params.post_roll)
        assert self.ring is not None and self.enc.encoder is not None
        stamp = self.enc.ticks(frame)
        hits = self.triggers(frame)
        if self.clip is not None and stamp[0] > self.clip.end:
            self._finish()  # the post-roll has passed
        elif self.clip is not None and hits and stamp[0] - self.clip.start >= self.longest:
            self._finish()
        if hits and self.clip is None:
            self._begin(stamp[0] - self.pre, stamp[0] + self.post, frame)
        if hits:
            assert self.clip is not None
            self.clip.end = stamp[0] + self.post
            by_events = self.params.events is not None
            confs = [c for h in hits for c in (h.get("conf"), h.get("best_conf")) if isinstance(c, (int, float))]
            best = max(confs) if confs else None  # events of zones or cameras carry no score
            if self.clip.last_trigger < 0 or stamp[0] - self.clip.last_trigger > stamp[1] * 1.5:
                self.clip.triggers.append({"pts": round(frame.pts, 6), "frame_index": frame.index,
                                           "time": _iso(frame.capture_time), "best_conf": best,
                                           "events" if by_events else "detections": []})
            run = self.clip.triggers[-1]
            run["events" if by_events else "detections"].extend(hits)
            run["last_pts"], run["last_frame_index"] = round(frame.pts, 6), frame.index
            if best is not None:
                run["best_conf"] = best if run["best_conf"] is None else max(run["best_conf"], best)
            self.clip.last_trigger = stamp[0]
        for packet in self.enc.encode(frame, stamp):
            self.ring.push(packet)
            self._write(packet)

    def _begin(self, start: int, end: int, frame: Frame) -> None:
        """Open a clip at ``start`` ticks (clamped to what the ring holds), writing the ring's packets."""
        assert self.ring is not None
        held = self.ring.since(start)
        later = [p.pts for p in held if p.pts >= start]
        start = min(later) if later else self.enc.last  # the first frame at or after `start`
        tb = self.enc.encoder.time_base
        wall = (frame.capture_time or time.time()) - float((self.enc.last - start) * tb)
        path = self._path(wall)
        try:
            file = rec.VideoFile(path, self.enc.encoder, fragmented=False, start=start)
        except OSError as exc:
            raise SinkWriteError.from_os_error("clip", path, exc) from None
        self.clip = _Clip(file, start, end, wall, frame.source)
        for packet in held:
            self._write(packet)

    def _path(self, wall: float) -> Path:
        return rec.free_path(self.ctx.output_path(rec.render(self.ctx.fill(self.params.path), self.ctx.pipeline, wall)))

    def _write(self, packet) -> None:
        clip = self.clip
        if clip is None:
            return
        if packet.pts > clip.end:  # packets come in pts order (no B-frames): the clip is complete
            self._finish()
            return
        try:
            clip.file.write(packet)
        except OSError as exc:
            clip.file.abandon()
            self.clip = None
            raise SinkWriteError("clip", clip.file.path, f"writing the clip failed ({os_reason(exc)})") from None

    def _finish(self) -> None:
        """Close the open clip and write its side-car."""
        clip, self.clip = self.clip, None
        if clip is None:
            return
        try:
            clip.file.close()
        except OSError as exc:
            raise SinkWriteError.from_os_error("clip", clip.file.path, exc) from None
        tb = self.enc.encoder.time_base
        last = clip.file.last_pts if clip.file.last_pts is not None else clip.start
        end = clip.file.end_pts if clip.file.end_pts is not None else clip.start
        record = {
            "pipeline": self.ctx.pipeline, "source": clip.source, "file": clip.file.path.name,
            "start": _iso(clip.wall), "start_epoch": round(clip.wall, 3),
            "first_pts": round(self.enc.seconds(clip.start), 6), "last_pts": round(self.enc.seconds(last), 6),
            "duration": round(float((end - clip.start) * tb), 6), "frames": clip.file.frames,
            "pre_roll": self.params.pre_roll, "post_roll": self.params.post_roll,
            "codec": self.enc.encoder.encoder, "bytes": clip.file.bytes, "triggers": clip.triggers,
        }
        side = clip.file.path.with_suffix(".json")
        tmp = side.with_name(f".{side.name}.tmp")
        try:
            tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, side)
        except OSError as exc:
            raise SinkWriteError.from_os_error("clip", side, exc) from None
        self.clips.append(clip.file.path)
        self.ctx.log.info("clip sink: wrote %s (%.1f s, %d trigger%s)", clip.file.path, record["duration"],
                          len(clip.triggers), "" if len(clip.triggers) == 1 else "s")

    def close(self) -> None:
        """Flush the encoder into the open clip (cut at its end) and finish it; release the lock."""
        try:
            encoder = self.enc.encoder
            if encoder is None:
                return
            try:
                for packet in encoder.flush():
                    self._write(packet)
                self._finish()
            finally:
                self.enc.close()
        finally:
            super().close()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch or time.time()).astimezone().isoformat(timespec="milliseconds")
