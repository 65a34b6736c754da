"""Built-in sink ``video``: H.264 (or another codec) recordings through PyAV, crash-safe, segmented.

Data flow: frame → `FrameEncoder` (size, pts in the encoder's ticks) → packets → the current
`streamcnn.recording.VideoFile`; with ``segment`` set, a keyframe is forced at each boundary and
the packets from it on go to a new file, listed in the folder's ``segments.jsonl`` index, and the
oldest segments beyond ``retain``/``max_bytes`` are deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

from streamcnn import Context, Field, Frame, Output, SinkWriteError, StreamcnnError, StreamInfo
from streamcnn import recording as rec

from .encoding import EncoderParams, FrameEncoder
from .files import FileSink, os_reason, probe_file, write_problem


class VideoParams(EncoderParams):
    path: str = Field(description="output file (.mp4, .mkv, .mov, .webm, .avi); {pipeline} and, with segment, "
                      "{start:%Y-%m-%d_%H-%M-%S} (the segment's wall-clock start) are filled in; folders are created")
    fragmented: bool | None = Field(None, description="crash-safe fragmented mp4 / clustered mkv (default: for "
                                    "live sources); false: finalised with +faststart")
    fragment: float = Field(2.0, gt=0, le=60, description="seconds between fragments (what a crash can lose)")
    segment: float | str | None = Field(None, description="start a new file every this long (600, '10min')")
    retain: float | str | None = Field(None, description="delete segments older than this ('7d')")
    max_bytes: int | str | None = Field(None, description="delete the oldest segments above this total ('50GB')")


def _durations(params: VideoParams) -> tuple[float | None, float | None, int | None]:
    """(segment s, retain s, max_bytes) parsed; ValueError with the option's name."""
    out = []
    for key, parse in (("segment", rec.parse_duration), ("retain", rec.parse_duration),
                       ("max_bytes", rec.parse_bytes)):
        value = getattr(params, key)
        try:
            out.append(None if value is None else parse(value))
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return out[0], out[1], out[2]


