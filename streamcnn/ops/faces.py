"""Face detector decoders (vectorised numpy) and `FaceDetector`, the model runner used by the
``face_detect`` stage and by enrolment.

Every decoder returns, for **all** rows of the head (no thresholding), in network-input pixels:
``xyxy`` float32 (N, 4), ``score`` float32 (N,) in [0, 1] and ``kps`` float32 (N, 5, 2) or None.
`select_faces` then thresholds, maps to frame pixels and runs NMS (`streamcnn.ops.nms`).

Rules (written from each origin repository's demo):

* YuNet (libfacedetection.train ``tools/compare_inference.py``; OpenCV ``FaceDetectorYN``), strides
  8/16/32, one row per cell, row-major (``row = gy·W/s + gx``)::

      cx = (gx + dx)·s    cy = (gy + dy)·s    w = exp(lw)·s    h = exp(lh)·s
      point_i = ((gx + kx_i)·s, (gy + ky_i)·s)
      score = cls·obj            (OpenCV FaceDetectorYN: sqrt(cls·obj), ``score_mode="sqrt"``)

* SCRFD (InsightFace ``scrfd.py``), strides 8/16/32, **2 anchors per cell** (consecutive row pairs
  share the centre ``(gx·s, gy·s)``), distances in stride units::

      x1 = cx − l·s   y1 = cy − t·s   x2 = cx + r·s   y2 = cy + b·s   point_i = centre + k_i·s

* UltraFace (Linzaer Ultra-Light-Fast-Generic-Face-Detector, ``vision/utils/box_utils.py``), SSD
  priors for a 320×240 input; the post-processed export already gives normalised corners, the raw
  export gives regressions decoded against `ultraface_priors` with variances 0.1 (centre) and 0.2
  (size)::

      cx = pcx + l0·0.1·pw   cy = pcy + l1·0.1·ph   w = pw·exp(l2·0.2)   h = ph·exp(l3·0.2)

  The feature maps are ``ceil(320/s) × ceil(240/s)`` for s = 8, 16, 32, 64, i.e. 40×30, 20×15,
  10×8, 5×4 (4420 priors), and prior centres are ``(i + 0.5)/fw, (j + 0.5)/fh``, so the *effective*
  y-steps of the last two levels are 240/8 = 30 px and 240/4 = 60 px, not 32 and 64.

Landmark order of the 5 points (YuNet and SCRFD, in image terms): eye on the image-left, other eye,
nose tip, mouth corner image-left, mouth corner image-right.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ..detections import FACE_CLASS, Detections
from .boxes import fast_nms
from .letterbox import LetterboxInfo, letterbox
from .yolo import make_grid

FaceFormat = Literal["yunet", "scrfd", "ultraface", "ultraface_raw"]
FACE_FORMATS: tuple[str, ...] = ("yunet", "scrfd", "ultraface", "ultraface_raw")

#: Per-format defaults: score threshold and NMS IoU (as verified on real photos: YuNet cls·obj > 0.6 and IoU 0.45;
#: SCRFD 0.5 / 0.4; UltraFace demo 0.7 / hard NMS 0.3).
FORMAT_DEFAULTS: dict[str, dict[str, float]] = {
    "yunet": {"conf": 0.6, "iou": 0.45},
    "scrfd": {"conf": 0.5, "iou": 0.4},
    "ultraface": {"conf": 0.7, "iou": 0.3},
    "ultraface_raw": {"conf": 0.7, "iou": 0.3},
}

ULTRAFACE_MIN_BOXES: tuple[tuple[int, ...], ...] = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
ULTRAFACE_STRIDES: tuple[int, ...] = (8, 16, 32, 64)


# --------------------------------------------------------------------------------------- grids
@functools.lru_cache(maxsize=32)
def cell_centres(width: int, height: int, strides: tuple[int, ...], per_cell: int = 1
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid cells of a multi-level head, level by level, row-major, ``per_cell`` rows per cell.

    Args:
        width, height: network input size in pixels (multiples of every stride).
        strides: level strides in pixels, in output order.
        per_cell: rows per cell (SCRFD: 2 anchors sharing the cell).

    Returns:
        ``gx``, ``gy``, ``stride``: float32 (N,) cell column, row and stride (read-only, cached).
    """
    # the YOLO grid builder, with per_cell unit "anchors" repeated cell by cell (SCRFD's layout)
    grid = make_grid(width, height, list(strides), [[(1.0, 1.0)] * per_cell for _ in strides], anchor_major=False)
    out = (grid.gx, grid.gy, grid.stride)
    for a in out:
        a.flags.writeable = False
    return out  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def ultraface_priors(width: int = 320, height: int = 240,
                     strides: tuple[int, ...] = ULTRAFACE_STRIDES,
                     min_boxes: tuple[tuple[int, ...], ...] = ULTRAFACE_MIN_BOXES) -> np.ndarray:
    """SSD priors of UltraFace, float32 (P, 4) ``cx, cy, w, h`` normalised to [0, 1] (read-only).

    Feature map of level k: ``fw = ceil(width/s_k)``, ``fh = ceil(height/s_k)``; prior centre
    ``((i + 0.5)/fw, (j + 0.5)/fh)``, size ``(m/width, m/height)`` for each min size m; all clamped
    to [0, 1]. Order: level, row j, column i, min size. 320×240 → 4420 priors.
    """
    rows = []
    for s, sizes in zip(strides, min_boxes):
        fw, fh = math.ceil(width / s), math.ceil(height / s)
        j, i = np.mgrid[0:fh, 0:fw]
        cx = np.repeat(((i.reshape(-1) + 0.5) / fw), len(sizes))
        cy = np.repeat(((j.reshape(-1) + 0.5) / fh), len(sizes))
        m = np.tile(np.asarray(sizes, np.float64), fw * fh)
        rows.append(np.stack([cx, cy, m / width, m / height], axis=1))
    pri = np.clip(np.concatenate(rows), 0.0, 1.0).astype(np.float32)
    pri.flags.writeable = False
    return pri


