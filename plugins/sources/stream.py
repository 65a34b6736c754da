"""Source type ``stream``: an IP camera or network stream (RTSP, HTTP, RTMP, SRT, UDP …) read with
PyAV (FFmpeg), with transport and timeouts set per open (live, reconnected).

Why PyAV and not ``cv2.VideoCapture``: OpenCV's FFmpeg backend holds one process-wide mutex for the
whole of every open, so one camera that accepts TCP and never answers held every other camera's
open for its full ``open_timeout`` (measured: three such cameras kept a healthy one at 0 frames for
153 s), and its options can only be passed through a process-wide environment variable. PyAV takes
options per container and opens concurrently; it also gives each frame the stream's own pts.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import av
import numpy as np

from streamcnn import Context, Field, Source, SourceError, SourceParams, redact

from .uri import uri_mistake, uri_scheme

#: Seconds a blocked demux may take past ``read_timeout`` before PyAV's interrupt fires: measured,
#: a frozen server makes the demux raise after about 2× the read timeout (research/deps.md 2.4).
READ_TIMEOUT_FACTOR = 2.0


class _Container:
    """A PyAV input container whose ``close()`` is safe while another thread is inside ``read()``.

    ``close()`` during a ``read()`` only marks it; the reading thread closes the container as soon
    as its demux returns (within about ``READ_TIMEOUT_FACTOR`` × the read timeout).
    """

    def __init__(self, container: Any) -> None:
        self.container = container
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self._frames: Iterator[tuple[Any, float]] = self._decode()
        self._lock = threading.Lock()
        self._reading = False
        self._closed = False
        self.bad_packets = 0  # packets the decoder refused (skipped, the stream goes on)

    def _decode(self) -> Iterator[tuple[Any, float]]:
        """``(av.VideoFrame, arrival)``: ``arrival`` is ``time.time()`` when the packet was demuxed."""
        for packet in self.container.demux(self.stream):
            arrival = time.time()
            try:
                frames = packet.decode()
            except (av.error.InvalidDataError, av.error.PatchWelcomeError, ValueError):
                self.bad_packets += 1  # a damaged packet: the decoder resyncs at the next keyframe
                continue
            for frame in frames:
                yield frame, arrival

    def read(self) -> tuple[Any, float] | None:
        """The next decoded frame and its arrival time, or None (ended, timed out, or closed)."""
        with self._lock:
            if self._closed:
                return None
            self._reading = True
        item = None
        try:
            item = next(self._frames, None)
        except (av.error.FFmpegError, OSError, EOFError):
            item = None  # a timeout (ExitError) or a broken connection: the reader decides what it was
        finally:
            with self._lock:
                self._reading = False
                close_now = self._closed
            if close_now:
                self._close_container()
        return None if close_now else item

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._reading:
                return  # the reading thread closes it when its demux returns
        self._close_container()

    def _close_container(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - best effort, nothing to report to anyone
            pass


class NetworkStreamSource(Source):
    """An IP camera or stream (RTSP, HTTP/MJPEG, RTMP, SRT, UDP, … any ``scheme://`` URL but
    ``file://``) read with PyAV; live.

    Each ``open`` is independent of every other camera's (no process-wide lock or environment
    variable): options go to FFmpeg per container (``rtsp_transport``), with ``open_timeout`` and
    ``read_timeout`` in seconds (a frozen stream makes a read give up after about 2× the read
    timeout, so the default read timeout is ``stall_timeout / 2``).

    Frames: uint8 H×W×3 BGR; pts = the stream's own timestamp in seconds (``frame.time``), None
    when the stream gives none; meta ``capture_time`` = ``time.time()`` when its packet arrived.

    Raises (from ``open``):
        SourceError: the stream could not be opened: refused, not found, unauthorised (fails at
            once), or no answer within ``open_timeout`` (URL redacted in every message).
    """

    class Params(SourceParams):
        """Options of ``type: stream``."""

        transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport: tcp or udp")
        open_timeout: float = Field(10.0, gt=0, description="seconds to wait for the stream to open")
        read_timeout: float | None = Field(
            None, gt=0, description="seconds to wait for data per read (default stall_timeout / 2)"
        )

    live = True
    priority = 40

    def __init__(self, params: SourceParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self._c: _Container | None = None
        self._fps: float | None = None
        self._lock = threading.Lock()
        self._last_time: float | None = None

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        scheme = uri_scheme(uri)
        return scheme is not None and scheme != "file"

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """A mistyped URL (a misspelt scheme, a port that is not a number, no host) is a ValueError
        with the fix (`uri_mistake`), at validate time rather than as endless reconnects."""
        mistake = uri_mistake(params.uri)
        if mistake is not None:
            raise ValueError(mistake)

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def open_timeout(self) -> float:
        return float(getattr(self.params, "open_timeout", 10.0))

    @property
    def read_timeout(self) -> float:
        value = getattr(self.params, "read_timeout", None)
        return float(value) if value else max(0.1, self.params.stall_timeout / READ_TIMEOUT_FACTOR)

    def ffmpeg_options(self) -> dict[str, str]:
        """The FFmpeg options this stream is opened with (``av.open(..., options=...)``)."""
        url = str(self.params.uri).strip().lower()
        opts: dict[str, str] = {}
        if url.startswith(("rtsp://", "rtsps://")):
            opts["rtsp_transport"] = getattr(self.params, "transport", "tcp")
        return opts

    def open(self) -> None:
        self.close()
        t0 = time.monotonic()
        url = str(self.params.uri).strip()
        try:
            container = av.open(url, options=self.ffmpeg_options(), timeout=(self.open_timeout, self.read_timeout))
        except Exception as exc:  # noqa: BLE001 - every failure becomes one SourceError
            raise SourceError(redact(self._describe_failure(exc, time.monotonic() - t0))) from None
        if not container.streams.video:
            container.close()
            raise SourceError(redact(f"stream {self.id} has no video track"))
        c = _Container(container)
        rate = c.stream.average_rate or c.stream.guessed_rate
        self._fps = float(rate) if rate and 0 < float(rate) < 1000 else None
        self._last_time = None
        with self._lock:
            self._c = c

    def read(self) -> tuple[np.ndarray, float | None, dict[str, Any]] | None:
        with self._lock:
            c = self._c
        if c is None:
            return None
        item = c.read()
        if item is None:
            return None
        frame, arrival = item
        pts = frame.time
        if pts is None and self._last_time is not None:  # no timestamp on this frame: one frame on
            pts = self._last_time + 1.0 / (self._fps or 25.0)
        if pts is not None:
            self._last_time = float(pts)
        return frame.to_ndarray(format="bgr24"), pts, {"capture_time": arrival}

    def close(self) -> None:
        with self._lock:
            c, self._c = self._c, None
        if c is not None:
            c.close()

    def _describe_failure(self, exc: BaseException, elapsed: float) -> str:
        """Why ``open`` failed, from the FFmpeg error (its text without the URL) and how long it took."""
        code = getattr(exc, "errno", None)
        text = getattr(exc, "strerror", None) or type(exc).__name__
        if elapsed >= 0.8 * self.open_timeout:
            return (f"cannot open stream {self.id}: no answer within {self.open_timeout:g} s (open_timeout; "
                    "server down or unreachable)")
        if code == errno.ECONNREFUSED:
            return f"could not open stream {self.id} (connection refused: nothing listens on that host and port)"
        if isinstance(exc, av.error.HTTPUnauthorizedError) or "401" in str(text):
            return f"could not open stream {self.id} (unauthorised: check the user name and password)"
        if isinstance(exc, av.error.HTTPNotFoundError) or "404" in str(text):
            return f"could not open stream {self.id} (stream not found: check the path)"
        return (f"could not open stream {self.id} ({text}; check host, port, path and credentials)")
