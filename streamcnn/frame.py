"""`Frame`: one decoded video frame travelling through a pipeline."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .detections import Detections

#: ``Frame.meta`` key of the zones and lines a ``zones`` stage counts on, for ``annotate`` to draw: a
#: list of dicts ``{"name": str, "kind": "polygon" | "line", "points": int32 (K, 2) frame pixels,
#: "counts": {"inside": int, "in": int, "out": int}}`` (several zones stages append to it).
ZONES = "zones"


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
        detections: results of detector/recogniser stages (``Detections.empty()`` at first;
            detector stages add theirs with `add_detections`).
        meta: free per-frame data keyed by stage name (e.g. ``meta["edges"]`` raw float map).
    """

    image: np.ndarray
    index: int
    pts: float
    source: str = ""
    capture_time: float = 0.0
    detections: Detections = field(default_factory=Detections.empty)
    meta: dict[str, Any] = field(default_factory=dict)

    def add_detections(self, detections: Detections, stage: str = "", replace: bool = False) -> None:
        """Store a detector stage's results: appended after the rows already on the frame (their
        rows and fields kept, see `Detections.merge`), or replacing them when ``replace``.

        Args:
            detections: the stage's detections (frame pixels).
            stage: the stage's YAML name (``ctx.name``), written to the rows whose ``stage`` is ``""``.
            replace: the stage's ``replace`` option (`streamcnn.DetectorParams`).

        Raises:
            ValueError: the new rows cannot be merged with the frame's (see `Detections.merge`, e.g.
                landmarks with different point counts).
        """
        if stage:
            names = detections.stage.copy()
            names[names == ""] = stage
            detections = copy.copy(detections)  # shallow: the stage's own object keeps its fields
            detections.stage = names
        self.detections = detections if replace else Detections.merge([self.detections, detections])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