# ------------------------------------------------------------------------------------ decoders
def decode_yunet(outputs: list[np.ndarray], width: int, height: int,
                 strides: tuple[int, ...] = (8, 16, 32), score_mode: Literal["product", "sqrt"] = "product"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode YuNet's 12 outputs (cls×3, obj×3, bbox×3, kps×3, each ``[1, rows, k]``).

    Args:
        outputs: the model outputs in declared order (batch item 0 is used).
        width, height: the network input size in pixels (multiples of 32).
        score_mode: ``product`` = cls·obj (libfacedetection.train), ``sqrt`` = sqrt(cls·obj)
            (OpenCV ``FaceDetectorYN``). cls and obj are clipped to [0, 1] first, as OpenCV does.

    Returns:
        xyxy float32 (N, 4), score float32 (N,), kps float32 (N, 5, 2), network pixels.

    Raises:
        ValueError: the row counts do not match the input size.
    """
    n = len(strides)
    cls = np.concatenate([o[0].reshape(-1) for o in outputs[0:n]])
    obj = np.concatenate([o[0].reshape(-1) for o in outputs[n:2 * n]])
    box = np.concatenate([o[0].reshape(-1, 4) for o in outputs[2 * n:3 * n]])
    kps = np.concatenate([o[0].reshape(-1, 10) for o in outputs[3 * n:4 * n]])
    gx, gy, s = cell_centres(width, height, tuple(strides))
    if len(gx) != len(cls):
        raise ValueError(f"YuNet output has {len(cls)} rows, expected {len(gx)} for a {width}x{height} input")
    score = np.clip(cls, 0, 1) * np.clip(obj, 0, 1)
    if score_mode == "sqrt":
        score = np.sqrt(score)
    cx, cy = (gx + box[:, 0]) * s, (gy + box[:, 1]) * s
    w, h = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    pts = kps.reshape(-1, 5, 2)
    pts = (pts + np.stack([gx, gy], axis=1)[:, None, :]) * s[:, None, None]
    return xyxy.astype(np.float32), score.astype(np.float32), pts.astype(np.float32)


def decode_scrfd(outputs: list[np.ndarray], width: int, height: int,
                 strides: tuple[int, ...] = (8, 16, 32), anchors: int = 2
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Decode SCRFD's outputs (scores×3, distances×3[, keypoints×3], each ``[rows, k]``).

    Returns:
        xyxy float32 (N, 4), score float32 (N,), kps float32 (N, 5, 2) or None (no keypoint
        outputs), network pixels.

    Raises:
        ValueError: the row counts do not match the input size.
    """
    n = len(strides)
    score = np.concatenate([o.reshape(-1) for o in outputs[0:n]])
    dist = np.concatenate([o.reshape(-1, 4) for o in outputs[n:2 * n]])
    gx, gy, s = cell_centres(width, height, tuple(strides), anchors)
    if len(gx) != len(score):
        raise ValueError(f"SCRFD output has {len(score)} rows, expected {len(gx)} for a {width}x{height} input")
    cx, cy = gx * s, gy * s
    d = dist * s[:, None]
    xyxy = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1)
    pts = None
    if len(outputs) >= 3 * n:
        kps = np.concatenate([o.reshape(-1, 10) for o in outputs[2 * n:3 * n]]).reshape(-1, 5, 2)
        pts = (np.stack([cx, cy], axis=1)[:, None, :] + kps * s[:, None, None]).astype(np.float32)
    return xyxy.astype(np.float32), score.astype(np.float32), pts


