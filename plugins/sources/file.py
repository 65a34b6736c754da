"""Source type ``file``: a video file (path, ``file://`` URI or bare registry name) read with
OpenCV's FFmpeg backend, every frame, with the frame's time in the file as pts."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import cv2
import numpy as np

from streamcnn import (
    Context,
    MediaNotFoundError,
    ModelNotFoundError,
    Source,
    SourceError,
    SourceParams,
    find_local,
    offline,
    redact,
    resolve_asset,
    suggest,
    to_bgr3,
)

from .capture import _Capture, _sane_fps
from .uri import _is_bare_name, _media_entry, _Missing, check_not_a_url, local_path, uri_scheme

log = logging.getLogger("streamcnn.sources")

#: A file whose decodable frames fall below this fraction of its stated frame count is warned about
#: (stated counts of some containers are estimates from the duration, off by a frame or so).
TRUNCATED_FRACTION = 0.98


def _video_message(name: str, exc: Exception) -> str:
    """The registry resolver's message, worded for a video file."""
    text = re.sub(r"^(model|media file|file)\b", "video file", str(exc))
    return text if text.startswith("video file") else f"video file {name!r}: {text}"


class VideoFileSource(Source):
    """A video file read with OpenCV's FFmpeg backend (not live: every frame, as fast as consumed).

    ``uri`` is a path or a ``file://`` URI; a relative path resolves against the YAML file's
    directory. Only a *bare* name without any directory part that is a media entry of the
    registry (``vtest.avi`` or ``vtest``) and not a file next to the YAML file is looked up in the
    registry (``STREAMCNN_ASSETS``, the cache, or a checked download); a path with a directory
    part must exist. ``pts`` is the frame's time in the file (``CAP_PROP_POS_MSEC``, counted from
    the first frame, so frame 0 has pts 0) when that is sane (finite, increasing), else the
    previous pts + 1/fps.

    A file that ends well before the frame count its header states (fewer than
    `TRUNCATED_FRACTION` of it, and at least 2 frames short: a truncated download, a recording cut
    off) is warned about once at its end, with both counts.

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
        self._path: Path | None = None
        self._stated = 0  # frame count the file's header states (0: unknown)

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
            hint = suggest(uri, ["pattern"])  # `patern`: the synthetic test pattern was meant
            hint = hint.replace("?", " (the synthetic test pattern)?") if hint else "."
            raise _Missing(redact(f"video file {uri} not found{hint} Looked in: {', '.join(dict.fromkeys(looked))}"))
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
            return resolve_asset(uri, ctx.config_dir, download=download)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(redact(_video_message(uri, exc))) from None

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """The file exists, or is a bare registry name that is local or downloadable; a mistyped
        or network URL (``rtsp//host``, ``rtsp://…`` with ``type: file``) says what to write."""
        uri = str(params.uri).strip()
        if not ctx.resolve(local_path(uri)).exists():
            check_not_a_url(uri, "file", "a local video file (a path or file:// URI)")
        path = cls.locate(params, ctx, download=False)
        if path is None:
            log.info("video file %s is not downloaded yet; it is fetched when the pipeline starts", redact(uri))
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
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self._stated = int(count) if math.isfinite(count) and count > 0 else 0
        self._path = path
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
            if self._cap is cap:  # the end of the file, not close() from another thread
                self._warn_if_short()
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

    def _warn_if_short(self) -> None:
        """At the end of the file: warn (once) when it ended well before its stated frame count."""
        stated, read = self._stated, self._index
        self._stated = 0
        if stated and read < stated * TRUNCATED_FRACTION and stated - read >= 2:
            self.ctx.log.warning(
                "video file %s ended after %d of the %d frames its header states: the file is probably "
                "truncated or damaged (the rest could not be decoded)", redact(str(self._path)), read, stated,
            )

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
