"""Face stages: ``face_detect`` (boxes + 5 landmarks), ``landmarks`` (dense PFLD points) and
``face_recognize`` (ArcFace alignment + MobileFaceNet embedding + enrolment database).

Typical pipeline::

    stages:
      - face_detect: {model: yunet_n_dynamic}
      - landmarks: {model: pfld68_112}
      - face_recognize: {database: faces.npz}
      - annotate: {}

Chains that work (``streamcnn validate`` rejects the others, at the stage's line):

* ``face_detect`` (yunet or scrfd) → ``face_recognize``: the detector's 5 points are used;
* any ``face_detect`` (also ultraface) → ``landmarks: {model: pfld68_112}`` → ``face_recognize``:
  the 5 points are derived from the 68 (with yunet/scrfd the detector's 5 points are kept and used);
* ``face_detect`` (yunet or scrfd) → ``landmarks: {model: pfld106_lite_112}`` → ``face_recognize``
  (the detector's points are used; 106 points cannot be reduced to the 5 ArcFace points, so
  ultraface → pfld106 → face_recognize does not work);
* ``landmarks`` and ``face_recognize`` need a ``face_detect`` before them.

Decoders, crops and alignment live in the core (`streamcnn.ops.faces`, `streamcnn.ops.align`); the
embedder and database in `streamcnn.facedb`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import model_validator

from streamcnn import (
    FACE_CLASS,
    FACE_POINTS,
    Context,
    Detections,
    DetectorParams,
    Field,
    Frame,
    ModelParams,
    ModelStage,
    Params,
    Stage,
    StreamcnnError,
    find_local,
    hookimpl,
    lookup,
    sha256_of,
)
from streamcnn.facedb import (
    DEFAULT_COSINE_THRESHOLD,
    DEFAULT_EMBEDDING_MODEL,
    FaceDB,
    FaceDBError,
    FaceEmbedder,
    cosine_to_l2,
    l2_to_cosine,
    people_count,
)
from streamcnn.ops import FACE_FORMATS, FaceDetector, SquareCrops, detector_format, run_fixed_batch

# iBUG-68 → the 5 ArcFace points: eye centres (36-41, 42-47), nose tip 30, mouth corners 48, 54.
_IBUG_EYE_L, _IBUG_EYE_R, _IBUG_NOSE, _IBUG_MOUTH_L, _IBUG_MOUTH_R = slice(36, 42), slice(42, 48), 30, 48, 54
#: landmark points per face for each format (the detector formats give 5 or none)
_POINTS = {"yunet": 5, "scrfd": 5, "ultraface": 0, "ultraface_raw": 0, "pfld68": 68, "pfld106": 106}


def _format_of(params) -> str | None:
    """The format a stage's ``format``/``model`` options name (None: unknown until the file is read)."""
    if params.format != "auto":
        return params.format
    entry = lookup(params.model) or lookup(Path(str(params.model)).name)
    return entry.params.get("format") if entry is not None else None


def _face_chain(name: str, before: list) -> list:
    """The stages from the last ``face_detect`` before this one on, or raise when there is none."""
    idx = [i for i, (_, cls, _) in enumerate(before) if issubclass(cls, FaceDetectStage)]
    if not idx:
        raise ValueError(f"{name} needs a face_detect stage before it (face boxes); order: face_detect → "
                         "[landmarks] → face_recognize")
    return before[idx[-1]:]



