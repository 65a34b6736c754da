"""`FrameBuffer`: the hand-over between a source's reader thread and the pipeline thread.

Two policies:

* ``latest`` — one slot. ``put`` overwrites it and never blocks; a frame overwritten before
  anyone took it counts in ``dropped``. ``get`` returns only the newest frame and never the same
  frame twice (it blocks until a *new* frame arrives). For live cameras: the pipeline always
  works on the most recent picture, however slow it is.
* ``all`` — a FIFO of at most ``maxsize`` frames. ``put`` blocks while it is full (backpressure,
  nothing is dropped). For files and folders: every frame is processed.

``close()`` wakes every waiter. After it, ``put`` returns False, and ``get`` first drains what
is still queued (policy ``all``; under ``latest`` the untaken newest frame) and then raises
`BufferClosed`.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Literal

from ..frame import Frame

__all__ = ["BufferClosed", "BufferEmpty", "BufferFull", "FrameBuffer"]


class BufferEmpty(queue.Empty):
    """``get(timeout)`` found no (new) frame within ``timeout`` seconds."""


class BufferFull(queue.Full):
    """``put(frame, timeout)`` under policy ``all`` found no free space within ``timeout`` seconds."""


class BufferClosed(Exception):
    """The buffer is closed and holds no more frames (end of stream or reader stopped)."""


class FrameBuffer:
    """Thread-safe frame hand-over with policy ``latest`` (newest only) or ``all`` (FIFO).

    Args:
        policy: ``"latest"`` or ``"all"``.
        maxsize: capacity in frames under ``all`` (>= 1); ignored under ``latest`` (one slot).

    Attributes:
        dropped: frames overwritten under ``latest`` before they were taken (always 0 under ``all``).
        closed: True once ``close()`` was called.

    Raises:
        ValueError: unknown policy or ``maxsize < 1``.
    """

    def __init__(self, policy: Literal["latest", "all"] = "all", maxsize: int = 8) -> None:
        if policy not in ("latest", "all"):
            raise ValueError(f"policy must be 'latest' or 'all', not {policy!r}")
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, not {maxsize}")
        self.policy = policy
        self.maxsize = 1 if policy == "latest" else int(maxsize)
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropped = 0

    # -- state -----------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        with self._cond:
            return self._dropped

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def __len__(self) -> int:
        """Frames waiting to be taken (0 or 1 under ``latest``)."""
        with self._cond:
            return len(self._items)

    # -- producer --------------------------------------------------------------------------
    def put(self, frame: Frame, timeout: float | None = None) -> bool:
        """Hand over a frame.

        Under ``latest`` it replaces an untaken frame (counted in ``dropped``) and never blocks.
        Under ``all`` it blocks while ``maxsize`` frames are queued, until space frees up or the
        buffer is closed.

        Args:
            frame: the frame.
            timeout: under ``all``, the most seconds to wait for space (None = no limit).

        Returns:
            True when the frame was stored, False when the buffer is (or became) closed.

        Raises:
            BufferFull: under ``all``, no space within ``timeout`` seconds.
        """
        with self._cond:
            if self._closed:
                return False
            if self.policy == "latest":
                if self._items:
                    self._items.clear()
                    self._dropped += 1
                self._items.append(frame)
                self._cond.notify_all()
                return True
            if not self._wait(lambda: self._closed or len(self._items) < self.maxsize, timeout):
                raise BufferFull(f"no space for frame {frame.index} within {timeout} s")
            if self._closed:
                return False
            self._items.append(frame)
            self._cond.notify_all()
            return True

    def close(self) -> None:
        """Close the buffer and wake every blocked ``put``/``get`` (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- consumer --------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame:
        """Take the next frame: the newest one (``latest``) or the oldest queued one (``all``).

        Args:
            timeout: the most seconds to wait (None = until a frame arrives or the buffer closes;
                0 = do not wait).

        Returns:
            The frame (uint8 H×W×3 BGR ``image``). Under ``latest`` never the same frame twice.

        Raises:
            BufferEmpty: no (new) frame within ``timeout`` seconds.
            BufferClosed: the buffer is closed and drained.
        """
        with self._cond:
            if not self._wait(lambda: bool(self._items) or self._closed, timeout):
                raise BufferEmpty(f"no frame within {timeout} s")
            if self._items:
                frame = self._items.popleft()
                self._cond.notify_all()  # wake a producer blocked on a full queue
                return frame
            raise BufferClosed("frame buffer closed")

    # -- helpers ---------------------------------------------------------------------------
    def _wait(self, predicate, timeout: float | None) -> bool:
        """``Condition.wait_for`` that treats ``timeout <= 0`` as "check once"."""
        if timeout is not None and timeout <= 0:
            return bool(predicate())
        return bool(self._cond.wait_for(predicate, timeout))
