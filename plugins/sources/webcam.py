"""Source type ``webcam``: a local camera by index or ``/dev/video*`` path (live, reconnected)."""

from __future__ import annotations

import glob
import os
import sys

import cv2

from streamcnn import Context, Field, SourceParams, redact

from .capture import _LiveCaptureSource
from .uri import check_not_a_url


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
        """A device path must exist; on Linux, camera index N needs ``/dev/videoN``; a URL (mistyped or
        not) says what to write."""
        check_not_a_url(params.uri, "webcam", "a local camera: an index such as 0, or a /dev/video* path")
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
        what = f"camera {dev}: {path}" if isinstance(dev, int) else f"camera device {redact(path)}"
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
