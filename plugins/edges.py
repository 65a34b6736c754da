"""Built-in ``edges`` stage: classic edge-detection kernels run as a one-layer ONNX CNN.

Registered through the ``streamcnn`` entry-point group with ``@hookimpl``, exactly like a
third-party plugin. YAML::

    stages:
      - edges: {kernel: vertical, padding: valid, stride: 1, channels: gray, display: abs}
      - edges:
          kernel: custom
          weights: [[0, 1, 0], [1, -4, 1], [0, 1, 0]]

The kernel is applied as a *cross-correlation* (``out[i, j] = sum_{u,v} x[i*s + u, j*s + v] * k[u, v]``
on the zero-padded input), which is what ONNX ``Conv`` and CNN layers compute and what
``scipy.signal.correlate2d`` / ``cv2.filter2D`` compute; the kernel is *not* flipped.

Output size per axis (textbook formula: Goodfellow, Bengio & Courville, *Deep Learning*, 2016,
ch. 9; CS231n "Convolutional Neural Networks" notes, ``(W − F + 2P)/S + 1``; Andrew Ng, Deep
Learning Specialization, course 4 week 1, "Strided convolutions")::

    n_out = floor((n + 2p − f) / s) + 1

with ``n`` the input size in pixels, ``f`` the kernel size, ``p`` the zero padding per side and
``s`` the stride. ``padding: same`` means ``p = (f − 1)/2`` for odd ``f``; for even ``f`` it pads
``(f − 1)//2`` pixels at the top/left and ``f//2`` at the bottom/right (for stride 1 this is
TensorFlow's ``SAME`` and ONNX ``auto_pad=SAME_UPPER``), so with either parity ``same`` gives
``ceil(n / s)`` (``n`` for stride 1). ``valid`` means ``p = 0``.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from pydantic import FiniteFloat, field_validator, model_validator

from streamcnn import (
    Context,
    DeviceParams,
    Field,
    Frame,
    ModelInputError,
    ModelSession,
    Stage,
    get_session,
    hookimpl,
    to_bgr3,
)

KernelName = Literal[
    "vertical", "horizontal", "sobel_x", "sobel_y", "sobel", "scharr_x", "scharr_y", "scharr",
    "laplacian", "custom",
]

_VERTICAL = [[1, 0, -1], [1, 0, -1], [1, 0, -1]]  # Ng's vertical edge detector (bright left → +)
_SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]  # cv2.Sobel(dx=1) correlation kernel (dark→bright → +)
_SCHARR_X = [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]  # cv2.Scharr(dx=1)
_LAPLACIAN = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]  # cv2.Laplacian(ksize=1)

_SINGLE: dict[str, np.ndarray] = {
    "vertical": np.array(_VERTICAL, np.float32),
    "horizontal": np.array(_VERTICAL, np.float32).T.copy(),
    "sobel_x": np.array(_SOBEL_X, np.float32),
    "sobel_y": np.array(_SOBEL_X, np.float32).T.copy(),
    "scharr_x": np.array(_SCHARR_X, np.float32),
    "scharr_y": np.array(_SCHARR_X, np.float32).T.copy(),
    "laplacian": np.array(_LAPLACIAN, np.float32),
}
_MAGNITUDE = {"sobel": ("sobel_x", "sobel_y"), "scharr": ("scharr_x", "scharr_y")}

OPSET = 17  # ONNX opset of the built graph (supported by every onnxruntime >= 1.14)
IR_VERSION = 8  # the IR version that goes with opset 17; newer ORT still loads it


def kernel_weights(name: str, weights: list[list[float]] | np.ndarray | None = None) -> np.ndarray:
    """The correlation kernel(s) for a kernel name.

    Args:
        name: ``vertical`` (``[[1, 0, -1]] * 3``), ``horizontal`` (its transpose), ``sobel_x``
            (``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``, the kernel ``cv2.Sobel(dx=1)`` correlates with),
            ``sobel_y`` (transpose), ``scharr_x`` (``[[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]``),
            ``scharr_y``, ``laplacian`` (``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``), the magnitude kernels
            ``sobel`` / ``scharr`` (x and y kernels; the stage outputs ``sqrt(gx² + gy²)``), or ``custom``.
        weights: the f×f kernel for ``custom`` (any f ≥ 1, odd or even); must be None otherwise.

    Returns:
        float32 array of shape (K, f, f): K = 2 for ``sobel``/``scharr`` ([x, y]), else 1.

    Raises:
        ValueError: unknown name; ``custom`` without weights, or weights not a non-empty square
            matrix of finite numbers; weights given for a built-in kernel.
    """
    if name == "custom":
        if weights is None:
            raise ValueError("kernel 'custom' needs 'weights': an f×f list of lists of numbers")
        try:
            w = np.asarray(weights, dtype=np.float32)
        except (ValueError, TypeError) as e:
            raise ValueError(f"weights must be an f×f list of lists of numbers (square): {e}") from None
        if w.ndim != 2 or w.shape[0] != w.shape[1] or w.size == 0:
            raise ValueError(f"weights must be a non-empty square f×f matrix, got shape {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("weights must be finite numbers")
        return w[None].copy()
    if weights is not None:
        raise ValueError(f"'weights' is only used with kernel: custom (kernel is {name!r})")
    if name in _MAGNITUDE:
        x, y = _MAGNITUDE[name]
        return np.stack([_SINGLE[x], _SINGLE[y]])
    if name in _SINGLE:
        return _SINGLE[name][None].copy()
    raise ValueError(f"unknown kernel {name!r}; use one of {', '.join(KernelName.__args__)}")


def same_pads(f: int) -> tuple[int, int]:
    """Zero padding (before, after) per axis for ``padding: same`` and kernel size ``f``:
    ``((f − 1)//2, f//2)`` — equal, ``(f − 1)/2``, for odd f; one more after for even f."""
    return (f - 1) // 2, f // 2


def resolve_padding(padding: str | int, f: int) -> tuple[int, int]:
    """Padding (before, after) in pixels per axis: ``same`` → `same_pads`, ``valid`` → (0, 0),
    int p → (p, p). Raises ValueError for anything else."""
    if padding == "same":
        return same_pads(f)
    if padding == "valid":
        return 0, 0
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) and padding >= 0:
        return int(padding), int(padding)
    raise ValueError(f"padding must be 'same', 'valid' or an int >= 0, got {padding!r}")


def conv_output_size(n: int, f: int, p: int | tuple[int, int], s: int) -> int:
    """Output size along one axis: ``floor((n + 2p − f) / s) + 1``.

    Textbook formula (Goodfellow et al., *Deep Learning*, ch. 9; CS231n ``(W − F + 2P)/S + 1``;
    Ng, "Strided convolutions").

    Args:
        n: input size in pixels (≥ 1).
        f: kernel size in pixels (≥ 1).
        p: zero padding per side in pixels (≥ 0), or (before, after) for asymmetric padding, in which
            case ``2p`` becomes ``before + after``.
        s: stride in pixels (≥ 1).

    Returns:
        The number of output pixels (≥ 1).

    Raises:
        ValueError: an argument out of range, or the padded input is smaller than the kernel
            (``n + 2p < f``), where no output exists.
    """
    pb, pe = (p, p) if isinstance(p, (int, np.integer)) else p
    if n < 1 or f < 1 or s < 1 or pb < 0 or pe < 0:
        raise ValueError(f"need n >= 1, f >= 1, s >= 1, p >= 0; got n={n}, f={f}, p={p}, s={s}")
    if n + pb + pe < f:
        raise ValueError(f"padded input {n + pb + pe} px is smaller than the {f} px kernel (n={n}, p={p})")
    return (n + pb + pe - f) // s + 1


def build_edges_model(
    weights: np.ndarray, pads: tuple[int, int], stride: int, channels: int, magnitude: bool,
    pad_rows: bool = True,
) -> bytes:
    """Serialised ONNX graph: uint8 image → float32 edge map.

    Graph: input ``image`` uint8 (1, H, W, C) (NHWC, dynamic H and W) → Cast float32 → Transpose
    to NCHW → ``Conv`` (weights as initializer, ``group = C`` so each channel is filtered alone,
    ``pads``, ``strides``, no bias) → for magnitude kernels ``Sqrt(gx·gx + gy·gy)`` (Gather/Mul/Add/
    Sqrt) → Transpose to NHWC → output ``edges`` float32 (1, H', W', C).

    Args:
        weights: float32 (K, f, f) kernels from `kernel_weights` (K = 2 when ``magnitude``).
        pads: zero padding (before, after) in pixels, same for both axes.
        stride: stride in pixels for both axes.
        channels: C, 1 (gray) or 3 (B, G, R filtered separately).
        magnitude: combine the two kernels' responses as ``sqrt(gx² + gy²)``.
        pad_rows: pad the top and bottom too (the whole-frame graph); False pads only left and
            right, for `EdgesStage`, which runs the graph over horizontal strips that carry their own
            rows of zeros (or of the neighbouring image rows).

    Returns:
        ``ModelProto.SerializeToString()`` (opset 17, checked with ``onnx.checker``).
    """
    k, f, _ = weights.shape
    c = channels
    # Conv weight (C*K, 1, f, f): group g owns output channels g*K .. g*K + K-1, all with the same K kernels.
    w = np.ascontiguousarray(np.tile(weights, (c, 1, 1))[:, None], dtype=np.float32)
    inits = [numpy_helper.from_array(w, "W")]
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["xf"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv", ["x", "W"], ["y"], kernel_shape=[f, f], strides=[stride, stride], group=c,
            pads=[pads[0] * pad_rows, pads[0], pads[1] * pad_rows, pads[1]],  # H begin, W begin, H end, W end
        ),
    ]
    last = "y"
    if magnitude:
        inits += [
            numpy_helper.from_array(np.arange(0, 2 * c, 2, dtype=np.int64), "ix"),
            numpy_helper.from_array(np.arange(1, 2 * c, 2, dtype=np.int64), "iy"),
        ]
        nodes += [
            helper.make_node("Gather", ["y", "ix"], ["gx"], axis=1),
            helper.make_node("Gather", ["y", "iy"], ["gy"], axis=1),
            helper.make_node("Mul", ["gx", "gx"], ["gx2"]),
            helper.make_node("Mul", ["gy", "gy"], ["gy2"]),
            helper.make_node("Add", ["gx2", "gy2"], ["g2"]),
            helper.make_node("Sqrt", ["g2"], ["mag"]),
        ]
        last = "mag"
    nodes.append(helper.make_node("Transpose", [last], ["edges"], perm=[0, 2, 3, 1]))
    graph = helper.make_graph(
        nodes,
        "streamcnn_edges",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, "H", "W", c])],
        [helper.make_tensor_value_info("edges", TensorProto.FLOAT, [1, "H_out", "W_out", c])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="streamcnn"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


class EdgesStage(Stage):
    """Edge detection by one convolution (cross-correlation) layer, run by ONNX Runtime.

    ``process``: ``frame.image`` uint8 (H, W, 3) BGR → the kernel's response as float32 in
    ``frame.meta["edges"]`` — shape (H', W') for ``channels: gray``, (H', W', 3) (B, G, R) for
    ``per_channel`` — in intensity units (pixel values 0..255 times kernel weights; magnitude
    kernels give ``sqrt(gx² + gy²)`` ≥ 0), with ``H' = floor((H + 2p − f)/s) + 1`` and likewise W'
    (see `conv_output_size`); ``frame.image`` becomes the uint8 (H', W', 3) display image
    (gray maps replicated to 3 channels).

    Memory stays bounded whatever the frame size: the convolution runs over horizontal strips of
    about `strip_elements` input elements (see `edge_map`; the result equals the
    whole-frame graph's: bit for bit on ONNX Runtime 1.32, to the last float32 bit on 1.20)
    and the display image is made strip by strip. On one 8000×6000 frame
    (``tools/bench_memory.py``) the peak over the frame is 369 MiB: the outputs, 183 MiB of float32
    map and 137 MiB of display image, plus one strip; the whole-frame graph needed 2690 MiB.

    Raises (from ``process``): ModelInputError when the padded frame is smaller than the kernel.
    """

    stateless = True  # per frame (the strip buffer is per thread): several frames may be in flight

    class Params(DeviceParams):
        """Options of the ``edges`` stage (unknown options and wrong types are rejected)."""

        kernel: KernelName = Field(
            "sobel",
            description="vertical | horizontal | sobel_x | sobel_y | sobel (magnitude) | scharr_x | "
            "scharr_y | scharr (magnitude) | laplacian | custom (needs weights)",
        )
        weights: list[list[FiniteFloat]] | None = Field(
            None, min_length=1, description="f×f kernel (list of f rows of f numbers) for kernel: custom"
        )
        padding: Literal["same", "valid"] | Annotated[int, Field(ge=0)] = Field(
            "same",
            description="same (keeps size at stride 1) | valid (no padding) | p pixels of zeros per side",
        )
        stride: int = Field(1, ge=1, strict=True, description="step in pixels between kernel positions")
        channels: Literal["gray", "per_channel"] = Field(
            "gray", description="gray: filter the BGR→gray image; per_channel: filter B, G, R separately"
        )
        display: Literal["abs", "minmax"] = Field(
            "abs",
            description="abs: |x| saturated to 0..255 (cv2.convertScaleAbs); "
            "minmax: per-frame min→0, max→255",
        )

        @field_validator("padding", mode="before")
        @classmethod
        def _padding(cls, v: object) -> object:
            ok = v in ("same", "valid") if isinstance(v, str) else (
                isinstance(v, int) and not isinstance(v, bool) and v >= 0
            )
            if not ok:
                raise ValueError(
                    f"padding must be 'same', 'valid' or an int p >= 0 (pixels per side), got {v!r}"
                )
            return v

        @field_validator("weights")
        @classmethod
        def _square(cls, v: list[list[float]] | None) -> list[list[float]] | None:
            if v is not None:
                lengths = [len(r) for r in v]
                if any(n != len(v) for n in lengths):
                    raise ValueError(
                        f"weights must be square (f rows of f numbers): "
                        f"got {len(v)} rows of lengths {lengths}"
                    )
            return v

        @model_validator(mode="after")
        def _weights_iff_custom(self) -> EdgesStage.Params:
            if self.kernel == "custom" and self.weights is None:
                raise ValueError("kernel 'custom' needs 'weights': an f×f list of lists of numbers")
            if self.kernel != "custom" and self.weights is not None:
                raise ValueError(f"'weights' is only used with kernel: custom (kernel is {self.kernel!r})")
            return self

    params: Params

    #: input elements (rows × padded width × channels) per ONNX Runtime call: a frame larger than this
    #: is run in horizontal strips of about this size (a 640×480 gray frame is one call)
    strip_elements: int = 1 << 19

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        p = params
        self.weights = kernel_weights(p.kernel, p.weights)  # (K, f, f) float32
        self.f = int(self.weights.shape[1])
        self.pads = resolve_padding(p.padding, self.f)
        self.stride = p.stride
        self._gray = p.channels == "gray"
        self._minmax = p.display == "minmax"
        self._key = ctx.name
        # top/bottom zeros come with each strip (see `_strip`); the graph pads only left and right
        model = build_edges_model(
            self.weights, self.pads, p.stride, 1 if self._gray else 3, p.kernel in _MAGNITUDE, pad_rows=False
        )
        self.session: ModelSession = get_session(model, p.device, stage=ctx.name, name=f"edges:{p.kernel}")
        self._min_side = self.f - self.pads[0] - self.pads[1]  # smallest H/W with an output
        self._local = threading.local()  # .buf: the strip buffer of this thread, reused while the frame size stays

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(H', W') for an H×W input: `conv_output_size` per axis with this stage's f, padding, stride."""
        return (conv_output_size(h, self.f, self.pads, self.stride),
                conv_output_size(w, self.f, self.pads, self.stride))

    def strip_rows(self, w: int) -> int:
        """Output rows per ONNX Runtime call for frames ``w`` pixels wide (≥ 1): about
        `strip_elements` input elements per call."""
        per_row = (w + self.pads[0] + self.pads[1]) * (1 if self._gray else 3) * self.stride
        return max(1, self.strip_elements // per_row)

    def edge_map(self, image: np.ndarray) -> np.ndarray:
        """The raw float32 response for a uint8 (H, W, 3) BGR image: (H', W') gray, (H', W', 3) per channel.

        Computed in horizontal strips of `strip_rows` output rows: each strip's input holds the
        image rows its outputs read (``(rows − 1)·s + f`` of them, overlapping the next strip's by
        ``f − s`` rows) with zero rows where the strip reaches into the top or bottom padding, so
        the map equals the whole-frame convolution exactly, while the memory of one call stays
        bounded by `strip_elements` whatever the frame size.

        Raises: ModelInputError if H or W is too small for the kernel (``H + pads < f``) or the image
        is not uint8.
        """
        image = to_bgr3(image)
        h, w = image.shape[:2]
        if h < self._min_side or w < self._min_side:
            raise ModelInputError(
                f"model {self.session.name}: a {h}×{w} frame is smaller than the {self.f}×{self.f} kernel "
                f"with padding {self.pads} (needs H and W >= {self._min_side})"
            )
        if image.dtype != np.uint8:
            self.session.run(image[None])  # the session's input check names the problem (ModelInputError)
        h_out, w_out = self.output_size(h, w)
        out = np.empty((h_out, w_out) if self._gray else (h_out, w_out, 3), np.float32)
        rows = self.strip_rows(w)
        for o0 in range(0, h_out, rows):
            o1 = min(h_out, o0 + rows)
            strip = self._strip(image, o0 * self.stride - self.pads[0], (o1 - 1 - o0) * self.stride + self.f)
            res = self.session.run(strip)[0][0]  # (o1 - o0, W', C) float32
            out[o0:o1] = res[:, :, 0] if self._gray else res
        return out

    def _strip(self, image: np.ndarray, top: int, n: int) -> np.ndarray:
        """The (1, n, W, C) uint8 input for image rows ``top .. top + n − 1`` (rows outside the image are
        zeros: the top/bottom padding); gray conversion per strip."""
        h, w = image.shape[:2]
        lo, hi = max(top, 0), min(top + n, h)
        if not self._gray and lo == top and hi == top + n:
            return np.ascontiguousarray(image[lo:hi])[None]  # a view for a contiguous frame
        c = 1 if self._gray else 3
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape != (n, w, c):
            buf = self._local.buf = np.empty((n, w, c), np.uint8)
        a, b = max(lo - top, 0), max(hi - top, 0)
        buf[:a] = 0
        buf[b:] = 0
        if b > a:
            if self._gray:
                cv2.cvtColor(image[lo:hi], cv2.COLOR_BGR2GRAY, dst=buf[a:b, :, 0])
            else:
                buf[a:b] = image[lo:hi]
        return buf[None]

    def to_display(self, edges: np.ndarray) -> np.ndarray:
        """uint8 (H', W', 3) display image from a raw map (H', W') or (H', W', 3).

        ``abs``: ``min(round(|x|), 255)`` (cv2.convertScaleAbs). ``minmax``: per frame, the map's
        minimum → 0 and maximum → 255 linearly over all channels together (all zeros when constant).
        Converted in strips of rows into the result, so no full-size temporary is made.
        """
        alpha, beta = 1.0, 0.0
        if self._minmax:
            lo, hi = float(edges.min()), float(edges.max())
            alpha = 255.0 / (hi - lo) if hi > lo else 0.0
            beta = -lo * alpha
        h_out, w_out = edges.shape[:2]
        out = np.empty((h_out, w_out, 3), np.uint8)
        rows = max(1, (1 << 20) // max(1, w_out))
        for r0 in range(0, h_out, rows):
            part = cv2.convertScaleAbs(edges[r0:r0 + rows], alpha=alpha, beta=beta)
            if part.ndim == 2:
                cv2.cvtColor(part, cv2.COLOR_GRAY2BGR, dst=out[r0:r0 + rows])
            else:
                out[r0:r0 + rows] = part
        return out

    def process(self, frame: Frame) -> Frame:
        """Replace ``frame.image`` by the edge display image; raw map in ``frame.meta["edges"]``."""
        edges = self.edge_map(frame.image)
        frame.meta[self._key] = edges
        frame.image = self.to_display(edges)
        return frame


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    """The ``edges`` stage."""
    return {"edges": EdgesStage}


__all__ = [
    "EdgesStage",
    "build_edges_model",
    "conv_output_size",
    "kernel_weights",
    "resolve_padding",
    "same_pads",
    "streamcnn_stage_types",
]
