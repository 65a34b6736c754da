"""Built-in stage ``yolo``: YOLO object detection (letterbox → ONNX model → decode → NMS).

One stage for several head families (``format``); the shared steps — letterbox, grids and
decoding rules, IoU/NMS, model resolution, sessions — live in the core (`streamcnn.ops`,
`streamcnn.registry`, `streamcnn.runtime`). Per-model facts (input size, colour order, resize
mode, anchors, strides, whether activations are inside the graph) come from, in order: the
YAML options, the model registry (``streamcnn/registry.yaml``), the model's
Ultralytics metadata (``names``, ``stride``, ``imgsz``).
"""

from __future__ import annotations

import ast
import logging
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator

from streamcnn import (
    Context,
    Detections,
    DetectorParams,
    Field,
    Frame,
    ModelParams,
    ModelStage,
    Stage,
    StreamcnnError,
    find_local,
    format_shape,
    hookimpl,
    suggest,
)
from streamcnn.ops import (
    YOLO_FORMATS,
    Grid,
    LetterboxBlob,
    decode_anchor_grid,
    decode_fastestv2,
    decode_v5,
    decode_v8,
    decode_yolox,
    guess_formats,
    head_fit,
    make_grid,
    select,
)

log = logging.getLogger("streamcnn.yolo")

Format = Literal["auto", "yolox", "v8", "v5", "v5-raw", "v3", "fastestv2"]
FORMATS = YOLO_FORMATS


def coco80() -> list[str]:
    """The 80 COCO class names in the index order of COCO-trained YOLO models."""
    text = resources.files("streamcnn").joinpath("data/coco80.names").read_text(encoding="utf-8")
    return [x for x in text.splitlines() if x]


# -- head shapes -------------------------------------------------------------------------------
# `head_fit` / `guess_formats` (streamcnn.ops) check the outputs at start-up; a model of another
# family gets a hint naming the stage for it (`ModelStage.family_mismatch`).


