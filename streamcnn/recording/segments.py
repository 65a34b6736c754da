"""Segmented recordings: file names from a template, an index of the segments, and retention.

A segmented recording is a series of files named from a template such as
``out/{pipeline}/{start:%Y-%m-%d_%H-%M-%S}.mp4`` (``{start}``: the wall-clock time of the segment's
first frame, local time, any ``strftime`` format). Each finished segment adds one line to the
index ``segments.jsonl`` in the template's fixed folder (the deepest one without ``{start}``):

    {"path": "2026-12-03_10-00-00.mp4", "start": "2026-12-03T10:00:00.120+01:00", "start_epoch": ...,
     "end": ..., "end_epoch": ..., "pts": 0.0, "duration": 600.0, "frames": 15000, "bytes": ...,
     "codec": "libx264", "complete": true}

(``path`` relative to the index's folder; ``pts``: the source's pts of the first frame, seconds).
Segments found on disk but missing from the index (the process was killed while writing them)
are added with ``"complete": false`` when the next recording starts. Retention (``retain``
seconds and/or ``max_bytes``) deletes the oldest segments listed in the index, never others.
"""

from __future__ import annotations

import json
import os
import re
import string
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

INDEX_NAME = "segments.jsonl"
_UNITS = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60,
          "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
          "w": 604800, "week": 604800, "weeks": 604800}
_BYTES = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}


def _amount(value: float | int | str, units: dict[str, int], what: str, forms: str) -> float:
    """A number, or text of a number and one of ``units`` (``10min``), times the unit's factor;
    ValueError naming ``what`` and the accepted ``forms``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        unit = m.group(2).lower() if m else None
        if not m or unit not in units:
            raise ValueError(f"{value!r} is not a {what}; write {forms}")
        amount = float(m.group(1)) * units[unit]
    if amount <= 0:
        raise ValueError(f"{value!r} is not a positive {what}")
    return amount


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number (seconds) or text such as ``10min``, ``90s``, ``1.5h``, ``7d``, ``2w``.

    Raises:
        ValueError: not a positive duration; the message shows the accepted forms.
    """
    return _amount(value, _UNITS, "duration", "seconds (600) or e.g. 90s, 10min, 2h, 7d")


def parse_bytes(value: int | str) -> int:
    """Bytes from a number or text such as ``500MB``, ``50GB`` (powers of 1000) or ``2GiB`` (of 1024).

    Raises:
        ValueError: not a positive size.
    """
    return int(_amount(value, _BYTES, "size", "bytes or e.g. 500MB, 50GB, 2GiB"))


