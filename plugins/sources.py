"""Built-in source types, registered through the ``streamcnn_source_types`` hook like any plugin.

===========  ======================================================  =====  ========================
type         ``uri``                                                 live   pts
===========  ======================================================  =====  ========================
``stream``   any ``scheme://`` but ``file://``: ``rtsp://``,         yes    reader clock
             ``http(s)://``, ``rtmp://``, ``srt://``, ``udp://`` …
``webcam``   ``0``, ``"1"``, ``/dev/video2``                         yes    reader clock
``pattern``  ``pattern``                                             no     index / fps
``images``   existing folder, or glob with ``*``, ``?`` or ``[``     no     index / fps
``file``     anything else: a video file path or ``file://`` URI;    no     file time
             a bare registry name (``vtest.avi``) is fetched
===========  ======================================================  =====  ========================

Source contract used by `streamcnn.io.reader.SourceReader` (also for third-party sources):

* ``open()`` starts a stream; ``open()`` after ``close()`` starts a *fresh* one (live sources are
  reconnected this way, on the same object).
* ``close()`` never blocks, may be called from any thread and more than once, also while
  another thread is stuck inside ``read()``. The built-in live sources then let the stuck
  ``read()`` release its own capture when it finally returns (`_Capture`), because releasing a
  ``cv2.VideoCapture`` under a running ``read()`` is not safe.
* ``read()`` returns ``(uint8 H×W×3 BGR image, pts seconds | None)`` or None at the end or on
  failure; it may raise. It may add a third item, a dict merged into ``Frame.meta`` (the
  ``images`` source gives ``{"file": "/path/of/image.png"}``). Every error message has
  credentials removed.
* ``check(params, ctx)`` (validate time, and before ``run``) raises ``ValueError`` for what can be
  known without opening: a missing video file, an image folder without images, a camera device
  that does not exist.
"""

from __future__ import annotations

import abc
import glob
import logging
import math
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import cv2
import numpy as np
from pydantic import field_validator

from streamcnn import Context, Field, Source, SourceError, SourceParams, hookimpl, to_bgr3
from streamcnn.errors import MediaNotFoundError, ModelNotFoundError
from streamcnn.models import find_local, lookup, offline, resolve
from streamcnn.redact import redact

__all__ = [
    "ImageFolderSource",
    "NetworkStreamSource",
    "PatternSource",
    "VideoFileSource",
    "WebcamSource",
    "streamcnn_source_types",
]

log = logging.getLogger("streamcnn.sources")

# OPENCV_FFMPEG_CAPTURE_OPTIONS is read by cv2 at every open but is global to the process.
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ffmpeg_env_lock = threading.Lock()

_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*)://")
_GLOB_CHARS = re.compile(r"[*?\[]")
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .bmp .dib .tif .tiff .webp .ppm .pgm .pbm .pnm .jp2 .exr .hdr .pic .sr .ras".split()
)


class _Capture:
    """A ``cv2.VideoCapture`` whose ``release()`` is safe while another thread is in ``read()``.

    ``release()`` during a ``read()`` only marks the capture; the reading thread releases it as
    soon as its ``read()`` returns (which cv2 guarantees eventually, after its read timeout).
    """

    def __init__(self, cap: cv2.VideoCapture) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._reading = False
        self._released = False

    def read(self) -> np.ndarray | None:
        """Next image as cv2 returns it, or None (failed, or released meanwhile)."""
        with self._lock:
            if self._released:
                return None
            self._reading = True
        try:
            ok, image = self.cap.read()
        finally:
            with self._lock:
                self._reading = False
                release_now = self._released
            if release_now:
                self.cap.release()
        return image if ok and not release_now else None

    def get(self, prop: int) -> float:
        with self._lock:
            return 0.0 if self._released else float(self.cap.get(prop))

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            if self._reading:
                return  # the reading thread releases it when its read() returns
        self.cap.release()


def _sane_fps(value: float) -> float | None:
    return float(value) if math.isfinite(value) and 0 < value < 1000 else None


def uri_scheme(uri: str | int) -> str | None:
    """The lower-case scheme of a ``scheme://...`` URI (``rtsp``, ``file`` …), else None."""
    m = _SCHEME.match(uri) if isinstance(uri, str) else None
    return m[1].lower() if m else None


