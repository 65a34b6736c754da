"""The OpenCV capture shared by the file and webcam sources (network streams use PyAV: stream.py).

`_Capture` wraps a ``cv2.VideoCapture`` so that ``close()`` from another thread never releases it
under a running ``read()``; `_LiveCaptureSource` is the base of the OpenCV live source (webcam):
a fresh `_Capture` on every ``open``, frames without pts (the reader stamps their arrival).
"""

from __future__ import annotations

import abc
import math
import threading
import time

import cv2
import numpy as np

from streamcnn import Context, Source, SourceError, SourceParams, redact, to_bgr3


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
    """The frame rate a capture reports when plausible (finite, above 0 and below 1000), else None."""
    return float(value) if math.isfinite(value) and 0 < value < 1000 else None


class _LiveCaptureSource(Source, abc.ABC):
    """An OpenCV live source (the webcam): a `_Capture` reopened on every ``open``."""

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