def _or(items: list[str]) -> str:
    quoted = [repr(x) for x in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# -- class names -------------------------------------------------------------------------------
def read_names(path: Path) -> list[str]:
    """Class names from a file, one per line (blank lines ignored).

    Raises:
        ValueError: the file is missing or has no names.
    """
    if not path.is_file():
        raise ValueError(f"names file {path} not found")
    names = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not names:
        raise ValueError(f"names file {path} has no names (expected one class name per line)")
    return names


def resolve_names(names_file: Path | None, meta: dict[str, str], model_name: str) -> tuple[list[str], str]:
    """The class names and where they came from, in this order: the ``names`` file, the model's
    Ultralytics metadata (``names``), COCO-80. Raises ValueError for a bad names file."""
    if names_file is not None:
        return read_names(names_file), f"names file {names_file}"
    names = names_from_meta(meta)
    if names is not None:
        return names, f"metadata of {model_name}"
    return coco80(), "COCO-80"


def names_from_meta(meta: dict[str, str]) -> list[str] | None:
    """The Ultralytics ``names`` metadata (``{0: 'person', ...}`` or a list) as a list, else None."""
    if "names" not in meta:
        return None
    try:
        names = ast.literal_eval(meta["names"])
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    return None


def _file_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props, read without a session (cheap; {} when unreadable)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a broken model file is reported when the session loads
        return {}
    return {p.key: p.value for p in model.metadata_props}


def class_indices(classes: list[int | str], names: list[str], origin: str, count: int | None = None) -> list[int]:
    """``classes`` (ids or names) as ids.

    Raises:
        ValueError: naming every unknown name (each with a did-you-mean) and every id outside
            ``0..count-1`` (``count`` defaults to ``len(names)``); ``origin`` says where the names came from.
    """
    count = len(names) if count is None else count
    ids: list[int] = []
    unknown: list[str] = []
    bad_ids: list[int] = []
    for c in classes:
        if isinstance(c, str) and c.strip().lstrip("-").isdigit() and c not in names:
            c = int(c)
        if isinstance(c, int):
            (ids if 0 <= c < count else bad_ids).append(c)
        elif c in names:
            ids.append(names.index(c))
        else:
            unknown.append(c)
    problems = []
    if unknown:
        which = "; ".join(f"{c!r}{suggest(c, names)}" for c in unknown)
        problems.append(f"unknown class name{'s' if len(unknown) > 1 else ''} in `classes`: {which}")
    if bad_ids:
        problems.append(f"class id{'s' if len(bad_ids) > 1 else ''} {', '.join(map(str, bad_ids))} in `classes` "
                        f"out of range 0..{count - 1}")
    if problems:
        raise ValueError("; ".join(problems) + f" ({count} classes, names from {origin})")
    return ids



class YoloStage(ModelStage):
    """Detect objects; adds them to ``frame.detections`` (xyxy in frame pixels, conf, class_id, names;
    the detections of earlier stages are kept unless ``replace: true``).

    Formats (see `streamcnn.ops.yolo` for the rules): ``yolox`` (anchor-free raw grid),
    ``v8`` (YOLOv8/YOLO11 ``1×(4+C)×N`` decoded), ``v5`` (YOLOv5 export ``N×(5+C)`` decoded),
    ``v5-raw`` (anchor grid, YOLOv5 rule), ``v3`` (anchor grid, YOLOv3/v2 rule),
    ``fastestv2`` (Yolo-FastestV2 cell rows).

    Raises (at validate, from `check`): ModelNotFoundError, ValueError for a missing ``names``
    file, unknown class names or out-of-range class ids in ``classes``.
    Raises (at start-up): ModelNotFoundError, StreamcnnError for an unknown format, a model whose
    declared outputs do not fit ``format`` (with the format they look like), a format that needs
    ``anchors`` without them, or a ``names`` file whose length differs from the model's class count.
    """

    families = ("yolo",)
    stateless = True  # per frame: several frames may be in flight (see streamcnn.Stage)

    class Params(DetectorParams, ModelParams):
        model: str = Field(description="ONNX file path or registry name, e.g. yolox_nano_coco_416")
        format: Format = "auto"
        conf: float = Field(0.25, ge=0, le=1, description="score threshold (obj × class probability)")
        iou: float = Field(0.45, ge=0, le=1, description="NMS IoU threshold (suppress when IoU > iou)")
        agnostic: bool = Field(False, description="NMS across classes instead of per class")
        classes: list[int | str] | None = Field(None, description="class ids or names to keep")
        max_det: int = Field(300, ge=1)
        imgsz: int | tuple[int, int] | None = Field(
            None, description="network input size: a side, [w, h] or 'WxH' (fixed-size models use their own)")

        @field_validator("imgsz", mode="before")
        @classmethod
        def _wxh(cls, v: object) -> object:
            if isinstance(v, str):
                w, sep, h = v.lower().partition("x")
                if not (sep and w.strip().isdigit() and h.strip().isdigit()):
                    raise ValueError(f"imgsz must be a side in pixels, [w, h] or 'WxH' like '416x416', got {v!r}")
                return (int(w), int(h))
            return v
        names: str | None = Field(None, description="class names file (one per line)")
        anchors: list[list[tuple[float, float]]] | None = Field(None, description="per level (w, h) pixels")
        strides: list[int] | None = None
        color: Literal["bgr", "rgb"] | None = None
        resize: Literal["center", "top-left", "stretch"] | None = None
        scale: float | None = Field(None, gt=0, description="pixel multiplier, e.g. 1/255")
        logits: bool | None = Field(None, description="head emits logits (σ applied by the decoder)")

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """At validate time: the model file, the ``names`` file, and every entry of ``classes``.

        Class names come from the ``names`` file, else the model's Ultralytics metadata when
        the model file is local, else COCO-80.

        Raises:
            ModelNotFoundError; ValueError for a missing names file, unknown class names (all of
            them, each with a did-you-mean) and class ids out of range.
        """
        super().check(params, ctx)
        path, _ = find_local(params.model, ctx.config_dir)
        meta = _file_metadata(path) if path is not None and not params.names else {}
        names, origin = resolve_names(ctx.resolve(params.names) if params.names else None, meta,
                                      path.name if path is not None else str(params.model))
        if params.classes is not None:
            class_indices(params.classes, names, origin)

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.session, reg = self.load_model()
        meta = self.session.metadata
        spec = self.session.inputs[0]
        self.input_name = spec.name
        fixed_h, fixed_w = spec.shape[2], spec.shape[3]

        def pick(key, default=None):
            value = getattr(params, key)
            return value if value is not None else reg.get(key, default)

        fmt = params.format if params.format != "auto" else reg.get("format") or self._guess_format(meta)
        if fmt not in FORMATS:
            raise StreamcnnError(
                f"stage '{ctx.name}': model {self.session.name} has format {fmt!r} in the model registry, "
                f"which the yolo stage cannot decode (formats: {', '.join(FORMATS)}){self._family_hint()}"
            )
        self.format = fmt
        size = params.imgsz or reg.get("imgsz") or _meta_imgsz(meta)
        if isinstance(size, int):
            size = (size, size)
        if size is not None:
            size = (int(size[0]), int(size[1]))
        if isinstance(fixed_w, int) and isinstance(fixed_h, int):
            if size is not None and tuple(size) != (fixed_w, fixed_h):
                ctx.log.warning(
                    "stage '%s': imgsz %dx%d does not match the fixed input %dx%d of %s; using the model's size",
                    ctx.name, size[0], size[1], fixed_w, fixed_h, self.session.name,
                )
            size = (fixed_w, fixed_h)
        if size is None:
            size = (640, 640)
        self.net_w, self.net_h = size
        self.color = pick("color", "rgb" if fmt == "v8" else "bgr")
        self.resize = pick("resize", "center")
        self.scale = float(pick("scale", 1 / 255))
        self.to_blob = LetterboxBlob(self.net_w, self.net_h, self.resize, scale=self.scale, swap_rb=self.color == "rgb")
        self.logits = bool(pick("logits", fmt in ("v5-raw", "v3")))
        strides = pick("strides") or _meta_strides(meta) or [8, 16, 32]
        anchors = pick("anchors")
        num_classes = self._check_head(fmt, list(strides), len(anchors[0]) if anchors else None)
        self.grid: Grid | None = None
        if fmt in ("yolox", "v5-raw", "v3", "fastestv2"):
            if fmt != "yolox" and anchors is None:
                raise StreamcnnError(
                    f"stage '{ctx.name}': format {fmt!r} needs `anchors` (per level, (w, h) in input pixels) "
                    f"for {self.session.name}"
                )
            self.grid = make_grid(self.net_w, self.net_h, list(strides), anchors,
                                  anchor_major=fmt != "fastestv2")
        self.num_anchors = len(anchors[0]) if anchors else 1
        self.names = self._names(meta, num_classes)
        keep = params.classes
        count = num_classes or len(self.names)
        origin = f"{self.session.name} ({count} classes)" if num_classes else self._names_origin
        self.keep_classes = None if keep is None else np.array(
            class_indices(keep, self.names, origin, count), np.int64)
        ctx.log.info(
            "stage '%s': %s format=%s input %dx%d %s resize=%s", ctx.name, self.session.name, fmt,
            self.net_w, self.net_h, self.color.upper(), self.resize,
        )

    # -- set-up helpers --------------------------------------------------------------------
    def _family_hint(self) -> str:
        mismatch = self.family_mismatch(self.params.model)
        if mismatch is None:
            return ""
        entry = mismatch.entry
        use = f": use the '{mismatch.stage}' stage" if mismatch.stage else ""
        return f"; the registry lists {entry.name} as a '{entry.family}' model, not a YOLO detector{use}"

    def _check_head(self, fmt: str, strides: list[int], per_cell: int | None) -> int | None:
        """Raise StreamcnnError when the declared outputs do not fit ``fmt``; return the class count."""
        outs = self.session.outputs
        shapes = [tuple(o.shape) for o in outs]
        expected, num_classes = head_fit(fmt, shapes, self.net_w, self.net_h, strides, per_cell)
        if expected is None:
            return num_classes
        if fmt in ("v5-raw", "v3") and len(outs) > 1:
            shown = ", ".join(f"'{o.name}' {format_shape(o.shape)}" for o in outs[:4])
            what = f"outputs {shown}{', …' if len(outs) > 4 else ''}"
        else:
            what = f"output '{outs[0].name}' {format_shape(outs[0].shape)}" if outs else "no output"
            if len(outs) > 1:
                what += f" (1st of {len(outs)})"
        guesses = [g for g in guess_formats(shapes, self.net_w, self.net_h) if g != fmt]
        if guesses:
            hint = f"; it looks like format {_or(guesses)}"
        else:
            hint = self._family_hint() or "; it does not look like a YOLO head this stage knows"
        grid = f", strides {strides}" if fmt != "v8" else ""
        raise StreamcnnError(
            f"stage '{self.ctx.name}': model {self.session.name}: {what} does not fit format {fmt!r} "
            f"(expects {expected} for a {self.net_w}×{self.net_h} input{grid}){hint}"
        )

    def _guess_format(self, meta: dict[str, str]) -> str:
        out = self.session.outputs[0].shape
        if "names" in meta and len(out) == 3 and isinstance(out[1], int) and isinstance(out[2], int) \
                and out[1] < out[2]:
            return "v8"
        spec = self.session.inputs[0]
        w, h = spec.shape[3], spec.shape[2]
        guesses = guess_formats([tuple(o.shape) for o in self.session.outputs], w, h) \
            if isinstance(w, int) and isinstance(h, int) else []
        hint = f"; it looks like format {_or(guesses)}" if guesses else self._family_hint()
        raise StreamcnnError(
            f"stage '{self.ctx.name}': cannot tell the head format of {self.session.name} "
            f"(output shape {out}); set format: one of {', '.join(FORMATS)}{hint}"
        )

    def _names(self, meta: dict[str, str], num_classes: int | None) -> list[str]:
        names_file = self.ctx.resolve(self.params.names) if self.params.names else None
        names, self._names_origin = resolve_names(names_file, meta, self.session.name)
        if num_classes is not None and len(names) != num_classes:
            if names_file is not None:
                raise StreamcnnError(
                    f"stage '{self.ctx.name}': names file {names_file} has {len(names)} names but model "
                    f"{self.session.name} has {num_classes} classes (format {self.format!r})"
                )
            self.ctx.log.warning(
                "stage '%s': model %s has %d classes but %s has %d names; set `names:` to a file with one "
                "name per class", self.ctx.name, self.session.name, num_classes, self._names_origin, len(names),
            )
        return names

    # -- per frame ----------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray):
        """uint8 H×W×3 BGR → float32 (1, 3, net_h, net_w) blob and the `LetterboxInfo`.

        The blob is identical to ``cv2.dnn.blobFromImage(letterbox(...))`` but lives in this
        thread's preallocated buffer (`LetterboxBlob`): valid until this thread's next call.
        """
        return self.to_blob(image)

    def decode(self, outputs: list[np.ndarray]):
        """Raw model outputs → (cxcywh in input pixels, obj or None, class scores)."""
        fmt = self.format
        if fmt == "yolox":
            return decode_yolox(outputs[0].reshape(-1, outputs[0].shape[-1]), self.grid)
        if fmt == "v8":
            return decode_v8(outputs[0][0])
        if fmt == "v5":
            return decode_v5(outputs[0].reshape(-1, outputs[0].shape[-1]), self.logits)
        if fmt == "fastestv2":
            return decode_fastestv2(outputs[0].reshape(-1, outputs[0].shape[-1]), self.grid, self.num_anchors)
        return decode_anchor_grid(_concat_levels(outputs, self.num_anchors), self.grid,
                                  "v5" if fmt == "v5-raw" else "v3", self.logits)

    def process(self, frame: Frame) -> Frame:
        blob, info = self.preprocess(frame.image)
        outputs = self.session.run({self.input_name: blob})
        cxcywh, obj, cls = self.decode(outputs)
        p = self.params
        xyxy, conf, class_id = select(cxcywh, obj, cls, info, p.conf, p.iou, p.agnostic, self.keep_classes, p.max_det)
        frame.add_detections(Detections(xyxy, conf, class_id, self.names), self.ctx.name, p.replace)
        return frame


def _concat_levels(outputs: list[np.ndarray], num_anchors: int) -> np.ndarray:
    """Anchor-grid head outputs → rows (N, 5+C) in level → anchor → gy → gx order.

    Accepts one concatenated ``(1, N, 5+C)`` output, or one output per level shaped
    ``(1, A·(5+C), H, W)`` (Darknet/YOLOv3 style) or ``(1, A, H, W, 5+C)`` (YOLOv5 pre-Detect).
    """
    if len(outputs) == 1 and outputs[0].ndim <= 3:
        return outputs[0].reshape(-1, outputs[0].shape[-1])
    rows = []
    for out in outputs:
        if out.ndim == 5:  # (1, A, H, W, 5+C)
            rows.append(out.reshape(-1, out.shape[-1]))
        elif out.ndim == 4:  # (1, A·(5+C), H, W)
            _, ch, h, w = out.shape
            k = ch // num_anchors
            rows.append(out.reshape(num_anchors, k, h, w).transpose(0, 2, 3, 1).reshape(-1, k))
        else:
            raise ValueError(f"unexpected YOLO head output shape {out.shape}")
    return np.concatenate(rows, axis=0)


def _meta_imgsz(meta: dict[str, str]) -> tuple[int, int] | None:
    if "imgsz" in meta:
        try:
            h, w = ast.literal_eval(meta["imgsz"])
            return int(w), int(h)
        except (ValueError, SyntaxError, TypeError):
            return None
    return None


def _meta_strides(meta: dict[str, str]) -> list[int] | None:
    if "stride" in meta:
        try:
            s = int(ast.literal_eval(meta["stride"]))
            return [s // 4, s // 2, s]
        except (ValueError, SyntaxError, TypeError):
            return None
    return None


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"yolo": YoloStage}
