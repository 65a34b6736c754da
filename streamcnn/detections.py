"""`Detections`: the one result type every stage reads and writes (struct of arrays).

Modelled on supervision's ``Detections``: each field is an array whose first axis is the
detection index, so selection and concatenation act on all fields at once. Several producers
share one `Detections` (a YOLO stage's persons and a face detector's faces on the same frame):
every row carries its own class name (``data[CLASS_NAME]``) and the stage that produced it
(``stage``), and `Detections.merge` carries every field, filling the rows of parts that lack
one with the field's empty value (see the class docstring).

Shared ``data`` keys and class names (use these constants, not the strings):

* `CLASS_NAME` (``"class_name"``): object (N,) per-row class names, always present.
* `FACE_POINTS` (``"kps5"``): float32 (N, 5, 2) the 5 face points of a face detector, kept here
  by a ``landmarks`` stage when it replaces ``landmarks`` by its denser points.
* `FACE_CLASS` (``"face"``): the class name of face rows; face stages act on these rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

#: ``data`` key of the per-row class names: object (N,) of str. Always present: filled from
#: ``class_names`` (the class id as text when it has no name) unless given explicitly.
CLASS_NAME = "class_name"
#: ``data`` key of the 5 face points a face detector gave: float32 (N, 5, 2) frame pixels, in the
#: order eye image-left, other eye, nose tip, mouth corner image-left, mouth corner image-right.
#: A ``landmarks`` stage stores the detector's points here when it replaces ``landmarks``.
FACE_POINTS = "kps5"
#: The class name of face rows: face detectors give it to every row; face stages (``landmarks``,
#: ``face_recognize``) act only on rows of this class and leave the others untouched.
FACE_CLASS = "face"

_OPTIONAL = ("landmarks", "embedding", "identity", "similarity", "track_id")
#: the empty value of each optional field (a row of a merged part that lacked the field)
_EMPTY: dict[str, Any] = {"landmarks": np.nan, "embedding": np.nan, "identity": None, "similarity": np.nan,
                          "track_id": -1}


_NO_EMPTY = object()  # marks a dtype without an empty value (unsigned ints, datetimes, ...)


def _empty_value(kind: str) -> Any:
    """The empty value of a ``data`` array of dtype kind ``kind`` (``_NO_EMPTY`` when it has none)."""
    return {"f": np.nan, "c": np.nan, "i": -1, "b": False, "O": None, "U": "", "S": b""}.get(kind, _NO_EMPTY)


def _adds_nothing(part: Detections, to: Detections) -> bool:
    """True when ``part`` is ``to`` or has no rows and no field or ``data`` key that ``to`` lacks."""
    return part is to or (not len(part) and all(getattr(part, n) is None or getattr(to, n) is not None
                                                 for n in _OPTIONAL) and part.data.keys() <= to.data.keys())


def _all_empty(arr: np.ndarray, empty: Any) -> bool:
    """True when every element of ``arr`` is ``empty`` (NaN compares as NaN); False for 0 rows."""
    if not arr.size or empty is _NO_EMPTY:
        return False
    if empty is None:
        return bool(np.equal(arr, None).all())
    if isinstance(empty, float) and np.isnan(empty):
        return arr.dtype.kind in "fc" and bool(np.isnan(arr).all())
    return bool((arr == empty).all())


def _concat(what: str, arrays: list[np.ndarray | None], rows: list[int], empty: Any) -> np.ndarray | None:
    """Concatenate one field over the parts (None: the part lacks it), filling missing parts with
    ``empty``. Parts whose rows all hold the empty value do not fix the per-row shape.

    Raises:
        ValueError: the parts disagree on the per-row shape, or the field has no empty value and
        some part lacks it.
    """
    present = [a for a in arrays if a is not None]
    if not present:
        return None
    dtype = np.result_type(*present)
    if empty is _NO_EMPTY:
        empty = _empty_value(dtype.kind)
    shapes = list(dict.fromkeys(a.shape[1:] for a in present if len(a) and not _all_empty(a, empty)))
    if len(shapes) > 1:
        raise ValueError(
            f"cannot merge Detections: {what} has {' vs '.join(str(s) for s in shapes)} values per row in "
            "different parts (e.g. landmarks with different point counts K); make them agree or drop the field "
            "from one part first")
    shape = shapes[0] if shapes else present[0].shape[1:]
    out = [np.zeros((0, *shape), dtype)]
    for a, n in zip(arrays, rows):
        if not n:
            continue  # a part without rows has nothing to fill
        if a is not None and a.shape[1:] == shape:
            out.append(a)
        elif empty is _NO_EMPTY:
            raise ValueError(
                f"cannot merge Detections: {what} ({dtype}) is missing from some parts and has no empty value "
                "to fill their rows with; give every part the field")
        else:
            out.append(np.full((n, *shape), empty, dtype=dtype))
    return np.concatenate(out).astype(dtype, copy=False)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and values (NaN equals NaN in float arrays)."""
    nan = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=nan)


