"""Where each pipeline of a cluster actor is, kept where a process that dies cannot lose it.

`ProgressFile` is a 24-byte memory-mapped file per pipeline on the node (``index``, ``pts``,
``wall``: float64), rewritten after every frame that went through all sinks (`ProgressRecorder`,
a ``streamcnn_frame_done`` hook: three stores into shared memory, no system call). When the actor
process is killed its pages stay in the node's page cache, so the actor Ray restarts on the same
node reads exactly where its sinks stopped, and goes on from the next frame (no frame written twice).
On another node (the first one was lost, and its files with it) the driver's last poll is used.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path
from typing import Any

from ..engine.reader import Resume
from ..hookspecs import hookimpl

_RECORD = struct.Struct("<3d")  # index, pts (s), wall (epoch s)


class ProgressFile:
    """The progress record of one pipeline at ``path`` (created, 24 bytes).

    Raises:
        OSError: the file cannot be created or mapped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < _RECORD.size:
                os.ftruncate(fd, _RECORD.size)
            self._map = mmap.mmap(fd, _RECORD.size)
        finally:
            os.close(fd)

    def write(self, index: int, pts: float, wall: float) -> None:
        """Record that frame ``index`` (pts seconds) went through every sink at ``wall``."""
        _RECORD.pack_into(self._map, 0, float(index), float(pts), wall)

    def read(self) -> Resume | None:
        """Where to go on: `Resume` (the frame after the recorded one), or None before any frame."""
        index, pts, wall = _RECORD.unpack_from(self._map, 0)
        if wall <= 0:
            return None
        return Resume(int(index) + 1, pts, wall)

    def clear(self) -> None:
        _RECORD.pack_into(self._map, 0, 0.0, 0.0, 0.0)

    def close(self) -> None:
        self._map.close()


class ProgressRecorder:
    """A plugin (registered with the actor's plugin manager) that writes each pipeline's
    `ProgressFile` after every frame (``streamcnn_frame_done``)."""

    def __init__(self, files: dict[str, ProgressFile]) -> None:
        self.files = files

    @hookimpl
    def streamcnn_frame_done(self, pipeline: str, frame: Any) -> None:
        record = self.files.get(pipeline)
        if record is not None:
            record.write(frame.index, frame.pts, time.time())


def later(a: Resume | None, b: Resume | None) -> Resume | None:
    """The further on of two resume points (None counts as "from the start")."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a.index >= b.index else b


__all__ = ["ProgressFile", "ProgressRecorder", "later"]
