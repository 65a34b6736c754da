"""`VideoFile`: one output file (mp4, mkv, webm, avi, ts) of packets from a `VideoEncoder`.

Two ways to finish an mp4:

- fragmented (``fragmented=True``, the default for live sources): the index is written in small
  pieces (a ``moof`` fragment at least every ``fragment`` seconds; ISO/IEC 14496-12 §8.8) and each
  is flushed to the OS and synced to disk as it is written, so after ``kill -9`` or a power cut the
  file plays up to the last fragment. Matroska gets the same with a cluster every ``fragment`` s.
- finalised (``fragmented=False``): one index at the end, moved to the front at ``close``
  (``+faststart``), so browsers start playing before the whole file has loaded. A file cut off
  before ``close`` does not play.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from .encoder import VideoEncoder, av

#: file extensions → FFmpeg muxers
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
#: containers whose files play after a crash when written fragmented
FRAGMENTABLE = {"mp4", "mov", "matroska", "webm"}


def muxer_for(path: Path) -> str:
    """The FFmpeg muxer for ``path``'s extension.

    Raises:
        ValueError: no extension, or one that is not a video container written here.
    """
    ext = path.suffix.lower()
    if ext not in CONTAINERS:
        what = "the path has no extension" if not ext else f"{ext} is not a video container"
        raise ValueError(f"{what}; end the path in {', '.join(CONTAINERS)}")
    return CONTAINERS[ext]


def container_options(muxer: str, fragmented: bool, fragment: float) -> dict[str, str]:
    """FFmpeg muxer options for a fragmented (crash-safe) or finalised file."""
    if muxer in ("mp4", "mov"):
        if fragmented:  # a fragment at each keyframe and at least every `fragment` s; flushed at once
            return {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                    "frag_duration": str(int(fragment * 1e6)), "flush_packets": "1"}
        return {"movflags": "+faststart", "flush_packets": "1"}
    if muxer in ("matroska", "webm") and fragmented:
        return {"cluster_time_limit": str(int(fragment * 1000)), "flush_packets": "1"}
    return {"flush_packets": "1"}  # each packet handed to the OS at once: a full disk shows at that frame


class VideoFile:
    """Packets of one encoder written to one file, their timestamps shifted so the file starts at 0.

    Args:
        path: the file (its folder must exist); the extension picks the container (`CONTAINERS`).
        encoder: the `VideoEncoder` whose packets are written (its stream is the template).
        fragmented: write a crash-safe fragmented file (see the module docstring).
        fragment: seconds between fragments (and disk syncs) when ``fragmented``.
        start: the pts (encoder ticks) that becomes time 0 of the file; packets before it (a
            keyframe before a clip's start) are written with negative timestamps, which the mp4
            edit list hides, so the file's first shown frame is the one at ``start``.

    Attributes:
        frames: packets written.
        first_pts, last_pts, end_pts: the first packet's pts, the latest pts and the latest pts +
            its duration (ticks, encoder time base, before the shift), or None before any packet.
        bytes: the file's size after ``close``.

    Raises:
        ValueError: an unknown extension, or the container cannot hold the encoder's codec.
        OSError: the file cannot be created (``av.error`` errors are OSErrors with ``errno``).
    """

    def __init__(self, path: Path, encoder: VideoEncoder, fragmented: bool, fragment: float = 2.0,
                 start: int = 0) -> None:
        self.path = Path(path)
        self.muxer = muxer_for(self.path)
        self.fragmented = fragmented and self.muxer in FRAGMENTABLE
        self.fragment = fragment
        self.encoder = encoder
        self.start = start
        self.frames = 0
        self.first_pts: int | None = None
        self.end_pts: int | None = None
        self.last_pts: int | None = None
        self.bytes = 0
        opts = container_options(self.muxer, self.fragmented, fragment)
        self._out = av.open(str(self.path), "w", format=self.muxer, options=opts)
        try:
            self._stream = self._out.add_stream_from_template(encoder.stream)
        except ValueError as exc:
            self._out.close()
            self.path.unlink(missing_ok=True)
            raise ValueError(f"{self.path.suffix} files cannot hold {encoder.encoder} video ({exc})") from None
        self._synced = time.monotonic()
        self._closed = False

    def write(self, packet: av.Packet) -> None:
        """Mux one packet of the encoder (not changed: a copy sharing its data gets the shifted
        timestamps). Fragmented files are synced to disk every ``fragment`` seconds.

        Raises:
            OSError: the write failed (a full disk: ``av.error.OSError`` with errno 28).
        """
        if packet.pts is None:  # an empty flush packet
            return
        out = av.Packet(packet)
        out.time_base = packet.time_base
        out.pts = packet.pts - self.start
        out.dts = (packet.dts if packet.dts is not None else packet.pts) - self.start
        out.duration = packet.duration
        out.is_keyframe = packet.is_keyframe
        out.stream = self._stream
        self._out.mux(out)
        if self.first_pts is None:
            self.first_pts = packet.pts
        self.end_pts = max(self.end_pts or packet.pts, packet.pts + (packet.duration or 0))
        self.last_pts = max(self.last_pts if self.last_pts is not None else packet.pts, packet.pts)
        self.frames += 1
        if self.fragmented and time.monotonic() - self._synced >= self.fragment:
            self._sync()

    def _sync(self) -> None:
        """Sync what the muxer handed to the OS to disk (survives a power cut, not only a kill)."""
        self._synced = time.monotonic()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Finish the file (trailer, faststart), sync it to disk and note its size. Idempotent.

        Raises:
            OSError: finishing or syncing failed.
        """
        if self._closed:
            return
        self._closed = True
        self._out.close()
        self._sync()
        self.bytes = self.path.stat().st_size

    def abandon(self) -> None:
        """Close after a failed write, ignoring further errors (the file keeps what it has)."""
        if not self._closed:
            self._closed = True
            try:
                self._out.close()
            except (OSError, av.FFmpegError):
                pass


def count_frames(path: Path) -> int:
    """Video packets in ``path``, counted by demuxing (no decoding); -1 when it cannot be opened."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return -1
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.FFmpegError, OSError):
        return -1