class FaceDetectStage(ModelStage):
    """Detect faces; adds them to ``frame.detections`` (class ``face``, `streamcnn.FACE_CLASS`;
    ``landmarks`` (N, 5, 2) frame pixels for YuNet and SCRFD, in the order eye image-left, other
    eye, nose, mouth image-left, mouth image-right; no landmarks for UltraFace). The detections of
    earlier stages (e.g. a ``yolo`` stage's persons) are kept; ``replace: true`` drops them.

    Formats: ``yunet`` (score cls·obj), ``scrfd``, ``ultraface`` (post-processed export),
    ``ultraface_raw`` (prior decoding here). Dynamic-input models (``yunet_n_dynamic``,
    ``scrfd_2.5g_bnkps``) are fed the frame shrunk so its longer side is ≤ ``imgsz`` (default 640)
    and zero-padded right/bottom to multiples of 32; fixed-input models (``yunet_n_320_320``,
    UltraFace 320×240) use their own size. The start-up log line gives the working size. Raise
    ``imgsz`` for small faces in large frames (a 40-pixel face in a 1920-pixel frame is 13 pixels
    at 640 and may be missed or misidentified later); it costs time roughly with its square.

    Options: ``model`` (default ``yunet_n_dynamic``; also ``yunet_n_320_320``, ``scrfd_2.5g_bnkps``,
    ``ultraface_rfb320``, ``ultraface_rfb320_raw`` or an .onnx path), ``format`` (auto),
    ``conf``/``iou`` (per-format defaults), ``imgsz`` (640), ``max_det`` (100), ``replace`` (false),
    ``device`` (auto). Only yunet and scrfd give the 5 landmarks ``face_recognize`` needs; with ultraface put a
    ``landmarks: {model: pfld68_112}`` stage before ``face_recognize``.
    """

    stateless = True  # per frame: several frames may be in flight (see streamcnn.Stage)

    families = ("face_detect",)

    class Params(DetectorParams, ModelParams):
        model: str = Field("yunet_n_dynamic", description="registry name or .onnx path")
        format: Literal["auto", "yunet", "scrfd", "ultraface", "ultraface_raw"] = "auto"
        conf: float | None = Field(None, ge=0, le=1, description="score threshold (default per format: "
                                   "yunet 0.6, scrfd 0.5, ultraface 0.7)")
        iou: float | None = Field(None, ge=0, le=1, description="NMS IoU (default yunet 0.45, scrfd 0.4, "
                                  "ultraface 0.3)")
        imgsz: int = Field(640, ge=32, le=8192, description="longest input side for dynamic-input models, "
                           "pixels; raise it for small faces in large frames")
        max_det: int = Field(100, ge=1)


    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        p = params
        session, reg = self.load_model()
        if detector_format(p.format, reg) is None:
            said = reg.get("format")
            raise StreamcnnError(
                f"stage '{ctx.name}': cannot tell the face-detector format of {session.name}"
                f"{'' if said is None else f' (registry says {said!r})'}; set format: one of {', '.join(FACE_FORMATS)}"
            )
        self.detector = FaceDetector(session, p.format, p.conf, p.iou, p.imgsz, max_det=p.max_det,
                                     registry_params=reg)
        ctx.log.info("stage '%s': %s format=%s conf=%.2f iou=%.2f, working size %s", ctx.name,
                     session.name, self.detector.format, self.detector.conf, self.detector.iou,
                     self.detector.working_size())

    def process(self, frame: Frame) -> Frame:
        frame.add_detections(self.detector.detect(frame.image), self.ctx.name, self.params.replace)
        return frame