class VideoSink(FileSink):
    """Writes the processed frames to a video file: H.264 (libx264, yuv420p) in .mp4 by default.

    - Encoder: ``codec`` (h264, hevc, mpeg4, vp8, vp9, av1, mjpeg), ``crf`` or ``bitrate``,
      ``preset``, ``gop`` (s); ``device: auto`` takes NVIDIA's NVENC when it opens here. The log
      says which encoder writes which file.
    - Timestamps: each frame at its own pts (live recordings with dropped frames play at real
      speed; files keep their exact frame rate, frame count and duration).
    - Sizes: odd widths/heights get one black column/row on the right/bottom (4:2:0 video needs
      even sizes); a frame of another size mid-stream is resized to the first one (one warning).
    - Crash safety: ``fragmented`` (default for live sources) writes a fragment at least every
      ``fragment`` s and syncs it to disk, so after ``kill -9`` or a power cut the file plays up to
      the last fragment; otherwise the file is finalised at close with ``+faststart``.
    - Segments: ``segment: 10min`` starts a new file at a keyframe every 10 minutes, named from
      ``path`` (``{start:...}``), indexed in ``segments.jsonl``; ``retain``/``max_bytes`` delete
      the oldest.
    - Nothing lost silently: a write the OS refuses raises `SinkWriteError` naming the file; at
      close each file is synced, read back and its frame count compared with what was written.
    """

    Params = VideoParams

    @classmethod
    def check(cls, params: VideoParams, ctx: Context) -> None:
        """The options parse, the path template fits ``segment``, the folder can be written, and this
        PyAV can write the codec into the container (a test file is written)."""
        segment, retain, max_bytes = _durations(params)
        if (retain or max_bytes) and not segment:
            raise ValueError("retain and max_bytes delete old segments: set segment too (e.g. segment: 10min)")
        problem = rec.template_problem(params.path, segmented=segment is not None)
        if problem:
            raise ValueError(problem)
        ctx.check_writable(params.path if segment is None else cls._index(params, ctx))
        problem = rec.writer_problem(Path(params.path), params.settings())
        if problem:
            raise ValueError(f"cannot write {ctx.output_path(params.path)}: {problem}")

    @classmethod
    def _index(cls, params: VideoParams, ctx: Context) -> str:
        return str(Path(rec.index_folder(ctx.fill(params.path))) / rec.INDEX_NAME)

    @classmethod
    def outputs(cls, params: VideoParams, ctx: Context) -> list[Output]:
        if params.segment is None:
            return [Output.file(ctx.output_path(params.path))]
        return [Output.file(ctx.output_path(cls._index(params, ctx)))]

    @classmethod
    def lock_target(cls, params: VideoParams, ctx: Context) -> Path:
        return ctx.output_path(params.path if params.segment is None else cls._index(params, ctx))

    def __init__(self, params: VideoParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        try:
            self.segment, self.retain, self.max_bytes = _durations(params)
        except ValueError as exc:
            self.lock.release()
            raise StreamcnnError(f"video sink: {exc}") from None
        self.enc = FrameEncoder("video", params, bframes=params.fragmented is not True, log=ctx.log)
        self.fragmented = params.fragmented
        self.file: rec.VideoFile | None = None
        self.frames = 0  # frames encoded
        self.failed = False
        self.boundaries: dict[int, tuple[float, float]] = {}  # pts ticks of a new file's first frame → times
        self.segment_start = 0  # ticks of the current segment's first frame
        self.segment_ticks: int | None = None  # `segment` in encoder ticks
        self.index = rec.SegmentIndex(self.path.parent) if self.segment else None
        if self.index is not None:
            recovered = self.index.recover(rec.glob_of(ctx.fill(params.path), ctx.pipeline), "", rec.count_frames)
            for seg in recovered:
                ctx.log.warning("video sink: %s was left by a run that did not finish; indexed as incomplete "
                                "(%d frames)", self.index.folder / seg.path, seg.frames)
            self._retain(keep=set())

    def open(self, stream: StreamInfo) -> None:
        super().open(stream)
        self.enc.open(stream)
        if self.fragmented is None:
            self.fragmented = bool(getattr(stream, "live", False))

    def write(self, frame: Frame) -> None:
        if self.enc.encoder is None:
            self._start(frame)
        stamp = self.enc.ticks(frame)
        keyframe = False
        if not self.frames:
            self.boundaries[stamp[0]] = (frame.capture_time or time.time(), frame.pts)
            self.segment_start = stamp[0]
        elif self.segment_ticks is not None and stamp[0] - self.segment_start >= self.segment_ticks:
            keyframe = True
            self.boundaries[stamp[0]] = (frame.capture_time or time.time(), frame.pts)
            self.segment_start = stamp[0]
        packets = self.enc.encode(frame, stamp, keyframe)
        self.frames += 1
        self._write_packets(packets, frame.index)

    def _start(self, frame: Frame) -> None:
        """Open the encoder on the first frame, after checking the disk takes a write."""
        self.enc.open(self.stream)
        if self.fragmented is None:
            self.fragmented = False
        self.enc.bframes = not self.fragmented  # fragments: every frame on disk at the next fragment
        first = self._file_path(frame.capture_time or time.time())
        problem = probe_file(first)
        if problem:
            self.failed = True
            raise SinkWriteError("video", first, problem)
        first.unlink(missing_ok=True)
        try:
            encoder = self.enc.start(frame, first.name)
        except ValueError as exc:
            raise StreamcnnError(f"video sink: cannot write {first}: {exc}") from None
        if self.segment is not None:
            self.segment_ticks = round(self.segment / encoder.time_base)
        padded = ""
        if (encoder.width, encoder.height) != self.enc.size:
            padded = " (padded from {}x{})".format(*self.enc.size)
        self.ctx.log.info("video sink: %s with %s, %dx%d%s, %g fps, %s", self.path if self.index is None
                          else self.index.folder, encoder.encoder, encoder.width, encoder.height, padded,
                          self.enc.fps, "fragmented (crash-safe)" if self.fragmented else "finalised at close")

    def _file_path(self, start: float) -> Path:
        """The file of a recording (segment) starting at wall-clock ``start``; a name taken already
        (two segments in one second) gets ``-1``, ``-2`` ..."""
        if self.index is None:  # resumed after the process died: the old file stays, the next is NAME-1.mp4
            return rec.free_path(self.path) if self.ctx.resumed else self.path
        path = self.ctx.output_path(rec.render(self.ctx.fill(self.params.path), self.ctx.pipeline, start))
        return rec.free_path(path, self.file.path if self.file is not None else None)

    def _write_packets(self, packets: list, index: int) -> None:
        """Send packets to the current file, starting a new one at a segment boundary's keyframe."""
        for packet in packets:
            if packet.pts in self.boundaries and packet.is_keyframe:
                wall, pts = self.boundaries.pop(packet.pts)
                self._finish_file()
                path = self._file_path(wall)
                try:
                    self.file = rec.VideoFile(path, self.enc.encoder, bool(self.fragmented), self.params.fragment,
                                              start=packet.pts)
                except OSError as exc:
                    self.failed = True
                    raise SinkWriteError.from_os_error("video", path, exc) from None
                self.file.wall_start, self.file.source_pts = wall, pts
            if self.file is None:  # pragma: no cover - the first packet is the first frame's keyframe
                continue
            try:
                self.file.write(packet)
            except OSError as exc:
                self.failed = True
                self.file.abandon()
                raise SinkWriteError("video", self.file.path, f"the video writer refused frame {index} after "
                                     f"{self.file.frames} frames ({os_reason(exc)})") from None

    def _finish_file(self) -> None:
        """Close the current file, check it, index it (segments) and apply retention."""
        file, self.file = self.file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as exc:
            self.failed = True
            raise SinkWriteError("video", file.path, f"finishing the file failed after {file.frames} frames "
                                 f"({os_reason(exc)})") from None
        count = rec.count_frames(file.path)
        if count < 0:
            raise SinkWriteError("video", file.path, f"the finished file cannot be read back as a video after "
                                 f"{file.frames} frames were written ({self._why_failed(file.path)})")
        if count < file.frames:
            raise SinkWriteError("video", file.path, f"the finished file holds {count} of the {file.frames} frames "
                                 f"written ({self._why_failed(file.path)})")
        if self.index is not None:
            tb = self.enc.encoder.time_base
            duration = float((file.end_pts - file.first_pts) * tb) if file.end_pts is not None else 0.0
            try:
                self.index.append(rec.Segment(
                    str(file.path.relative_to(self.index.folder)), file.wall_start, file.wall_start + duration,
                    file.source_pts, duration, file.frames, file.bytes, self.enc.encoder.encoder))
            except OSError as exc:
                raise SinkWriteError.from_os_error("video", self.index.path, exc) from None
            self._retain(keep=set())

    def _retain(self, keep: set[str]) -> None:
        if self.index is None or (self.retain is None and self.max_bytes is None):
            return
        for rel in self.index.retain(self.retain, self.max_bytes, time.time(), keep):
            self.ctx.log.info("video sink: deleted %s (retention)", self.index.folder / rel)

    @staticmethod
    def _why_failed(path: Path) -> str:
        return write_problem(path.parent) or "the disk may be full, or the file too large for the file system"

    def close(self) -> None:
        """Flush the encoder, finish the file (synced, read back, indexed); release the lock."""
        try:
            encoder = self.enc.encoder
            if encoder is None:
                return
            try:
                if not self.failed:
                    self._write_packets(encoder.flush(), self.frames - 1)
                    self._finish_file()
                elif self.file is not None:
                    self.file.abandon()
            finally:
                self.enc.close()
        finally:
            super().close()
