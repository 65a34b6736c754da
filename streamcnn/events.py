"""`Event`: the one event model, and the per-pipeline queue events travel through.

Every event — an object appeared, a zone was entered, a face was recognised, a camera dropped — is
an `Event` with the same envelope (``type``, ``pipeline``, ``source``, ``time``, ``pts``,
``frame_index``) plus the fields of its type. A stage emits one with `streamcnn.Context.emit`; the
engine hands each, in order and on the pipeline thread, to the ``streamcnn_event`` hook and to the
pipeline's sinks (`streamcnn.Sink.event`), before the frame it belongs to is written.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

#: The event types the built-ins emit, with the fields each adds to the envelope:
EVENT_TYPES: dict[str, str] = {
    "appeared": "track_id, class_name, conf, xyxy, first_seen (pts s), snapshot (path, when snapshots are on)",
    "disappeared": "track_id, class_name, best_conf, first_seen, last_seen (pts s), duration (s), snapshot",
    "recognised": "track_id, identity, similarity, class_name, xyxy",
    "entered": "zone, track_id, class_name, xyxy, counts",
    "left": "zone, track_id, class_name, xyxy, dwell (s), lost, reason ('left', 'lost' or 'end'), counts",
    "crossed": "zone, track_id, class_name, xyxy, direction ('in' or 'out'), counts",
    "disconnected": "reason, first_connect, index",
    "reconnected": "downtime (s), attempts, first_connect, index",
}
#: the envelope's keys, in the order `Event.to_dict` writes them
ENVELOPE = ("type", "pipeline", "source", "time", "epoch", "pts", "frame_index")


@dataclass
class Event:
    """Something that happened in a pipeline, at a frame (or between frames: a camera event).

    Attributes:
        type: the event type, e.g. ``"crossed"`` (see `EVENT_TYPES`; plugins may add their own).
        pipeline: the pipeline's name.
        source: the source id (URI with credentials removed).
        epoch: wall-clock time in seconds since the epoch (UTC): the frame's ``capture_time`` for a
            frame's event, the moment it happened for a camera event.
        pts: the frame's presentation time in seconds (None for an event between frames).
        frame_index: the frame's index (a camera event: the frames read so far; None for an event
            a plugin emitted without a frame).
        fields: the type's own fields (JSON-ready: str, int, float, bool, None, lists, dicts).
    """

    type: str
    pipeline: str
    source: str
    epoch: float
    pts: float | None
    frame_index: int | None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> str:
        """``epoch`` as ISO 8601 UTC with milliseconds, e.g. ``2026-12-03T06:31:59.123+00:00``."""
        return datetime.fromtimestamp(self.epoch, timezone.utc).isoformat(timespec="milliseconds")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the event: the envelope (`ENVELOPE`: ``time`` ISO 8601, ``epoch``
        seconds, ``pts`` seconds rounded to µs) then the type's fields."""
        out: dict[str, Any] = {
            "type": self.type, "pipeline": self.pipeline, "source": self.source, "time": self.time,
            "epoch": round(self.epoch, 6), "pts": None if self.pts is None else round(self.pts, 6),
            "frame_index": self.frame_index,
        }
        for key, value in self.fields.items():
            if key not in out:
                out[key] = jsonable(value)
        return out

    def to_json(self) -> str:
        """`to_dict` as one line of compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def get(self, key: str, default: Any = None) -> Any:
        """A field of the event (or an envelope attribute such as ``"pipeline"``)."""
        if key in self.fields:
            return self.fields[key]
        return getattr(self, key, default) if key in ENVELOPE else default


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays made plain Python and NaN made None (for `Event.fields`)."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class EventQueue:
    """The events of one pipeline waiting to be handed on: `put` from any thread, `take` on the
    pipeline thread (first in, first out). Unbounded: events are few (each is handed on before the
    frame it belongs to is written), and a camera event between frames is handed on within 0.25 s."""

    def __init__(self) -> None:
        self._events: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()

    def put(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def take(self) -> list[Event]:
        """Every waiting event, oldest first (an empty list when there is none)."""
        if not self._events:
            return []
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out


def make_event(type_: str, pipeline: str, source: str, *, frame: Any = None, epoch: float | None = None,
               index: int | None = None, **fields: Any) -> Event:
    """An `Event`; with ``frame`` (a `streamcnn.Frame`) its source, capture time, pts and index,
    else now (or ``epoch``) and ``index`` (None when not given).

    Raises:
        ValueError: a field is named like an envelope key (``pts``, ``time`` ...) or its value
            cannot be written as JSON (the message names the field).
    """
    for key, value in fields.items():
        if key in ENVELOPE or key in ("index", "frame", "epoch"):
            raise ValueError(f"event {type_!r}: the field name {key!r} is taken by the envelope every event has "
                             f"({', '.join(ENVELOPE)}); name the field otherwise")
        try:
            json.dumps(jsonable(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"event {type_!r}: field {key!r} cannot be written as JSON ({exc}); give str, int, "
                             "float, bool, None, lists or dicts of those (numpy values are fine)") from None
    if frame is not None:
        return Event(type_, pipeline, frame.source or source, frame.capture_time or time.time(), float(frame.pts),
                     int(frame.index), dict(fields))
    return Event(type_, pipeline, source, time.time() if epoch is None else epoch, None,
                 None if index is None else int(index), dict(fields))


def unknown_event_types(types: list[str] | None) -> str | None:
    """For an event filter option (``types: [...]``): a warning naming the types no built-in stage
    emits, each with the closest built-in type (a plugin may emit its own types: not an error), or None."""
    from .words import closest

    odd = [t for t in (types or ()) if t not in EVENT_TYPES]
    if not odd:
        return None
    named = []
    for t in odd:
        close = closest(t, EVENT_TYPES)
        named.append(f"{t!r}" + (f" (did you mean {close!r}?)" if close else ""))
    return (f"{', '.join(named)}: no built-in stage emits {'this event type' if len(odd) == 1 else 'these'}; fine "
            f"if a plugin of yours does (built-in types: {', '.join(EVENT_TYPES)})")


__all__ = ["ENVELOPE", "EVENT_TYPES", "Event", "EventQueue", "jsonable", "make_event", "unknown_event_types"]