@dataclass
class Detections:
    """N detections in frame pixel coordinates, possibly from several stages.

    Attributes:
        xyxy: float32 (N, 4) boxes ``x1, y1, x2, y2`` in frame pixels (x right, y down).
        conf: float32 (N,) scores in [0, 1].
        class_id: int64 (N,) class indices into the producer's own class list (ids of rows from
            different stages are not comparable; compare ``class_name``).
        class_names: optional sequence mapping ``class_id`` to a name, used on construction to fill
            ``data[CLASS_NAME]``; after a merge it is the table the parts with rows share (None
            when they differ: then only the per-row names are meaningful).
        landmarks: optional float32 (N, K, 2) points in frame pixels; empty value NaN.
        embedding: optional float32 (N, D) feature vectors (L2-normalised when a recogniser made
            them); empty value NaN.
        identity: optional object array (N,) of names (``"unknown"`` when not recognised); empty
            value None (a row no recogniser looked at, e.g. a person from a YOLO stage).
        similarity: optional float32 (N,) score of ``identity``; empty value NaN.
        track_id: optional int64 (N,) tracker ids; empty value -1 (= untracked).
        data: extra per-detection arrays (each with first axis N). Always holds `CLASS_NAME`
            (object (N,) of str; ``dataclasses.replace`` carries ``data``, so a new ``class_id``
            given that way keeps the old names unless ``data`` without the key is given). Empty
            values by dtype: float NaN, signed int -1, bool False, object None, str ``""``; other
            dtypes (unsigned, datetime, ...) have none, so a merge where only some parts have such
            a key is refused.
        stage: object (N,) of str, the YAML name of the stage that produced each row (``""`` when
            unknown; `Frame.add_detections` fills it). One str on construction is given to every row.

    The empty values fill the rows of parts that lack a field when `merge` joins parts (an
    optional field present in any part is kept; so are all ``data`` keys). A part whose rows
    all hold the empty value does not constrain the per-row shape (K of ``landmarks``, D of
    ``embedding``), so NaN-filled landmarks of person rows merge with 68-point face landmarks.

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
    stage: np.ndarray | None = None

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
        stage = np.asarray("" if self.stage is None else self.stage, dtype=object)
        self.stage = np.full(n, stage.item(), dtype=object) if stage.ndim == 0 else stage
        self.data = {k: np.asarray(v) for k, v in self.data.items()}  # a copy: never alias the caller's dict
        if CLASS_NAME in self.data:
            self.data[CLASS_NAME] = self.data[CLASS_NAME].astype(object)
        elif len(self.class_id) == n:
            self.data[CLASS_NAME] = self._names_of(self.class_id, self.class_names)
        for name, arr in self._arrays():
            if len(arr) != n:
                raise ValueError(f"Detections.{name} has {len(arr)} rows, expected {n} (one per box)")

    @staticmethod
    def _names_of(class_id: np.ndarray, class_names: Sequence[str] | None) -> np.ndarray:
        """object (N,) names of ``class_id`` in ``class_names`` (the id as text when out of range)."""
        out = class_id.astype(str).astype(object)
        if class_names is not None and len(class_names):
            ok = (class_id >= 0) & (class_id < len(class_names))
            out[ok] = np.asarray(list(class_names), dtype=object)[class_id[ok]]
        return out

    def _arrays(self):
        yield "conf", self.conf
        yield "class_id", self.class_id
        for name in _OPTIONAL:
            arr = getattr(self, name)
            if arr is not None:
                yield name, arr
        yield "stage", self.stage
        for name, arr in self.data.items():
            yield f"data[{name!r}]", arr

    @classmethod
    def empty(cls, class_names: Sequence[str] | None = None) -> Detections:
        """Zero detections (all arrays with first axis 0)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), class_names)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Select rows by boolean mask (N,), integer array, slice or int (an int keeps the axis)."""
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
            stage=self.stage[index],
        )

    @classmethod
    def merge(cls, items: Sequence[Detections]) -> Detections:
        """Concatenate detections (rows in the order of ``items``), carrying every field.

        An optional field or ``data`` key present in any part is kept; the rows of parts that lack
        it get its empty value (see the class docstring). ``class_names`` is kept when every part
        with rows has the same table, else None (the per-row ``data[CLASS_NAME]`` is always kept).

        Raises:
            ValueError: the parts' arrays of one field have different per-row shapes (e.g.
                landmarks with different point counts K; parts whose rows are all empty values do
                not count), or a ``data`` key without an empty value (e.g. uint8) is missing from
                some part.
        """
        items = list(items)
        if not items:
            return cls.empty()
        with_rows = [d for d in items if len(d)]
        if len(with_rows) == 1 and all(_adds_nothing(d, with_rows[0]) for d in items):
            return with_rows[0]  # the per-frame case (one detector on an empty frame): nothing to merge
        tables = [None if d.class_names is None else list(d.class_names) for d in with_rows]
        names = (with_rows[0].class_names if all(t == tables[0] for t in tables) else None) if with_rows \
            else items[0].class_names
        rows = [len(d) for d in items]
        kw = {name: _concat(name, [getattr(d, name) for d in items], rows, _EMPTY[name]) for name in _OPTIONAL}
        keys = list(dict.fromkeys(k for d in items for k in d.data))
        data = {k: _concat(f"data[{k!r}]", [d.data.get(k) for d in items], rows, _NO_EMPTY) for k in keys}
        return cls(
            np.concatenate([d.xyxy for d in items]),
            np.concatenate([d.conf for d in items]),
            np.concatenate([d.class_id for d in items]),
            names,
            **kw,
            data=data,
            stage=np.concatenate([d.stage for d in items]),
        )

    def replace_rows(self, rows: Any, part: Detections) -> Detections:
        """A copy whose rows ``rows`` are ``part``'s rows (in order), the other rows unchanged.

        For stages that act on some rows only (e.g. face stages on the `FACE_CLASS` rows): select
        with ``self[rows]``, compute, then put the result back with this method. Fields are carried
        as in `merge` (a field ``part`` adds gets its empty value on the other rows).

        Args:
            rows: boolean mask (N,), integer indices or slice selecting the rows to replace.
            part: the new rows, one per selected row.

        Raises:
            ValueError: ``len(part)`` differs from the number of selected rows, an index repeats, or
                the fields cannot be merged (see `merge`).
        """
        n = len(self)
        idx = np.arange(n)[rows].reshape(-1)
        if len(part) != len(idx):
            raise ValueError(f"replace_rows: {len(idx)} rows selected but the new part has {len(part)}")
        keep = np.ones(n, bool)
        keep[idx] = False
        if keep.sum() != n - len(idx):
            raise ValueError("replace_rows: the row indices repeat")
        rest = np.flatnonzero(keep)
        merged = Detections.merge([self[rest], part])
        where = np.empty(n, np.intp)
        where[np.concatenate([rest, idx])] = np.arange(n)
        return merged[where]

    def class_mask(self, *names: str) -> np.ndarray:
        """bool (N,): rows whose class name is one of ``names`` (e.g. ``det.class_mask(FACE_CLASS)``)."""
        return np.isin(self.data[CLASS_NAME].astype(str), list(names))

    @property
    def class_name(self) -> list[str]:
        """Per-row class names (``data[CLASS_NAME]`` as a list; the id as text when no names are known)."""
        return [str(s) for s in self.data[CLASS_NAME]]

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready list of dicts, one per detection (frame pixels, rounded to 0.01 px).

        Keys: ``xyxy``, ``conf``, ``class_id``, ``class_name``, ``stage`` (``""`` when unknown), and
        ``landmarks``, ``identity``, ``similarity``, ``track_id`` when those fields are set. A row
        holding a field's empty value gets ``None`` (JSON null) for it, except ``track_id`` (-1).
        """
        out = []
        cls_names = self.class_name
        lm_empty = None if self.landmarks is None else np.isnan(self.landmarks).all(axis=(1, 2))
        for i in range(len(self)):
            rec: dict[str, Any] = {
                "xyxy": [round(float(v), 2) for v in self.xyxy[i]],
                "conf": round(float(self.conf[i]), 4),
                "class_id": int(self.class_id[i]),
                "class_name": cls_names[i],
                "stage": str(self.stage[i]),
            }
            if self.landmarks is not None:
                pts = np.round(self.landmarks[i].astype(float), 2).tolist()
                rec["landmarks"] = None if lm_empty[i] else [[None if v != v else v for v in p] for p in pts]
            if self.identity is not None:
                rec["identity"] = None if self.identity[i] is None else str(self.identity[i])
            if self.similarity is not None:
                s = float(self.similarity[i])
                rec["similarity"] = None if np.isnan(s) else round(s, 4)
            if self.track_id is not None:
                rec["track_id"] = int(self.track_id[i])
            out.append(rec)
        return out

    def to_supervision(self) -> Any:
        """These detections as a ``supervision.Detections`` (for supervision's annotators, zones and
        tools; needs ``pip install supervision``).

        ``xyxy``, ``conf`` → ``confidence``, ``class_id`` and ``track_id`` → ``tracker_id`` map
        one to one (arrays copied); the class names go to ``data["class_name"]`` (supervision's own
        key), the ``class_names`` table to ``metadata["class_names"]``, and ``landmarks``,
        ``embedding``, ``identity``, ``similarity``, ``stage`` and every ``data`` key to ``data``
        under their names, so `from_supervision` gives these detections back.

        Raises:
            ImportError: supervision is not installed (the message says how to install it).
        """
        sv = _supervision()
        data = {k: np.array(v, copy=True) for k, v in self.data.items()}
        for name in ("landmarks", "embedding", "identity", "similarity"):
            arr = getattr(self, name)
            if arr is not None:
                data[name] = arr.copy()
        data["stage"] = self.stage.copy()
        out = sv.Detections(
            xyxy=self.xyxy.copy(), confidence=self.conf.copy(), class_id=self.class_id.copy(),
            tracker_id=None if self.track_id is None else self.track_id.copy(), data=data,
        )
        if self.class_names is not None:
            out.metadata["class_names"] = list(self.class_names)
        return out

    @classmethod
    def from_supervision(cls, detections: Any, class_names: Sequence[str] | None = None) -> Detections:
        """`Detections` from a ``supervision.Detections`` (the inverse of `to_supervision`).

        Args:
            detections: ``xyxy`` (N, 4) pixels; ``confidence`` (1.0 when None), ``class_id`` (0 when
                None), ``tracker_id`` (→ ``track_id``) and ``data`` (``class_name``, the optional
                fields under their names, other keys kept in ``data``). Masks are not carried.
            class_names: class id → name table (default: ``metadata["class_names"]``), used when
                ``data`` has no ``class_name``.
        """
        n = len(detections.xyxy)
        if class_names is None:
            class_names = (getattr(detections, "metadata", None) or {}).get("class_names")
        data = {k: np.asarray(v) for k, v in (detections.data or {}).items()}
        optional = {name: data.pop(name) for name in ("landmarks", "embedding", "identity", "similarity")
                    if name in data}
        stage = data.pop("stage", None)
        return cls(
            np.asarray(detections.xyxy, np.float32),
            np.ones(n, np.float32) if detections.confidence is None else detections.confidence,
            np.zeros(n, np.int64) if detections.class_id is None else detections.class_id,
            class_names, track_id=detections.tracker_id, data=data, stage=stage, **optional,
        )

    def __eq__(self, other: object) -> bool:  # dataclass eq would compare arrays ambiguously
        if not isinstance(other, Detections):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not _same(a, b):
                    return False
            elif f.name == "data":
                if a.keys() != b.keys() or any(not _same(a[k], b[k]) for k in a):
                    return False
            elif (None if a is None else list(a)) != (None if b is None else list(b)):
                return False
        return True


def _supervision() -> Any:
    try:
        import supervision
    except ImportError as exc:
        raise ImportError(f"Detections.to_supervision needs supervision ({exc}): pip install -e '.[track]' "
                          "(or pip install supervision)") from None
    return supervision


__all__ = ["CLASS_NAME", "FACE_CLASS", "FACE_POINTS", "Detections"]
