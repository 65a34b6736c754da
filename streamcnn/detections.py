"""`Detections`: the one result type every stage reads and writes (struct of arrays).

Modelled on supervision's ``Detections``: each field is an array whose first axis is the
detection index, so selection and concatenation act on all fields at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

_OPTIONAL = ("landmarks", "embedding", "identity", "similarity", "track_id")


@dataclass
class Detections:
    """N detections in frame pixel coordinates.

    Attributes:
        xyxy: float32 (N, 4) boxes ``x1, y1, x2, y2`` in frame pixels (x right, y down).
        conf: float32 (N,) scores in [0, 1].
        class_id: int64 (N,) class indices.
        class_names: optional sequence mapping ``class_id`` to a name (shared, not per row).
        landmarks: optional float32 (N, K, 2) points in frame pixels.
        embedding: optional float32 (N, D) feature vectors (L2-normalised when a recogniser made them).
        identity: optional object array (N,) of names (``"unknown"`` when not recognised).
        similarity: optional float32 (N,) score of ``identity``.
        track_id: optional int64 (N,) tracker ids (-1 = untracked).
        data: extra per-detection arrays (each with first axis N).

    Raises:
        ValueError: on construction when an array's first axis is not N or ``xyxy`` is not (N, 4).
    """

    xyxy: np.ndarray
    conf: np.ndarray
    class_id: np.ndarray
    class_names: Sequence[str] | None = None
    landmarks: np.ndarray | None = None
    embedding: np.ndarray | None = None
    identity: np.ndarray | None = None
    similarity: np.ndarray | None = None
    track_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.conf = np.asarray(self.conf, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        if self.embedding is not None:
            self.embedding = np.asarray(self.embedding, dtype=np.float32)
        if self.identity is not None:
            self.identity = np.asarray(self.identity, dtype=object)
        if self.similarity is not None:
            self.similarity = np.asarray(self.similarity, dtype=np.float32)
        if self.track_id is not None:
            self.track_id = np.asarray(self.track_id, dtype=np.int64)
        for name, arr in self._arrays():
            if len(arr) != n:
                raise ValueError(f"Detections.{name} has {len(arr)} rows, expected {n} (one per box)")

    def _arrays(self):
        yield "conf", self.conf
        yield "class_id", self.class_id
        for name in _OPTIONAL:
            arr = getattr(self, name)
            if arr is not None:
                yield name, arr
        for name, arr in self.data.items():
            yield f"data[{name!r}]", arr

    @classmethod
    def empty(cls, class_names: Sequence[str] | None = None) -> Detections:
        """Zero detections (all arrays with first axis 0)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), class_names)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Select rows by boolean mask, integer array, slice or int (an int keeps the axis)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]

        def pick(arr):
            return None if arr is None else arr[index]

        return Detections(
            self.xyxy[index],
            self.conf[index],
            self.class_id[index],
            self.class_names,
            **{name: pick(getattr(self, name)) for name in _OPTIONAL},
            data={k: v[index] for k, v in self.data.items()},
        )

    @classmethod
    def merge(cls, items: Sequence[Detections]) -> Detections:
        """Concatenate detections; an optional field is kept only when every non-empty part has it.

        Raises:
            ValueError: when the parts' optional arrays have different trailing shapes.
        """
        parts = [d for d in items if len(d)]
        if not parts:
            return cls.empty(items[0].class_names if items else None)
        kw = {}
        for name in _OPTIONAL:
            arrs = [getattr(d, name) for d in parts]
            kw[name] = None if any(a is None for a in arrs) else np.concatenate(arrs)
        keys = set.intersection(*(set(d.data) for d in parts))
        return cls(
            np.concatenate([d.xyxy for d in parts]),
            np.concatenate([d.conf for d in parts]),
            np.concatenate([d.class_id for d in parts]),
            parts[0].class_names,
            **kw,
            data={k: np.concatenate([d.data[k] for d in parts]) for k in keys},
        )

    @property
    def class_name(self) -> list[str]:
        """Per-row class names (the id as text when no names are known)."""
        names = self.class_names
        return [names[c] if names is not None and 0 <= c < len(names) else str(c) for c in self.class_id]

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready list of dicts, one per detection (frame pixels, rounded to 0.01 px)."""
        out = []
        cls_names = self.class_name
        for i in range(len(self)):
            rec: dict[str, Any] = {
                "xyxy": [round(float(v), 2) for v in self.xyxy[i]],
                "conf": round(float(self.conf[i]), 4),
                "class_id": int(self.class_id[i]),
                "class_name": cls_names[i],
            }
            if self.landmarks is not None:
                rec["landmarks"] = np.round(self.landmarks[i].astype(float), 2).tolist()
            if self.identity is not None:
                rec["identity"] = str(self.identity[i])
            if self.similarity is not None:
                rec["similarity"] = round(float(self.similarity[i]), 4)
            if self.track_id is not None:
                rec["track_id"] = int(self.track_id[i])
            out.append(rec)
        return out

    def __eq__(self, other: object) -> bool:  # dataclass eq would compare arrays ambiguously
        if not isinstance(other, Detections):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif f.name == "data":
                if a.keys() != b.keys() or any(not np.array_equal(a[k], b[k]) for k in a):
                    return False
            elif a != b:
                return False
        return True