def local_path(uri: str) -> str:
    """A local path from a ``uri``: ``file:///abs/x.mp4`` -> ``/abs/x.mp4`` (also ``file://localhost/…``;
    ``file://rel/x.mp4`` is taken as the relative path ``rel/x.mp4``); anything else unchanged."""
    text = uri.strip()
    if uri_scheme(text) != "file":
        return text
    rest = unquote(text[text.index("://") + 3:])
    if rest.lower().startswith("localhost/"):
        rest = rest[len("localhost"):]
    return rest


def _is_bare_name(uri: str) -> bool:
    """True for a plain file name without any directory part or scheme (``vtest.avi``, ``vtest``)."""
    text = uri.strip()
    return (bool(text) and uri_scheme(text) is None and "/" not in text and "\\" not in text
            and not text.startswith("~") and text not in (".", ".."))


def _media_entry(name: str):
    entry = lookup(name)
    return entry if entry is not None and entry.kind == "media" else None


class _Missing(ValueError):
    """What a source needs is not there (``open`` turns it into a `SourceError`)."""


def _video_message(name: str, exc: Exception) -> str:
    """The registry resolver's message, worded for a video file."""
    text = re.sub(r"^(model|media file|file)\b", "video file", str(exc))
    return text if text.startswith("video file") else f"video file {name!r}: {text}"


