"""`Timeline`: the pts a pipeline sees, made from the timestamps its source gives.

What a plugin sees: ``Frame.pts`` in seconds, strictly increasing within a pipeline run, also
across reconnects and camera clock resets.

* A non-live source (file, folder, pattern): its own pts (file time, or index / fps).
* A live source: seconds since the reader started. With ``pts: stream`` (the default) the gaps
  between frames are the stream's own timestamps (so jitter in the network does not move them);
  with ``pts: arrival``, or when the stream gives none, the reader's clock at arrival.
* A timestamp that does not increase: ``pts_policy: drop`` (default) drops the frame,
  ``restamp`` moves it `PTS_EPSILON` after the previous frame; both count it in
  ``discontinuities`` (``pts_discontinuities`` in the run's stats). A jump backwards of more than
  ``reset`` seconds (a camera clock reset, a stream restarted by the server) is no stray frame:
  the timeline re-bases, the frame follows the previous one by one frame interval and so does
  everything after it (counted once).
* After a reconnect (`new_segment`) the first frame is placed at the reader's clock, and never
  before one frame interval after the last frame.

Capture time (``Frame.capture_time``, wall clock) of a live frame with stream timestamps is the
earliest arrival the stream's own clock allows: ``min over frames (arrival - pts) + pts``. A
frame that waited in a socket or decoder buffer therefore keeps the time it was sent at, not the
time it was read out, and ``time.time() - capture_time`` is its true age.
"""

from __future__ import annotations

import math
from typing import Literal

PTS_EPSILON = 1e-6  #: seconds a restamped frame is placed after the previous one
DEFAULT_INTERVAL = 0.04  #: seconds between frames when the source's frame rate is not known (25 fps)


class Timeline:
    """Places frames of one source on a pipeline's strictly increasing pts (see the module docstring).

    Args:
        live: the source is live (pts relative to ``start``, capture-time estimate).
        start: the reader's clock (monotonic seconds) when reading began.
        use_stream_pts: False for ``pts: arrival`` (live sources only).
        policy: ``drop`` or ``restamp`` for timestamps that do not increase.
        reset: seconds a timestamp may go backwards before it counts as a clock reset (re-base).

    Attributes:
        discontinuities: frames whose timestamp did not increase (dropped or restamped) plus re-bases.
        last: pts of the last placed frame (seconds), None before the first.
    """

    def __init__(self, live: bool, start: float, use_stream_pts: bool = True,
                 policy: Literal["drop", "restamp"] = "drop", reset: float = 5.0) -> None:
        self.live, self.start, self.use_stream_pts = live, start, use_stream_pts
        self.policy, self.reset = policy, reset
        self.discontinuities = 0
        self.last: float | None = None
        self._offset: float | None = None  # pipeline pts = stream pts + offset (None: at the next frame)
        self._epoch: float | None = None  # wall clock of stream pts 0 (capture-time estimate)

    def new_segment(self) -> None:
        """The source was reopened: its next timestamp starts a new mapping (after the last frame)."""
        self._offset = None
        self._epoch = None

    def place(self, pts: float | None, now: float, arrival: float, fps: float | None = None
              ) -> tuple[float, float] | None:
        """The pipeline pts and capture time of a frame, or None when it is dropped.

        Args:
            pts: the source's timestamp in seconds, or None.
            now: the reader's clock (monotonic seconds) when the frame arrived.
            arrival: wall-clock arrival (``time.time()``), seconds since the epoch.
            fps: the source's nominal frame rate (frame interval for re-bases), if known.

        Returns:
            ``(pts seconds, capture_time seconds since the epoch)``, or None (dropped under ``drop``).
        """
        interval = 1.0 / fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_INTERVAL
        raw = None if pts is None or not math.isfinite(pts) or (self.live and not self.use_stream_pts) else float(pts)
        capture = arrival
        if raw is None:
            value = now - self.start if self.live else (self.last + interval if self.last is not None else 0.0)
        else:
            if self._offset is None:
                first = now - self.start if self.live else raw
                if self.last is not None:
                    first = max(first, self.last + interval)
                self._offset = first - raw
            value = raw + self._offset
        if self.last is not None and value <= self.last:
            self.discontinuities += 1
            if raw is not None and self.last - value > self.reset:  # the camera's clock was reset
                self._offset = (self._offset or 0.0) + (self.last - value) + interval
                self._epoch = None
                value = raw + self._offset
            elif self.policy == "drop":
                return None
            else:
                value = self.last + PTS_EPSILON
        if raw is not None and self.live:
            sent = arrival - raw
            self._epoch = sent if self._epoch is None else min(self._epoch, sent)
            capture = min(arrival, self._epoch + raw)
        self.last = value
        return value, capture


__all__ = ["DEFAULT_INTERVAL", "PTS_EPSILON", "Timeline"]