def decode_ultraface_raw(locations: np.ndarray, priors: np.ndarray,
                         center_variance: float = 0.1, size_variance: float = 0.2) -> np.ndarray:
    """SSD regressions (P, 4) ``l0..l3`` + priors (P, 4) → normalised corners float32 (P, 4).

    ``cx = pcx + l0·cv·pw``, ``cy = pcy + l1·cv·ph``, ``w = pw·exp(l2·sv)``, ``h = ph·exp(l3·sv)``
    (SSD, Liu et al. 2016; UltraFace ``convert_locations_to_boxes``).
    """
    loc = np.asarray(locations, np.float32).reshape(-1, 4)
    if len(loc) != len(priors):
        raise ValueError(f"UltraFace output has {len(loc)} rows, expected {len(priors)} priors")
    cxcy = priors[:, :2] + loc[:, :2] * center_variance * priors[:, 2:]
    wh = priors[:, 2:] * np.exp(loc[:, 2:] * size_variance)
    return np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1).astype(np.float32)


def select_faces(xyxy: np.ndarray, score: np.ndarray, kps: np.ndarray | None, info: LetterboxInfo,
                 conf: float, iou: float, max_det: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Threshold (score > conf), map network pixels → frame pixels, clip boxes, drop empty boxes, NMS.

    Returns:
        xyxy float32 (K, 4), score float32 (K,), kps float32 (K, 5, 2) or None (points not
        clipped: a landmark may lie just outside the frame), best first.
    """
    keep = score > conf
    box = info.boxes_to_frame(xyxy[keep])
    sc = score[keep]
    pts = None if kps is None else info.points_to_frame(kps[keep])
    ok = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    box, sc = box[ok], sc[ok]
    pts = None if pts is None else pts[ok]
    idx = fast_nms(box, sc, iou, max_det=max_det)
    return box[idx], sc[idx].astype(np.float32), None if pts is None else pts[idx]


# ---------------------------------------------------------------------------------- preprocess
def shrink_and_pad(image: np.ndarray, max_side: int | None, multiple: int = 32
                   ) -> tuple[np.ndarray, LetterboxInfo]:
    """Shrink so the longer side is ≤ ``max_side`` (never enlarge), then zero-pad right/bottom
    to multiples of ``multiple`` (YuNet/SCRFD dynamic-input recipe). Not to be
    confused with `streamcnn.ops.image.pad_to_multiple` (reflect padding, no resizing).

    Returns:
        the uint8 canvas (H', W', 3) and the mapping (per-axis scale = resized / original size,
        exact for cv2.resize; pads 0).
    """
    h, w = image.shape[:2]
    r = 1.0 if not max_side else min(1.0, max_side / max(w, h))
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    img = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    pw, ph = -nw % multiple, -nh % multiple
    if pw or ph:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return img, LetterboxInfo(nw / w, nh / h, 0, 0, w, h)


def _blob(img: np.ndarray, rgb: bool, mean: float, scale: float) -> np.ndarray:
    """uint8 H×W×3 BGR → float32 (1, 3, H, W) ``(x − mean)·scale``."""
    return cv2.dnn.blobFromImage(img, scale, None, (mean, mean, mean), swapRB=rgb)


def run_fixed_batch(session, feed_name: str, blob: np.ndarray, output_names: list[str] | None = None,
                    fixed_batch: int | None = None) -> list[np.ndarray]:
    """Run ``session`` on an (N, ...) ``blob``: one call for a dynamic batch axis, else one call
    per item (``fixed_batch`` = the model's declared batch size, 1 in practice) with the outputs
    concatenated along axis 0. Used by the landmark and embedding models."""
    if fixed_batch is None or len(blob) == fixed_batch:
        return session.run({feed_name: blob}, output_names)
    parts = [session.run({feed_name: blob[i:i + 1]}, output_names) for i in range(len(blob))]
    if not parts:
        return session.run({feed_name: blob[:0]}, output_names)
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def detector_format(format: str, registry_params: dict) -> str | None:
    """The head format: ``format`` unless ``auto``, else the registry's (None when unknown or not a
    face-detector format)."""
    fmt = format if format != "auto" else registry_params.get("format")
    return fmt if fmt in FACE_FORMATS else None


# ------------------------------------------------------------------------------------ runner
class FaceDetector:
    """One face-detection model: preprocessing, ONNX call, decoding, NMS.

    Args:
        model: a `streamcnn.runtime.ModelSession` made through the core (``ModelStage.load_model``,
            or `streamcnn.registry.resolve_model` + `streamcnn.runtime.get_session`), or — for
            scripts — a registry name (``yunet_n_dynamic``, ``yunet_n_320_320``,
            ``scrfd_2.5g_bnkps``, ``ultraface_rfb320``, ``ultraface_rfb320_raw``) or ``.onnx`` path,
            resolved the same way.
        format: head format; ``auto`` takes it from ``registry_params``.
        conf, iou: score threshold and NMS IoU (None: the format's default, `FORMAT_DEFAULTS`).
        imgsz: longest network-input side for dynamic-input models (YuNet/SCRFD), in pixels;
            fixed-input models use their own size.
        device, config_dir, stage: used only when ``model`` is a name or path (device, folder that
            relative paths resolve against, name for log lines).
        max_det: keep at most this many faces.
        score_mode: YuNet only: ``product`` (cls·obj, the origin repository) or ``sqrt``
            (sqrt(cls·obj), OpenCV ``FaceDetectorYN``; use with thresholds tuned for OpenCV).
        registry_params: the registry's parameters for the model when ``model`` is a session.

    Raises:
        ModelNotFoundError, StreamcnnError: model missing or unloadable; ValueError: unknown format.
    """

    def __init__(self, model, format: str = "auto", conf: float | None = None,
                 iou: float | None = None, imgsz: int = 640, device: str = "auto",
                 config_dir: Path | None = None, stage: str = "face_detect", max_det: int | None = 100,
                 score_mode: Literal["product", "sqrt"] = "product", registry_params: dict | None = None) -> None:
        if isinstance(model, (str, Path)):
            from ..registry import resolve_model
            from ..runtime import get_session

            path, registry_params = resolve_model(model, config_dir)
            model = get_session(path, device, stage=stage)
        reg = registry_params or {}
        fmt = detector_format(format, reg)
        if fmt is None:
            said = format if format != "auto" else reg.get("format")
            raise ValueError(
                f"cannot tell the face-detector format of {Path(str(model.path or model.name)).name}"
                f"{'' if said is None else f' (format {said!r})'}; face-detector formats: {', '.join(FACE_FORMATS)}"
            )
        self.format: str = fmt
        self.session = model
        spec = self.session.inputs[0]
        self.input_name = spec.name
        h, w = spec.shape[2], spec.shape[3]
        self.fixed: tuple[int, int] | None = (w, h) if isinstance(w, int) and isinstance(h, int) else None
        if fmt.startswith("ultraface") and self.fixed is None:
            self.fixed = (320, 240)
        self.imgsz = imgsz
        d = FORMAT_DEFAULTS[fmt]
        self.conf = d["conf"] if conf is None else conf
        self.iou = d["iou"] if iou is None else iou
        self.max_det = max_det
        self.score_mode = score_mode
        self.priors = ultraface_priors(*self.fixed) if fmt == "ultraface_raw" else None

    @property
    def has_landmarks(self) -> bool:
        """True for the 5-point formats (YuNet, SCRFD)."""
        return self.format in ("yunet", "scrfd")

    def working_size(self) -> str:
        """The network input size in words, for start-up log lines."""
        if self.fixed is not None:
            return f"fixed {self.fixed[0]}x{self.fixed[1]} input"
        return f"longer side <= {self.imgsz} (imgsz), padded to multiples of 32"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxInfo]:
        """uint8 H×W×3 BGR → (float32 (1, 3, h, w) blob, mapping network → frame pixels)."""
        fmt = self.format
        if fmt.startswith("ultraface"):  # plain resize, RGB, (x − 127)/128
            canvas, info = letterbox(image, *self.fixed, mode="stretch")
            return _blob(canvas, True, 127.0, 1 / 128), info
        if self.fixed is not None:  # fixed-size YuNet/SCRFD: top-left letterbox, zero padding
            canvas, info = letterbox(image, *self.fixed, mode="top-left", pad_value=0)
        else:
            canvas, info = shrink_and_pad(image, self.imgsz, 32)
        if fmt == "yunet":  # BGR 0..255
            return _blob(canvas, False, 0.0, 1.0), info
        return _blob(canvas, True, 127.5, 1 / 128), info  # scrfd: RGB (x − 127.5)/128

    def decode(self, outputs: list[np.ndarray], net_w: int, net_h: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """All rows of the raw outputs → (xyxy, score, kps or None) in network pixels."""
        fmt = self.format
        if fmt == "yunet":
            return decode_yunet(outputs, net_w, net_h, score_mode=self.score_mode)
        if fmt == "scrfd":
            return decode_scrfd(outputs, net_w, net_h)
        scores = outputs[0][0, :, 1]  # softmax already applied in both UltraFace files
        if fmt == "ultraface":
            box01 = outputs[1][0]
        else:
            box01 = decode_ultraface_raw(outputs[1][0], self.priors)
        return box01 * np.array([net_w, net_h, net_w, net_h], np.float32), scores.astype(np.float32), None

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in a uint8 H×W×3 BGR image, best first.

        Returns:
            `Detections` in frame pixels: ``xyxy`` float32 (N, 4), ``conf`` float32 (N,) in [0, 1],
            ``class_id`` 0 and class name `FACE_CLASS` on every row, ``landmarks`` float32 (N, 5, 2)
            (order: see the module docstring) for YuNet and SCRFD, None for UltraFace; ``stage``
            ``""`` (`Frame.add_detections` names the stage).
        """
        blob, info = self.preprocess(image)
        outputs = self.session.run({self.input_name: blob})
        xyxy, score, kps = self.decode(outputs, blob.shape[3], blob.shape[2])
        box, sc, pts = select_faces(xyxy, score, kps, info, self.conf, self.iou, self.max_det)
        return Detections(box, sc, np.zeros(len(box), np.int64), (FACE_CLASS,), landmarks=pts)


__all__ = [
    "FACE_FORMATS", "FORMAT_DEFAULTS", "FaceDetector", "cell_centres", "decode_scrfd",
    "decode_ultraface_raw", "decode_yunet", "detector_format", "run_fixed_batch", "select_faces", "shrink_and_pad",
    "ultraface_priors",
]