class LandmarksStage(ModelStage):
    """Dense landmarks on every face box of ``frame.detections`` (PFLD-68 or PFLD-106): the rows of
    class ``face`` (`streamcnn.FACE_CLASS`); other rows (e.g. persons from a ``yolo`` stage) are left
    as they are (their ``landmarks`` rows stay empty, NaN).

    Each face box gets a square crop of side ``crop_scale·max(w, h)`` around its centre (padded with
    black outside the frame, never clamped), resized to the model's 112×112; the model's
    normalised points map back exactly (``x = u·side + x0``). ``landmarks`` becomes (N, 68, 2) or
    (N, 106, 2) in frame pixels; an earlier 5-point set is kept in
    ``detections.data[FACE_POINTS]`` (``"kps5"``) for ``face_recognize``.

    Options: ``model`` (default ``pfld68_112``; also ``pfld106_lite_112`` or an .onnx path),
    ``format`` (auto: from the registry; ``pfld68`` / ``pfld106`` for other files), ``crop_scale``
    (pfld68 1.1, pfld106 1.2), ``device`` (auto). Needs a ``face_detect`` stage before it. For
    ``face_recognize`` after an ultraface detector use pfld68 (its 68 points give the 5 ArcFace
    points; 106 points do not).
    """

    stateless = True

    families = ("landmarks",)

    class Params(ModelParams):
        model: str = Field("pfld68_112", description="registry name or .onnx path")
        format: Literal["auto", "pfld68", "pfld106"] = "auto"
        crop_scale: float | None = Field(None, gt=0, description="crop side / max(w, h) (default pfld68 1.1, "
                                         "pfld106 1.2)")

    RECIPES = {"pfld68": {"crop_scale": 1.1, "rgb": True}, "pfld106": {"crop_scale": 1.2, "rgb": False}}

    @classmethod
    def check_chain(cls, params: Params, ctx: Context, before: list) -> None:
        _face_chain(ctx.name, before)

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.session, reg = self.load_model()
        fmt = params.format if params.format != "auto" else reg.get("format")
        if fmt not in self.RECIPES:
            raise StreamcnnError(f"stage '{ctx.name}': cannot tell the landmark format of {self.session.name}; "
                                 "set format: pfld68 or pfld106")
        self.format = fmt
        spec = self.session.inputs[0]
        self.input_name = spec.name
        self.size = int(spec.shape[3]) if isinstance(spec.shape[3], int) else 112
        self.fixed_batch = spec.shape[0] if isinstance(spec.shape[0], int) else None
        # the landmark tensor is the (last) rank-2 output (PFLD-106 also emits a feature map first)
        outs = [o for o in self.session.outputs if len(o.shape) == 2]
        if not outs:
            raise StreamcnnError(f"stage '{ctx.name}': {self.session.name} has no (N, 2K) landmark output")
        self.output = outs[-1].name
        self.scale = params.crop_scale or self.RECIPES[fmt]["crop_scale"]
        self.rgb = self.RECIPES[fmt]["rgb"]

    def points(self, image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """Landmarks float32 (N, K, 2) in frame pixels for (N, 4) boxes."""
        crops = SquareCrops.from_boxes(xyxy, self.size, self.scale)
        patches = crops.extract(image)
        blob = cv2.dnn.blobFromImages(list(patches), 1 / 255, None, (0, 0, 0), swapRB=self.rgb)
        out = run_fixed_batch(self.session, self.input_name, blob, [self.output], self.fixed_batch)[0]
        return crops.normalised_to_frame(out.reshape(len(blob), -1, 2))

    def process(self, frame: Frame) -> Frame:
        det = frame.detections
        faces = det.class_mask(FACE_CLASS)
        if not faces.any():
            return frame
        sub = det[faces]
        pts = self.points(frame.image, sub.xyxy)
        data = dict(sub.data)
        if sub.landmarks is not None and sub.landmarks.shape[1] == 5:
            data[FACE_POINTS] = sub.landmarks
        frame.detections = det.replace_rows(faces, dataclasses.replace(sub, landmarks=pts, data=data))
        return frame


def _finite_rows(points: np.ndarray) -> np.ndarray:
    """bool (N,): rows of (N, K, 2) points with every coordinate finite."""
    return np.isfinite(points).all(axis=(1, 2))


def five_points(det: Detections) -> np.ndarray:
    """The float32 (N, 5, 2) ArcFace points (frame pixels) of the face rows ``det``, per row from the
    first source that has them: ``data[FACE_POINTS]``, 5-point ``landmarks``, or derived from iBUG-68
    landmarks (eye centres, nose tip 30, mouth corners 48 and 54). Empty (NaN) rows do not count.

    Raises:
        StreamcnnError: a row has no usable landmarks (e.g. UltraFace boxes without a 68-point stage).
    """
    out = np.full((len(det), 5, 2), np.nan, np.float32)
    kps = det.data.get(FACE_POINTS)
    if kps is not None and kps.shape[1:] == (5, 2):
        out = np.where(_finite_rows(kps)[:, None, None], kps, out).astype(np.float32)
    lm = det.landmarks
    todo = ~_finite_rows(out)
    if lm is not None and lm.shape[1] == 5:
        out[todo] = lm[todo]
    elif lm is not None and lm.shape[1] == 68:
        d = lm[todo]
        out[todo] = np.stack([d[:, _IBUG_EYE_L].mean(1), d[:, _IBUG_EYE_R].mean(1), d[:, _IBUG_NOSE],
                              d[:, _IBUG_MOUTH_L], d[:, _IBUG_MOUTH_R]], axis=1)
    missing = ~_finite_rows(out)
    if missing.any():
        have = "no landmarks" if lm is None else f"{lm.shape[1]} landmarks per face"
        if not missing.all():
            have = f"no usable landmarks on {int(missing.sum())} of {len(det)} faces ({have})"
        raise StreamcnnError(f"face_recognize needs 5 face landmarks (a yunet/scrfd face_detect, or a pfld68 "
                             f"landmarks stage before it); the detections have {have}")
    return out


def _check_five_points(name: str, before: list) -> None:
    """Raise ValueError when the face stages before ``name`` cannot give 5 landmarks per face."""
    chain = _face_chain(name, before)
    det_name, _, det_params = chain[0]
    fmt = _format_of(det_params)
    if fmt is None:
        return  # an unregistered file: told at start-up
    points = _POINTS.get(fmt, 0)
    kps5 = False
    last = (det_name, det_params.model, fmt)
    for yaml_name, cls, params in chain[1:]:
        if not issubclass(cls, LandmarksStage):
            continue
        lfmt = _format_of(params)
        if lfmt is None:
            return
        kps5 = kps5 or points == 5
        points = _POINTS.get(lfmt, 0)
        last = (yaml_name, params.model, lfmt)
    if kps5 or points in (5, 68):
        return
    stage, model, f = last
    if points == 0:
        raise ValueError(
            f"{name} needs 5 face landmarks per face, but {stage} model {model} ({f}) gives none: use a yunet or "
            f"scrfd face_detect model, or put `landmarks: {{model: pfld68_112}}` between {stage} and {name}"
        )
    raise ValueError(
        f"{name} needs 5 face landmarks per face, but {stage} model {model} ({f}) gives {points} points, which "
        f"cannot be reduced to the 5 ArcFace points: use `landmarks: {{model: pfld68_112}}`, or a yunet or scrfd "
        "face_detect model (whose 5 points are kept)"
    )


class FaceRecognizeStage(ModelStage):
    """Identify faces against an enrolment database (``streamcnn faces enroll``).

    Per frame: 5-point similarity alignment of every face (the rows of class ``face``,
    `streamcnn.FACE_CLASS`) to the ArcFace template, one batched MobileFaceNet call, L2
    normalisation, cosine similarity against every template; the best match at or above the
    threshold gives ``identity``, otherwise ``unknown``. Writes ``detections.embedding`` (N, D) unit
    vectors, ``identity`` (N,) and ``similarity`` (N,) (the cosine of the best template, whatever
    ``metric`` is); other rows (e.g. persons from a ``yolo`` stage) keep their values and get the
    empty ones (NaN embedding and similarity, identity None).

    ``metric: l2`` takes ``threshold`` as an L2 distance between unit vectors; it is converted
    (cosine ≥ t ⇔ L2 ≤ sqrt(2 − 2t)), so both metrics make the same decisions. Default: cosine
    0.40 (L2 1.095), see `streamcnn.facedb`. The database is checked for changes about once per
    ``reload_interval`` seconds (mtime, size, inode) and reloaded when it changed; a database
    that does not exist yet is allowed (a warning; every face is ``unknown`` until it appears).

    Options: ``database`` (required), ``model`` (default ``mobilefacenet_128d``), ``threshold``
    (default cosine 0.40), ``metric`` (cosine), ``reload_interval`` (1.0 s), ``device`` (auto).

    Needs 5 landmarks per face from the stages before it; ``streamcnn validate`` checks the chain:
    yunet/scrfd ``face_detect`` → ``face_recognize``, or any ``face_detect`` → ``landmarks:
    {model: pfld68_112}`` → ``face_recognize`` (ultraface alone, or ultraface → pfld106, is refused).
    """

    families = ("embedding",)

    class Params(ModelParams):
        database: str = Field(description="enrolment database (.npz) made by `streamcnn faces enroll`")
        model: str = Field(DEFAULT_EMBEDDING_MODEL, description="embedding model, registry name or .onnx path")
        threshold: float | None = Field(None, description="match threshold in `metric` units (default cosine "
                                        f"{DEFAULT_COSINE_THRESHOLD}, L2 {cosine_to_l2(DEFAULT_COSINE_THRESHOLD):.3f})")
        metric: Literal["cosine", "l2"] = "cosine"
        reload_interval: float = Field(1.0, ge=0, description="seconds between database change checks; 0: never")

        @model_validator(mode="after")
        def _threshold_range(self):
            t = self.threshold
            if t is not None and self.metric == "cosine" and not -1 <= t <= 1:
                raise ValueError(f"a cosine threshold must be in [-1, 1], got {t}")
            if t is not None and self.metric == "l2" and not 0 <= t <= 2:
                raise ValueError(f"an L2 threshold between unit vectors must be in [0, 2], got {t}")
            return self

        def cosine_threshold(self) -> float:
            if self.threshold is None:
                return DEFAULT_COSINE_THRESHOLD
            return self.threshold if self.metric == "cosine" else l2_to_cosine(self.threshold)

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        super().check(params, ctx)
        path = ctx.resolve(params.database)
        if not path.exists():
            return  # allowed: every face is "unknown" until `streamcnn faces enroll` creates it
        local, _ = find_local(params.model, ctx.config_dir)
        try:
            FaceDB.load(path, sha256_of(local) if local is not None else None)
        except FaceDBError as e:
            raise ValueError(str(e)) from None

    @classmethod
    def check_chain(cls, params: Params, ctx: Context, before: list) -> None:
        _check_five_points(ctx.name, before)

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.embedder = FaceEmbedder(self.load_model()[0])
        self.db_path = ctx.resolve(params.database)
        self.threshold = params.cosine_threshold()
        self._sig = self._stat()
        if self._sig is None:
            self.db = FaceDB(model_sha256=self.embedder.sha256)
            ctx.log.warning("stage '%s': face database %s does not exist yet; every face is 'unknown' until it "
                            "is created (streamcnn faces enroll PEOPLE_DIR --out %s); it is picked up "
                            "without a restart", ctx.name, self.db_path, self.db_path)
        else:
            self.db = FaceDB.load(self.db_path, self.embedder.sha256)
        self._next_check = time.monotonic() + params.reload_interval
        ctx.log.info("stage '%s': database %s: %s; threshold cosine %.3f (L2 %.3f)", ctx.name,
                     self.db_path, people_count(len(self.db)), self.threshold, cosine_to_l2(self.threshold))

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.db_path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def maybe_reload(self) -> bool:
        """Reload the database if its file changed; True when a new database was loaded.

        A file that disappeared or cannot be loaded is logged once and the old database is kept.
        """
        sig = self._stat()
        if sig == self._sig:
            return False
        self._sig = sig
        if sig is None:
            self.ctx.log.warning("stage '%s': database %s disappeared; keeping the %s loaded",
                                 self.ctx.name, self.db_path, people_count(len(self.db)))
            return False
        try:
            db = FaceDB.load(self.db_path, self.embedder.sha256)
        except FaceDBError as e:
            self.ctx.log.error("stage '%s': database changed but cannot be used (%s); keeping the previous one",
                               self.ctx.name, e)
            return False
        self.db = db
        self.ctx.log.info("stage '%s': reloaded database %s: %s (%s)", self.ctx.name, self.db_path,
                          people_count(len(db)), ", ".join(db.names))
        return True

    def process(self, frame: Frame) -> Frame:
        interval = self.params.reload_interval
        if interval > 0:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + interval
                self.maybe_reload()
        det = frame.detections
        faces = det.class_mask(FACE_CLASS)
        sub = det[faces]
        if len(sub):
            emb = self.embedder.embed(frame.image, five_points(sub))
        else:
            emb = np.zeros((0, self.embedder.dim), np.float32)
        identity, sim = self.db.match(emb, self.threshold)
        sub = dataclasses.replace(sub, embedding=emb, identity=identity, similarity=sim)
        frame.detections = det.replace_rows(faces, sub)
        return frame


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"face_detect": FaceDetectStage, "landmarks": LandmarksStage, "face_recognize": FaceRecognizeStage}
