"""Source type ``stream``: an IP camera or network stream (RTSP, HTTP, RTMP, SRT, UDP …) through
OpenCV's FFmpeg backend, with transport and timeouts set per open (live, reconnected)."""

from __future__ import annotations

import os
import threading
from typing import Literal

import cv2

from streamcnn import Field, SourceParams

from .capture import _LiveCaptureSource
from .uri import uri_scheme

# OPENCV_FFMPEG_CAPTURE_OPTIONS is read by cv2 at every open but is global to the process.
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ffmpeg_env_lock = threading.Lock()


class NetworkStreamSource(_LiveCaptureSource):
    """An IP camera or stream (RTSP, HTTP/MJPEG, RTMP, SRT, UDP, … any ``scheme://`` URL but
    ``file://``) through OpenCV's FFmpeg backend; live.

    Before each open it sets ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (transport, socket timeout in µs)
    under a process-wide lock, and passes open/read timeouts in ms. cv2's ``read()`` gives up
    after about 3× the read timeout, so the default read timeout is ``stall_timeout / 3``.

    Raises (from ``open``):
        SourceError: the stream could not be opened: refused or not found (fails at once), or no
            answer within ``open_timeout`` (URL redacted).
    """

    class Params(SourceParams):
        """Options of ``type: stream``."""

        transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport: tcp or udp")
        open_timeout: float = Field(10.0, gt=0, description="seconds to wait for the stream to open")
        read_timeout: float | None = Field(
            None, gt=0, description="seconds cv2 waits for data per read (default stall_timeout / 3)"
        )

    priority = 40

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        scheme = uri_scheme(uri)
        return scheme is not None and scheme != "file"

    @property
    def open_timeout(self) -> float:
        return float(getattr(self.params, "open_timeout", 10.0))

    @property
    def read_timeout(self) -> float:
        value = getattr(self.params, "read_timeout", None)
        return float(value) if value else max(0.1, self.params.stall_timeout / 3)

    def ffmpeg_options(self) -> str:
        """The ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` value used at open (``key;value|key;value``)."""
        url = str(self.params.uri).strip().lower()
        opts = []
        if url.startswith(("rtsp://", "rtsps://")):
            opts.append(f"rtsp_transport;{getattr(self.params, 'transport', 'tcp')}")
        opts.append(f"timeout;{int(max(self.open_timeout, self.read_timeout) * 1e6)}")
        return "|".join(opts)

    def _make_capture(self) -> cv2.VideoCapture:
        props = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        with _ffmpeg_env_lock:
            previous = os.environ.get(_FFMPEG_ENV)
            os.environ[_FFMPEG_ENV] = self.ffmpeg_options()
            try:
                return cv2.VideoCapture(str(self.params.uri).strip(), cv2.CAP_FFMPEG, props)
            finally:
                if previous is None:
                    os.environ.pop(_FFMPEG_ENV, None)
                else:
                    os.environ[_FFMPEG_ENV] = previous

    def _describe_failure(self, elapsed: float) -> str:
        if elapsed >= 0.8 * self.open_timeout:
            return (f"cannot open stream {self.id}: no answer within {self.open_timeout:g} s (open_timeout; "
                    "server down or unreachable)")
        return (f"could not open stream {self.id} (connection refused or stream not found; "
                "check host, port, path and credentials)")
