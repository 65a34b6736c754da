"""Built-in stage ``yolo``: YOLO object detection (letterbox → ONNX model → decode → NMS).

One stage for several head families (``format``); the shared steps — letterbox, grids and
decoding rules, IoU/NMS, model resolution, sessions — live in the core (`streamcnn.ops`,
`streamcnn.models`, `streamcnn.runtime`). Per-model facts (input size, colour order, resize
mode, anchors, strides, whether activations are inside the graph) come from, in order: the
YAML options, the model registry (``streamcnn/registry.yaml``, from MODELS.md), the model's
Ultralytics metadata (``names``, ``stride``, ``imgsz``).
"""

from __future__ import annotations

import ast
import logging
from importlib import resources
from typing import Literal

import cv2
import numpy as np

from streamcnn import Context, Detections, Field, Frame, Stage, hookimpl
from streamcnn.modelstage import ModelParams, ModelStage
from streamcnn.ops import letterbox
from streamcnn.ops.yolo import (
    Grid,
    decode_anchor_grid,
    decode_fastestv2,
    decode_v5,
    decode_v8,
    decode_yolox,
    make_grid,
    select,
)

log = logging.getLogger("streamcnn.yolo")

Format = Literal["auto", "yolox", "v8", "v5", "v5-raw", "v3", "fastestv2"]
FORMATS = ("yolox", "v8", "v5", "v5-raw", "v3", "fastestv2")


def coco80() -> list[str]:
    """The 80 COCO class names in the index order of COCO-trained YOLO models."""
    text = resources.files("streamcnn").joinpath("data/coco80.names").read_text(encoding="utf-8")
    return [x for x in text.splitlines() if x]


class YoloStage(ModelStage):
    """Detect objects; writes ``frame.detections`` (xyxy in frame pixels, conf, class_id, names).

    Formats (see `streamcnn.ops.yolo` for the rules): ``yolox`` (anchor-free raw grid),
    ``v8`` (YOLOv8/YOLO11 ``1×(4+C)×N`` decoded), ``v5`` (YOLOv5 export ``N×(5+C)`` decoded),
    ``v5-raw`` (anchor grid, YOLOv5 rule), ``v3`` (anchor grid, YOLOv3/v2 rule),
    ``fastestv2`` (Yolo-FastestV2 cell rows).

    Raises (at start-up): ModelNotFoundError, StreamcnnError for an unknown format or a model
    whose input does not match ``imgsz``.
    """

    class Params(ModelParams):
        model: str = Field(description="ONNX file path or registry name, e.g. yolox_nano_coco_416")
        format: Format = "auto"
        conf: float = Field(0.25, ge=0, le=1, description="score threshold (obj × class probability)")
        iou: float = Field(0.45, ge=0, le=1, description="NMS IoU threshold (suppress when IoU > iou)")
        agnostic: bool = Field(False, description="NMS across classes instead of per class")
        classes: list[int | str] | None = Field(None, description="class ids or names to keep")
        max_det: int = Field(300, ge=1)
        imgsz: int | tuple[int, int] | None = Field(None, description="network input size (w, h) or side")
        names: str | None = Field(None, description="class names file (one per line)")
        anchors: list[list[tuple[float, float]]] | None = Field(None, description="per level (w, h) pixels")
        strides: list[int] | None = None
        color: Literal["bgr", "rgb"] | None = None
        resize: Literal["center", "top-left", "stretch"] | None = None
        scale: float | None = Field(None, gt=0, description="pixel multiplier, e.g. 1/255")
        logits: bool | None = Field(None, description="head emits logits (σ applied by the decoder)")

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.session, reg = self.load_model()
        meta = self.session.session.get_modelmeta().custom_metadata_map
        spec = self.session.inputs[0]
        self.input_name = spec.name
        fixed_h, fixed_w = spec.shape[2], spec.shape[3]

        def pick(key, default=None):
            value = getattr(params, key)
            return value if value is not None else reg.get(key, default)

        fmt = params.format if params.format != "auto" else reg.get("format") or self._guess_format(meta)
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
        self.logits = bool(pick("logits", fmt in ("v5-raw", "v3")))
        strides = pick("strides") or _meta_strides(meta) or [8, 16, 32]
        anchors = pick("anchors")
        self.grid: Grid | None = None
        if fmt in ("yolox", "v5-raw", "v3", "fastestv2"):
            if fmt != "yolox" and anchors is None:
                from streamcnn.errors import StreamcnnError

                raise StreamcnnError(
                    f"stage '{ctx.name}': format {fmt!r} needs `anchors` (per level, (w, h) in input pixels) "
                    f"for {self.session.name}"
                )
            self.grid = make_grid(self.net_w, self.net_h, list(strides), anchors,
                                  anchor_major=fmt != "fastestv2")
        self.num_anchors = len(anchors[0]) if anchors else 1
        self.names = self._names(meta)
        keep = params.classes
        self.keep_classes = None if keep is None else np.array([self._class_index(c) for c in keep], np.int64)
        ctx.log.info(
            "stage '%s': %s format=%s input %dx%d %s resize=%s", ctx.name, self.session.name, fmt,
            self.net_w, self.net_h, self.color.upper(), self.resize,
        )

    # -- set-up helpers --------------------------------------------------------------------
    def _guess_format(self, meta: dict[str, str]) -> str:
        out = self.session.outputs[0].shape
        if "names" in meta and len(out) == 3 and isinstance(out[1], int) and isinstance(out[2], int) \
                and out[1] < out[2]:
            return "v8"
        from streamcnn.errors import StreamcnnError

        raise StreamcnnError(
            f"stage '{self.ctx.name}': cannot tell the head format of {self.session.name} "
            f"(output shape {out}); set format: one of {', '.join(FORMATS)}"
        )

    def _names(self, meta: dict[str, str]) -> list[str]:
        if self.params.names:
            path = self.ctx.resolve(self.params.names)
            return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        if "names" in meta:
            try:
                names = ast.literal_eval(meta["names"])
                if isinstance(names, dict):
                    return [str(names[k]) for k in sorted(names)]
                return [str(n) for n in names]
            except (ValueError, SyntaxError):
                pass
        return coco80()

    def _class_index(self, c: int | str) -> int:
        if isinstance(c, int):
            return c
        if c in self.names:
            return self.names.index(c)
        from streamcnn.config import suggest

        raise ValueError(f"unknown class {c!r} in `classes`{suggest(c, self.names)}")

    # -- per frame ----------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray):
        """uint8 H×W×3 BGR → float32 (1, 3, net_h, net_w) blob and the `LetterboxInfo`."""
        canvas, info = letterbox(image, self.net_w, self.net_h, self.resize)
        blob = cv2.dnn.blobFromImage(canvas, self.scale, swapRB=self.color == "rgb")
        return blob, info

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
        frame.detections = Detections(xyxy, conf, class_id, self.names)
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
