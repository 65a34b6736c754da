"""`Frame`: one decoded video frame travelling through a pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .detections import Detections


@dataclass
class Frame:
    """A frame and everything the stages learnt about it.

    Attributes:
        image: uint8 (H, W, 3) BGR pixels. Stages may replace it (e.g. with an edge map).
        index: 0-based frame number within its source; never reset, also not after a reconnect.
        pts: presentation time in seconds, strictly increasing within a source (file time for
            files and folders, seconds since the source started for live sources).
        source: the source id (a URI with any credentials removed).
        capture_time: wall-clock time (``time.time()``, seconds since the epoch) when it was read.
        detections: results of detector/recogniser stages (``Detections.empty()`` at first).
        meta: free per-frame data keyed by stage name (e.g. ``meta["edges"]`` raw float map).
    """

    image: np.ndarray
    index: int
    pts: float
    source: str = ""
    capture_time: float = 0.0
    detections: Detections = field(default_factory=Detections.empty)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
