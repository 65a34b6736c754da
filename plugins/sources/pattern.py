"""Source type ``pattern``: a synthetic, deterministic test pattern (colour bars, a moving box,
the frame number), optionally paced at its frame rate like a camera."""

from __future__ import annotations

import re
import time

import cv2
import numpy as np
from pydantic import field_validator

from streamcnn import Context, Field, Source, SourceParams, redact

from .uri import check_not_a_url


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

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """``type: pattern`` makes its own frames: its ``uri`` must be ``pattern``."""
        if not cls.claims(params.uri):
            check_not_a_url(params.uri, "pattern", "nothing (it makes its own frames)")
            raise ValueError(f"type: pattern makes its own frames: write `uri: pattern` (got "
                             f"{redact(str(params.uri).strip()) or 'an empty uri'})")

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