def template_fields(template: str) -> set[str]:
    """The field names in a path template (``{start:%H}`` → ``start``, ``{index.real}`` → ``index``);
    ValueError when malformed."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template)
            if name is not None}


def template_problem(template: str, segmented: bool) -> str | None:
    """What is wrong with a video path template, or None. Fields: ``{pipeline}``, ``{node}``, ``{start}``."""
    try:
        fields = template_fields(template)
        render(template.replace("{node}", "n"), "p", time.time())
    except (ValueError, KeyError, IndexError) as exc:
        return (f"path {template!r} is not a valid template ({exc}); "
                "e.g. out/{pipeline}/{start:%Y-%m-%d_%H-%M-%S}.mp4")
    unknown = sorted(fields - {"pipeline", "node", "start"})
    if unknown:
        return (f"path {template!r} uses {{{unknown[0]}}}; the fields are {{pipeline}}, {{node}} and {{start}} "
                "(e.g. out/{pipeline}/{start:%Y-%m-%d_%H-%M-%S}.mp4)")
    if segmented and "start" not in fields:
        return (f"path {template!r} has no {{start}}: every segment would get the same name. Use e.g. "
                "out/{pipeline}/{start:%Y-%m-%d_%H-%M-%S}.mp4")
    if "start" in fields and not segmented:
        return f"path {template!r} uses {{start}}, which only segmented recordings (segment: ...) fill in"
    return None


def render(template: str, pipeline: str, start: float) -> str:
    """The template with ``{pipeline}`` and ``{start}`` (epoch seconds, as local time) filled in."""
    return template.format(pipeline=pipeline, start=datetime.fromtimestamp(start))


def free_path(path: Path, taken: Path | None = None) -> Path:
    """``path``, or ``NAME-1.EXT``, ``NAME-2.EXT`` ... when it exists or is ``taken`` (two segments or
    clips starting in the same second); its folder is created."""
    n, base = 1, path
    while path.exists() or path == taken:
        path = base.with_name(f"{base.stem}-{n}{base.suffix}")
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def index_folder(template: str) -> str:
    """The deepest folder of ``template`` (``{pipeline}`` filled in) that does not depend on ``{start}``."""
    parts = Path(template).parts
    fixed = []
    for part in parts[:-1]:
        if "{start" in part:
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")


@dataclass
class Segment:
    """One finished segment, as a line of the index (see the module docstring)."""

    path: str
    start_epoch: float
    end_epoch: float
    pts: float
    duration: float
    frames: int
    bytes: int
    codec: str
    complete: bool = True

    def record(self) -> dict:
        return {"path": self.path, "start": _iso(self.start_epoch), "start_epoch": round(self.start_epoch, 3),
                "end": _iso(self.end_epoch), "end_epoch": round(self.end_epoch, 3), "pts": round(self.pts, 6),
                "duration": round(self.duration, 6), "frames": self.frames, "bytes": self.bytes,
                "codec": self.codec, "complete": self.complete}

    @classmethod
    def from_record(cls, r: dict) -> Segment:
        return cls(r["path"], r["start_epoch"], r["end_epoch"], r.get("pts", 0.0), r.get("duration", 0.0),
                   r.get("frames", 0), r.get("bytes", 0), r.get("codec", ""), r.get("complete", True))


class SegmentIndex:
    """The index file of one segmented recording: append, read, find, retain.

    Args:
        folder: the index's folder (`index_folder` of the template, resolved); created.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / INDEX_NAME

    def segments(self) -> list[Segment]:
        """The segments in the index, oldest first (a torn last line from a crash is skipped)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(Segment.from_record(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def append(self, segment: Segment) -> None:
        """Add one line (written whole and synced). Raises OSError."""
        data = (json.dumps(segment.record(), separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def find(self, when: float) -> Segment | None:
        """The segment holding wall-clock time ``when`` (epoch seconds), or None."""
        for seg in self.segments():
            if seg.start_epoch <= when < seg.end_epoch:
                return seg
        return None

    def recover(self, pattern: str, codec: str, count_frames) -> list[Segment]:
        """Add files matching ``pattern`` (a glob relative to the folder) that the index lacks (left by
        a killed run) as incomplete segments; ``count_frames(path)`` gives their frame counts."""
        known = {s.path for s in self.segments()}
        added = []
        for file in sorted(self.folder.glob(pattern)):
            rel = str(file.relative_to(self.folder))
            if rel in known or not file.is_file() or file.name.startswith("."):
                continue
            st = file.stat()
            seg = Segment(rel, st.st_mtime, st.st_mtime, 0.0, 0.0, max(0, count_frames(file)), st.st_size, codec,
                          complete=False)
            self.append(seg)
            added.append(seg)
        return added

    def retain(self, retain: float | None, max_bytes: int | None, now: float,
               keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """Delete the oldest segments ending more than ``retain`` s before ``now``, then the oldest
        while all listed segments exceed ``max_bytes`` (never those in ``keep``: the one being
        written); rewrite the index without them. Returns the deleted paths (relative)."""
        segments = self.segments()
        drop: set[str] = set()
        if retain is not None:
            drop |= {s.path for s in segments if now - s.end_epoch > retain and s.path not in keep}
        if max_bytes is not None:
            total = sum(s.bytes for s in segments if s.path not in drop)
            for s in segments:
                if total <= max_bytes:
                    break
                if s.path in drop or s.path in keep:
                    continue
                drop.add(s.path)
                total -= s.bytes
        if not drop:
            return []
        for rel in drop:
            (self.folder / rel).unlink(missing_ok=True)
        kept = [s for s in segments if s.path not in drop]
        tmp = self.path.with_name(f".{INDEX_NAME}.tmp")
        tmp.write_text("".join(json.dumps(s.record(), separators=(",", ":")) + "\n" for s in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        return sorted(drop)


def glob_of(template: str, pipeline: str) -> str:
    """A glob for the files of ``template`` relative to its `index_folder` (``{start}`` → ``*``)."""
    rel = Path(template.replace("{pipeline}", pipeline)).relative_to(index_folder(template.replace("{pipeline}",
                                                                                                   pipeline)))
    return re.sub(r"\{start[^}]*\}", "*", str(rel))
