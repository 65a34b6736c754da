"""Resize a frame to a network's input size, and map boxes/points back exactly.

Letterbox (YOLOv5/YOLOX/Ultralytics convention): scale ``r = min(Wn/W, Hn/H)``, resized size
``(round(W·r), round(H·r))``, integer padding with pad value 114; in ``center`` mode the odd
padding pixel goes right/bottom, in ``top-left`` mode all padding is right/bottom (the YOLOX
demo). ``stretch`` resizes to ``Wn×Hn`` without keeping the aspect ratio. The inverse uses the
same integer pads and scales that the forward pass applied (carried in `LetterboxInfo`).

`LetterboxBlob` fuses `letterbox` with ``cv2.dnn.blobFromImage`` into preallocated per-thread
buffers: the same float32 NCHW blob, bit for bit, several times cheaper per frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
from numpy.typing import DTypeLike

ResizeMode = Literal["center", "top-left", "stretch"]


@dataclass(frozen=True)
class LetterboxInfo:
    """How a frame was mapped into the network input.

    Attributes:
        scale_x, scale_y: network pixels per frame pixel (equal except in ``stretch`` mode).
        pad_left, pad_top: integer padding in network pixels.
        width, height: the original frame size in pixels (for clipping).
    """

    scale_x: float
    scale_y: float
    pad_left: int
    pad_top: int
    width: int
    height: int

    def boxes_to_frame(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Network-pixel boxes (N, 4) → frame-pixel boxes (N, 4) float32, clipped to the frame."""
        out = np.asarray(xyxy, dtype=np.float32).copy()
        out[:, 0::2] = (out[:, 0::2] - self.pad_left) / self.scale_x
        out[:, 1::2] = (out[:, 1::2] - self.pad_top) / self.scale_y
        if clip:
            np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out

    def points_to_frame(self, points: np.ndarray) -> np.ndarray:
        """Network-pixel points (..., 2) → frame pixels (not clipped)."""
        out = np.asarray(points, dtype=np.float32).copy()
        out[..., 0] = (out[..., 0] - self.pad_left) / self.scale_x
        out[..., 1] = (out[..., 1] - self.pad_top) / self.scale_y
        return out


def letterbox_info(width: int, height: int, net_w: int, net_h: int, mode: ResizeMode = "center") -> LetterboxInfo:
    """The mapping that `letterbox` applies to a ``width×height`` frame (no pixels touched).

    Raises:
        ValueError: unknown ``mode`` or a non-positive size.
    """
    if min(width, height, net_w, net_h) <= 0:
        raise ValueError(f"sizes must be positive, got frame {width}x{height}, network {net_w}x{net_h}")
    if mode == "stretch":
        return LetterboxInfo(net_w / width, net_h / height, 0, 0, width, height)
    r = min(net_w / width, net_h / height)
    new_w, new_h = round(width * r), round(height * r)
    dw, dh = net_w - new_w, net_h - new_h
    if mode == "center":
        left, top = dw // 2, dh // 2
    elif mode == "top-left":
        left, top = 0, 0
    else:
        raise ValueError(f"resize mode must be 'center', 'top-left' or 'stretch', not {mode!r}")
    return LetterboxInfo(r, r, left, top, width, height)


@lru_cache(maxsize=256)
def _geometry(width: int, height: int, net_w: int, net_h: int, mode: ResizeMode) -> tuple[LetterboxInfo, int, int]:
    """`letterbox_info` plus the resized size ``(new_w, new_h)`` in pixels (cached: pure function).

    Raises:
        ValueError: as `letterbox_info`.
    """
    info = letterbox_info(width, height, net_w, net_h, mode)
    if mode == "stretch":
        return info, net_w, net_h
    return info, round(width * info.scale_x), round(height * info.scale_y)