# ---------------------------------------------------------------------------------------------
class VideoFileSource(Source):
    """A video file read with OpenCV's FFmpeg backend (not live: every frame, as fast as consumed).

    ``uri`` is a path or a ``file://`` URI; a relative path resolves against the YAML file's
    directory. Only a *bare* name without any directory part that is a media entry of the
    registry (``vtest.avi`` or ``vtest``) and not a file next to the YAML file is looked up in the
    registry (``STREAMCNN_ASSETS``, the cache, or a checked download); a path with a directory
    part must exist. ``pts`` is the frame's time in the file (``CAP_PROP_POS_MSEC``, counted from
    the first frame, so frame 0 has pts 0) when that is sane (finite, increasing), else the
    previous pts + 1/fps.

    Raises (from ``open``; ``check`` raises the same messages as ``ValueError``):
        SourceError: the file does not exist (names the resolved path) or cannot be decoded.
    """

    class Params(SourceParams):
        """Options of ``type: file`` (only the common ones)."""

    live = False
    priority = -100  # catch-all: any other claim wins

    def __init__(self, params: SourceParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self._cap: _Capture | None = None
        self._fps: float | None = None
        self._index = 0
        self._last_ms = -1.0  # pts in ms of the previous frame, relative to the first
        self._first_ms: float | None = None
        self._last_pts: float | None = None

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        return isinstance(uri, str) and bool(uri.strip())

    @property
    def path(self) -> Path:
        """The local path ``uri`` names (``file://`` stripped, resolved against the YAML folder)."""
        return self.ctx.resolve(local_path(str(self.params.uri)))

    @property
    def fps(self) -> float | None:
        return self._fps

    @classmethod
    def locate(cls, params: SourceParams, ctx: Context, download: bool = True) -> Path | None:
        """The video file to open; None (only with ``download=False``) for a registry sample that is
        not local yet but will be downloaded.

        Raises:
            ValueError: missing file (names the resolved path), or a registry sample that is
                neither local nor downloadable.
        """
        uri = str(params.uri).strip()
        path = ctx.resolve(local_path(uri))
        if path.is_file():
            return path
        if path.is_dir():
            raise _Missing(redact(f"video file {uri} is a folder (resolved to {path}); for the images in it "
                                  "write `type: images`"))
        if path.exists():
            raise _Missing(redact(f"video file {uri} is not a file (resolved to {path})"))
        entry = _media_entry(uri) if _is_bare_name(uri) else None
        if entry is None and _is_bare_name(uri):
            found, looked = find_local(uri, ctx.config_dir)  # a bare name: STREAMCNN_ASSETS folders too
            if found is not None:
                return found
            raise _Missing(redact(f"video file {uri} not found. Looked in: {', '.join(dict.fromkeys(looked))}"))
        if entry is None:
            hint = ""
            if not _is_bare_name(uri) and uri_scheme(uri) is None and _media_entry(Path(uri).name) is not None:
                hint = f"; write just {Path(uri).name!r} for the registry sample"
            raise _Missing(redact(f"video file {uri} not found (resolved to {path}){hint}"))
        try:
            found, _ = find_local(uri, ctx.config_dir)
            if found is not None:
                return found
            if not download and entry.url and not offline():
                return None  # `run` downloads it (sha256-checked)
            return resolve(uri, ctx.config_dir, download=download)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(redact(_video_message(uri, exc))) from None

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """The file exists, or is a bare registry name that is local or downloadable."""
        path = cls.locate(params, ctx, download=False)
        if path is None:
            log.info("video file %s is not downloaded yet; it is fetched when the pipeline starts", params.uri)
            return
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            if not cap.isOpened():
                raise ValueError(redact(f"cannot open video file {path}: not a video, or an unsupported codec"))
        finally:
            cap.release()

    def open(self) -> None:
        self.close()
        try:
            path = self.locate(self.params, self.ctx)
        except ModelNotFoundError as exc:
            raise MediaNotFoundError(str(exc)) from None
        except _Missing as exc:
            raise SourceError(str(exc)) from None
        assert path is not None
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(redact(f"cannot open video file {path}: not a video, or an unsupported codec"))
        self._cap = _Capture(cap)
        self._fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        self._index = 0
        self._last_ms = -1.0
        self._first_ms = None
        self._last_pts = None

    def read(self) -> tuple[np.ndarray, float | None] | None:
        cap = self._cap
        if cap is None:
            return None
        image = cap.read()
        if image is None:
            return None
        ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        if self._index == 0 and math.isfinite(ms) and ms >= 0:
            # some containers (AVI) report the time of the *next* frame: count from the first
            self._first_ms = ms
        rel = ms - self._first_ms if self._first_ms is not None else math.nan
        if math.isfinite(rel) and (rel > self._last_ms or (self._index == 0 and rel == 0)):
            pts = rel / 1000.0
            self._last_ms = rel
        elif self._last_pts is not None:
            pts = self._last_pts + 1.0 / (self._fps or 25.0)
            self._last_ms = pts * 1000.0
        else:
            pts = self._index / (self._fps or 25.0)
        self._last_pts = pts
        self._index += 1
        return to_bgr3(image), pts

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


# ---------------------------------------------------------------------------------------------
class ImageFolderSource(Source):
    """Still images from a folder (files with an image extension) or a glob, sorted by name.

    Unreadable images are skipped with a warning. Grayscale and 4-channel images become uint8
    H×W×3 BGR (alpha dropped). ``pts = index / fps`` in seconds, index counting delivered images.
    ``frame.meta["file"]`` is the image's path (str).

    Raises (from ``open``; ``check`` raises the same messages as ``ValueError``):
        SourceError: the folder does not exist or no image file matches.
    """

    class Params(SourceParams):
        """Options of ``type: images``."""

        fps: float = Field(25.0, gt=0, description="frame rate in frames/s used for pts = index / fps")

    live = False
    priority = 10

    def __init__(self, params: SourceParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        if not isinstance(uri, str) or uri_scheme(uri) not in (None, "file"):
            return False
        path = local_path(uri)
        return bool(_GLOB_CHARS.search(path)) or Path(path).expanduser().is_dir()

    @property
    def fps(self) -> float | None:
        return float(getattr(self.params, "fps", 25.0))

    @classmethod
    def list_files(cls, params: SourceParams, ctx: Context) -> list[Path]:
        """The image files, sorted by name.

        Raises:
            ValueError: the folder does not exist, or nothing matches.
        """
        uri = str(params.uri).strip()
        pattern = local_path(uri)
        target = ctx.resolve(pattern)
        if target.is_dir():
            files = sorted((p for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                           key=lambda p: p.name)
            if not files:
                raise _Missing(f"no image files in folder {uri} (resolved to {target}; looked for .png, .jpg, "
                               ".jpeg, .bmp, .tif, .webp …)")
            return files
        if _GLOB_CHARS.search(pattern):
            files = sorted(Path(p) for p in glob.glob(str(target)) if Path(p).is_file())
            if not files:
                raise _Missing(f"no image files match {uri} (resolved to {target})")
            return files
        what = "is not a folder" if target.exists() else "not found"
        raise _Missing(f"image folder {uri} {what} (resolved to {target})")

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """The folder or glob matches at least one file."""
        cls.list_files(params, ctx)

    def open(self) -> None:
        try:
            self._files = self.list_files(self.params, self.ctx)
        except _Missing as exc:
            raise SourceError(str(exc)) from None
        self._pos = 0
        self._index = 0

    def read(self) -> tuple[np.ndarray, float | None, dict[str, Any]] | None:
        while self._pos < len(self._files):
            path = self._files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # gray/BGRA/16-bit -> uint8 BGR
            if image is None or image.size == 0:
                self.ctx.log.warning("skipping unreadable image %s", path)
                continue
            pts = self._index / self.fps
            self._index += 1
            return to_bgr3(image), pts, {"file": str(path)}
        return None

    def close(self) -> None:
        self._pos = len(self._files)


# ---------------------------------------------------------------------------------------------
class PatternSource(Source):
    """A synthetic, deterministic test pattern (not live): colour bars, a box moving one step per
    frame and the frame number as text. ``pts = index / fps`` seconds; ends after ``frames``.
    """

    class Params(SourceParams):
        """Options of ``type: pattern``."""

        size: str = Field("640x480", description="frame size WIDTHxHEIGHT in pixels, e.g. 640x480")
        fps: float = Field(25.0, gt=0, description="frame rate in frames/s (pts = index / fps)")
        frames: int | None = Field(250, ge=1, description="number of frames (≥ 1); null = endless")
        realtime: bool = Field(False, description="pace frames at fps on the wall clock, like a camera "
                               "(default: as fast as they are consumed; pts follow fps either way)")

        @field_validator("size")
        @classmethod
        def _check_size(cls, v: str) -> str:
            m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", v)
            if not m:
                raise ValueError(f"expected a frame size WIDTHxHEIGHT in pixels, e.g. '640x480', got {v!r}")
            if int(m[1]) < 16 or int(m[2]) < 16:
                raise ValueError(f"frame size {v.strip()!r} is too small: WIDTHxHEIGHT must both be ≥ 16 pixels, "
                                 "e.g. '640x480'")
            return f"{int(m[1])}x{int(m[2])}"

    live = False
    priority = 20
    BARS_BGR = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0),
                (255, 0, 255), (0, 0, 255), (255, 0, 0), (0, 0, 0)]

    def __init__(self, params: SourceParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        w, h = (int(v) for v in str(getattr(params, "size", "640x480")).split("x"))
        self.width, self.height = w, h
        self._index = 0
        self._background: np.ndarray | None = None

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        return isinstance(uri, str) and uri.strip().lower() == "pattern"

    @property
    def fps(self) -> float | None:
        return float(getattr(self.params, "fps", 25.0))

    def open(self) -> None:
        bg = np.zeros((self.height, self.width, 3), np.uint8)
        edges = np.linspace(0, self.width, len(self.BARS_BGR) + 1).astype(int)
        for colour, x0, x1 in zip(self.BARS_BGR, edges[:-1], edges[1:], strict=False):
            bg[:, x0:x1] = colour
        self._background = bg
        self._index = 0

    def render(self, index: int) -> np.ndarray:
        """The uint8 H×W×3 BGR pattern image of frame ``index`` (pure function of index and size)."""
        if self._background is None:
            self.open()
        assert self._background is not None
        img = self._background.copy()
        side = max(8, min(self.width, self.height) // 6)
        span_x, span_y = self.width - side, self.height - side
        # bounce: triangle waves with different periods
        x = abs((index * 4) % (2 * span_x) - span_x) if span_x > 0 else 0
        y = abs((index * 3) % (2 * span_y) - span_y) if span_y > 0 else 0
        cv2.rectangle(img, (x, y), (x + side, y + side), (40, 40, 40), -1)
        cv2.rectangle(img, (x, y), (x + side, y + side), (255, 255, 255), 2)
        scale = max(0.4, self.height / 400)
        cv2.putText(img, f"{index:06d}", (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), max(1, int(4 * scale)), cv2.LINE_AA)
        cv2.putText(img, f"{index:06d}", (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
        return img

    def read(self) -> tuple[np.ndarray, float | None] | None:
        frames = getattr(self.params, "frames", 250)
        if self._background is None or (frames is not None and self._index >= frames):
            return None
        i = self._index
        self._index += 1
        if getattr(self.params, "realtime", False):
            if i == 0:
                self._t0 = time.monotonic()
            delay = self._t0 + i / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return self.render(i), i / self.fps

    def close(self) -> None:
        self._background = None


# ---------------------------------------------------------------------------------------------
class _LiveCaptureSource(Source, abc.ABC):
    """Common part of webcam and network stream: a `_Capture` reopened on every ``open``."""

    live = True

    def __init__(self, params: SourceParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self._cap: _Capture | None = None
        self._fps: float | None = None
        self._lock = threading.Lock()

    @property
    def fps(self) -> float | None:
        return self._fps

    @abc.abstractmethod
    def _make_capture(self) -> cv2.VideoCapture:
        """A new ``cv2.VideoCapture`` for this camera (not yet checked)."""

    @abc.abstractmethod
    def _describe_failure(self, elapsed: float) -> str:
        """Why opening failed; ``elapsed`` is how long the failed open took in seconds."""

    def open(self) -> None:
        self.close()
        t0 = time.monotonic()
        cap = self._make_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(redact(self._describe_failure(time.monotonic() - t0)))
        self._fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))  # before publishing: close() may release it after
        with self._lock:
            self._cap = _Capture(cap)

    def read(self) -> tuple[np.ndarray, float | None] | None:
        with self._lock:
            cap = self._cap
        if cap is None:
            return None
        image = cap.read()
        return None if image is None else (to_bgr3(image), None)

    def close(self) -> None:
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class WebcamSource(_LiveCaptureSource):
    """A local camera by index (``0``) or device path (``/dev/video0``); live, reconnected.

    Raises (from ``open``):
        SourceError: ``cannot open camera 0 ...`` when the device is missing or busy (fails fast).
    """

    class Params(SourceParams):
        """Options of ``type: webcam`` (requested capture settings; the driver may ignore them)."""

        width: int | None = Field(None, ge=1, description="requested width in pixels")
        height: int | None = Field(None, ge=1, description="requested height in pixels")
        fps: float | None = Field(None, gt=0, description="requested frame rate in frames/s")

    priority = 30

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        if isinstance(uri, bool):
            return False
        if isinstance(uri, int):
            return uri >= 0
        uri = uri.strip()
        return uri.isdigit() or uri.startswith("/dev/video")

    @staticmethod
    def device_of(uri: str | int) -> int | str:
        """The camera index (int) or device path (str) that ``uri`` names."""
        return int(uri) if isinstance(uri, int) or str(uri).strip().isdigit() else str(uri).strip()

    def _device(self) -> int | str:
        return self.device_of(self.params.uri)

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """A device path must exist; on Linux, camera index N needs ``/dev/videoN``."""
        dev = cls.device_of(params.uri)
        if isinstance(dev, int) and not sys.platform.startswith("linux"):
            return  # no device files to look at: `run` reports a missing camera
        path = f"/dev/video{dev}" if isinstance(dev, int) else dev
        if isinstance(dev, str) and not dev.startswith("/dev/"):
            return
        if os.path.exists(path):
            return
        present = sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))
        found = f"cameras found: {', '.join(present)}" if present else "no /dev/video* device found"
        what = f"camera {dev}: {path}" if isinstance(dev, int) else f"camera device {path}"
        raise ValueError(f"{what} does not exist ({found}); a USB camera must be plugged in "
                         "(and visible to this machine or container) before starting")

    def _make_capture(self) -> cv2.VideoCapture:
        backend = cv2.CAP_V4L2 if os.name == "posix" and hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self._device(), backend)
        if cap.isOpened():
            p = self.params
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, getattr(p, "width", None)),
                                (cv2.CAP_PROP_FRAME_HEIGHT, getattr(p, "height", None)),
                                (cv2.CAP_PROP_FPS, getattr(p, "fps", None))):
                if value is not None:
                    cap.set(prop, float(value))
        return cap

    def _describe_failure(self, elapsed: float) -> str:
        dev = self._device()
        path = f"/dev/video{dev}" if isinstance(dev, int) else dev
        exists = "exists" if os.path.exists(path) else "does not exist"
        return f"cannot open camera {dev} ({path} {exists}; missing, busy or not a capture device)"


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


# ---------------------------------------------------------------------------------------------
@hookimpl
def streamcnn_source_types() -> dict[str, type[Source]]:
    """The built-in source types."""
    return {
        "file": VideoFileSource,
        "images": ImageFolderSource,
        "webcam": WebcamSource,
        "stream": NetworkStreamSource,
        "pattern": PatternSource,
    }