def letterbox(
    image: np.ndarray, net_w: int, net_h: int, mode: ResizeMode = "center", pad_value: int = 114
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``image`` (uint8 H×W×C) into a ``net_h×net_w×C`` canvas; return it and the mapping."""
    h, w = image.shape[:2]
    info, new_w, new_h = _geometry(w, h, net_w, net_h, mode)
    if mode == "stretch":
        return cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_LINEAR), info
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((net_h, net_w) + image.shape[2:], pad_value, dtype=image.dtype)
    canvas[info.pad_top:info.pad_top + new_h, info.pad_left:info.pad_left + new_w] = resized
    return canvas, info


def _blob_table(scale: float) -> np.ndarray:
    """float32 (256,): what ``cv2.dnn.blobFromImage(…, scale)`` makes of each uint8 value 0..255.

    Measured on a 3×263-value row, so SIMD bodies and scalar tails are both exercised.
    """
    row = (np.arange(3 * 263) % 256).astype(np.uint8).reshape(1, 263, 3)
    blob = cv2.dnn.blobFromImage(row, scale)  # (1, 3, 1, 263): channel c holds values (3·i + c) % 256
    table = np.empty(256, np.float32)
    table[row[0].T.ravel()] = blob[0, :, 0, :].ravel()
    if not np.array_equal(blob[0, :, 0, :], table[row[0].T]):
        raise RuntimeError(f"cv2.dnn.blobFromImage(scale={scale}) is not a per-value map on this OpenCV build")
    return table


Converter = Callable[[np.ndarray, np.ndarray], object]


def _pick_converter(scale: float, table: np.ndarray) -> Converter:
    """The cheapest uint8 → float32 conversion that reproduces ``table`` exactly on all 256 values.

    Candidates, fastest first: a plain cast (``scale == 1``), a cast then an in-place float32
    multiply, else the table itself (``np.take``, always exact but ~5× slower).
    """
    s32 = np.float32(scale)

    def cast(src: np.ndarray, dst: np.ndarray) -> None:
        np.copyto(dst, src)

    def cast_multiply(src: np.ndarray, dst: np.ndarray) -> None:
        np.copyto(dst, src)
        np.multiply(dst, s32, out=dst)

    def lookup(src: np.ndarray, dst: np.ndarray) -> None:
        np.take(table, src, out=dst)

    values = np.arange(256, dtype=np.uint8)
    for convert in (cast, cast_multiply) if s32 == 1 else (cast_multiply,):
        out = np.empty(256, np.float32)
        convert(values, out)
        if np.array_equal(out.view(np.uint32), table.view(np.uint32)):  # bit for bit (also ±0, NaN)
            return convert
    return lookup


@dataclass
class _Buffers:
    """One thread's buffers for one frame size (``key`` = (width, height) of the frame)."""

    key: tuple[int, int]
    info: LetterboxInfo
    new_size: tuple[int, int]  # (new_w, new_h) in pixels
    resized: np.ndarray | None  # uint8 (new_h, new_w, 3), None when the frame needs no resize
    planes: np.ndarray  # uint8 (3, new_h, new_w), the blob's channel order
    split_into: list[np.ndarray]  # the planes in the frame's channel order (cv2.split targets)
    blob: np.ndarray  # float32 (1, 3, net_h, net_w), padding already filled
    roi: np.ndarray  # view (3, new_h, new_w) of ``blob`` where the resized frame goes


class LetterboxBlob:
    """`letterbox` followed by ``cv2.dnn.blobFromImage``, fused, into preallocated buffers.

    ``LetterboxBlob(w, h, mode, pad_value, scale, swap_rb)(image)`` returns the same
    ``(blob, info)`` as::

        canvas, info = letterbox(image, w, h, mode, pad_value)
        blob = cv2.dnn.blobFromImage(canvas, scale, swapRB=swap_rb)

    identical to the last bit (``np.array_equal``) for every mode, frame size and pad value, but
    without allocating per frame: the frame is resized (``cv2.resize``, bilinear, into a
    preallocated buffer), split into uint8 planes (``cv2.split``) and converted to float32 straight
    into the region of the blob it covers. The padding of the blob depends only on the frame size,
    so it is written once per frame size, not per frame. The uint8 → float32 conversion is checked
    once, at construction, against ``cv2.dnn.blobFromImage`` on all 256 values (a per-value table
    is the fallback should a numpy cast-and-multiply ever round differently).

    Thread safety: each calling thread gets its own buffers (``threading.local``), so one
    instance may serve several threads at once (e.g. two frames of one stage in flight).

    **The returned blob is reused**: it is valid until the *same thread* calls this instance
    again; run the model on it right away, or copy it to keep it.

    Args:
        net_w, net_h: network input size in pixels.
        mode: ``"center"``, ``"top-left"`` or ``"stretch"`` (see `letterbox`).
        pad_value: uint8 value (0..255) of the padding, in every channel.
        scale: multiplier applied to the 0..255 pixel values (e.g. ``1/255``), as ``blobFromImage``.
        swap_rb: True gives RGB planes (the frames are BGR), False keeps BGR.
        dtype: blob dtype; only float32 (what ``blobFromImage`` makes) is supported.

    Raises:
        ValueError: a non-positive network size, an unknown ``mode``, ``pad_value`` outside
            0..255, a non-finite ``scale`` or a ``dtype`` other than float32.
        RuntimeError: ``cv2.dnn.blobFromImage`` does not map each uint8 value to one float on this
            OpenCV build (the exactness check at construction; never the case on OpenCV 5.1).
    """

    def __init__(
        self, net_w: int, net_h: int, mode: ResizeMode = "center", pad_value: int = 114, scale: float = 1.0,
        swap_rb: bool = False, dtype: DTypeLike = np.float32,
    ) -> None:
        letterbox_info(1, 1, net_w, net_h, mode)  # raises ValueError for a bad size or mode
        if not (isinstance(pad_value, (int, np.integer)) and 0 <= pad_value <= 255):
            raise ValueError(f"pad_value must be an integer in 0..255, got {pad_value!r}")
        if not np.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"dtype must be float32 (as cv2.dnn.blobFromImage), got {np.dtype(dtype)}")
        self.net_w, self.net_h, self.mode = int(net_w), int(net_h), mode
        self.pad_value, self.scale, self.swap_rb = int(pad_value), float(scale), bool(swap_rb)
        table = _blob_table(self.scale)
        self._convert = _pick_converter(self.scale, table)
        self._pad = table[self.pad_value]
        self._local = threading.local()

    def __repr__(self) -> str:
        return (f"LetterboxBlob({self.net_w}, {self.net_h}, mode={self.mode!r}, pad_value={self.pad_value}, "
                f"scale={self.scale!r}, swap_rb={self.swap_rb})")

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxInfo]:
        """Letterbox ``image`` and make the network input.

        Args:
            image: uint8 (H, W, 3) frame, BGR (any strides).

        Returns:
            ``(blob, info)``: float32 (1, 3, net_h, net_w) C-contiguous blob (RGB planes when
            ``swap_rb``, else BGR; pixel values × ``scale``), **overwritten by this thread's next
            call**; and the `LetterboxInfo` that maps network pixels back to frame pixels.

        Raises:
            ValueError: ``image`` is not uint8 (H, W, 3), or is so thin that a side resizes to 0 px.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) BGR frame, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        buf: _Buffers | None = getattr(self._local, "buffers", None)
        if buf is None or buf.key != (w, h):
            buf = self._local.buffers = self._allocate(w, h)
        src = image if buf.resized is None else cv2.resize(
            image, buf.new_size, dst=buf.resized, interpolation=cv2.INTER_LINEAR)
        planes = cv2.split(src, buf.split_into)
        if any(p is not q for p, q in zip(planes, buf.split_into)):  # the binding did not write in place
            for p, q in zip(planes, buf.split_into):
                np.copyto(q, p)
        self._convert(buf.planes, buf.roi)
        return buf.blob, buf.info

    def _allocate(self, width: int, height: int) -> _Buffers:
        """Buffers for ``width×height`` frames, with the blob's padding filled in.

        Raises:
            ValueError: a side of the resized frame would be 0 px.
        """
        info, new_w, new_h = _geometry(width, height, self.net_w, self.net_h, self.mode)
        if new_w <= 0 or new_h <= 0:
            raise ValueError(f"a {width}x{height} frame letterboxed into {self.net_w}x{self.net_h} "
                             f"would be {new_w}x{new_h} px")
        blob = np.full((1, 3, self.net_h, self.net_w), self._pad, np.float32)
        planes = np.empty((3, new_h, new_w), np.uint8)
        resized = None if (new_w, new_h) == (width, height) else np.empty((new_h, new_w, 3), np.uint8)
        top, left = info.pad_top, info.pad_left
        return _Buffers(
            key=(width, height), info=info, new_size=(new_w, new_h), resized=resized, planes=planes,
            split_into=list(planes[::-1] if self.swap_rb else planes), blob=blob,
            roi=blob[0, :, top:top + new_h, left:left + new_w],
        )
