"""Whole-image pre/post-processing for image-to-image networks (style transfer, enhancement, ...).

Everything here works on uint8 H×W×3 BGR frames (the `streamcnn.Frame` convention) or on float32
tensors in 0..1, and keeps the frame geometry exact so that a stage can hand back an image of
exactly the input's size:

* `fit_longer_side` / `fit_within` / `resize_to`: the "process at a smaller resolution and scale back"
  speed knob, and fitting a frame into a network's fixed input.
* `pad_to_size` / `pad_to_multiple` / `crop`: networks with stride-2 down- and up-sampling (e.g. the Johnson/Dumoulin
  transformer nets) round sizes that are not multiples of 4 *up* (250×333 in → 252×336 out);
  reflect-padding to the multiple first and cropping afterwards keeps the output aligned with the
  input and avoids a dark or smeared border.
* `to_tensor` / `from_tensor`: BGR uint8 ↔ RGB float32 0..1 in NCHW or NHWC layout.
* `centre_square` and `blend`.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Layout = Literal["nchw", "nhwc"]


def fit_longer_side(width: int, height: int, side: int) -> tuple[int, int]:
    """The size ``(w, h)`` in pixels that scales ``width×height`` so its longer side is ``side``.

    The aspect ratio is kept up to rounding (each side rounded to the nearest pixel, at least 1).

    Raises:
        ValueError: a non-positive size.
    """
    if min(width, height, side) <= 0:
        raise ValueError(f"sizes must be positive, got {width}x{height} and side {side}")
    r = side / max(width, height)
    return max(1, round(width * r)), max(1, round(height * r))


def resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width×height`` (INTER_AREA when shrinking, INTER_LINEAR otherwise).

    Returns ``image`` itself (not a copy) when it already has that size.
    """
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    shrink = width * height < w * h
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def fit_within(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The largest size ``(w, h)`` with the aspect ratio of ``width×height`` that fits in ``box_width×box_height``.

    Each side is rounded to the nearest pixel, at least 1 and at most the box side.

    Raises:
        ValueError: a non-positive size.
    """
    if min(width, height, box_width, box_height) <= 0:
        raise ValueError(f"sizes must be positive, got {width}x{height} and box {box_width}x{box_height}")
    r = min(box_width / width, box_height / height)
    return min(box_width, max(1, round(width * r))), min(box_height, max(1, round(height * r)))


_BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "edge": cv2.BORDER_REPLICATE, "zero": cv2.BORDER_CONSTANT}
PadMode = Literal["reflect", "edge", "zero"]


def pad_to_size(image: np.ndarray, height: int, width: int, mode: PadMode = "reflect") -> np.ndarray:
    """Pad ``image`` (H×W or H×W×C) at the bottom and right to ``height×width`` pixels.

    Args:
        image: the image; returned as is (no copy) when it already has that size.
        height, width: the padded size, at least the image's.
        mode: ``reflect`` mirrors without repeating the border pixel (``cv2.BORDER_REFLECT_101``, numpy's
            ``reflect``; pads longer than the image keep mirroring back and forth), ``edge`` repeats the
            border pixel, ``zero`` pads with 0.

    Raises:
        ValueError: the target is smaller than the image, or an unknown ``mode``.
    """
    h, w = image.shape[:2]
    if height < h or width < w:
        raise ValueError(f"cannot pad a {h}x{w} image to the smaller size {height}x{width} (HxW)")
    if mode not in _BORDERS:
        raise ValueError(f"mode must be 'reflect', 'edge' or 'zero', not {mode!r}")
    if (h, w) == (height, width):
        return image
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, _BORDERS[mode], value=0)


def pad_to_multiple(image: np.ndarray, multiple: int, mode: PadMode = "reflect"
                    ) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad ``image`` (H×W or H×W×C) at the bottom and right so both sides are multiples of ``multiple``.

    Args:
        image: the image; returned as is (no copy) when both sides already are multiples.
        multiple: k ≥ 1; the padded size is ``(ceil(H/k)·k, ceil(W/k)·k)``.
        mode: see `pad_to_size` (default ``reflect``: mirrored, border pixel not repeated).

    Returns:
        (padded image, (pad_bottom, pad_right)) in pixels; undo with ``crop(out, H, W)``.

    Raises:
        ValueError: ``multiple`` < 1 or an unknown ``mode``.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = image.shape[:2]
    pb, pr = -h % multiple, -w % multiple
    return pad_to_size(image, h + pb, w + pr, mode), (pb, pr)


def crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The top-left ``height×width`` part of an H×W(×C) image (a view), e.g. to undo `pad_to_multiple`.

    Raises:
        ValueError: the image is smaller than ``height×width``.
    """
    h, w = image.shape[:2]
    if h < height or w < width:
        raise ValueError(f"cannot crop {height}x{width} (HxW) out of a {h}x{w} image")
    return image[:height, :width]


def centre_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an H×W(×C) image (a view); the odd pixel goes right/bottom."""
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return image[y0:y0 + s, x0:x0 + s]


def to_tensor(image: np.ndarray, layout: Layout = "nchw") -> np.ndarray:
    """uint8 H×W×3 BGR → float32 RGB in 0..1, shaped (1, 3, H, W) for ``nchw`` or (1, H, W, 3) for ``nhwc``.

    Raises:
        ValueError: not an H×W×3 image, or an unknown layout.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image.shape}")
    if layout == "nchw":
        return cv2.dnn.blobFromImage(image, 1.0 / 255.0, swapRB=True)
    if layout == "nhwc":
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return (rgb.astype(np.float32) * np.float32(1.0 / 255.0))[None]
    raise ValueError(f"layout must be 'nchw' or 'nhwc', not {layout!r}")


def from_tensor(tensor: np.ndarray, layout: Layout = "nchw") -> np.ndarray:
    """float RGB (1, 3, H, W) or (1, H, W, 3), nominally 0..1 → uint8 H×W×3 BGR (clipped, rounded).

    Values outside 0..1 are clipped (networks such as multistyle26 overshoot a little).

    Raises:
        ValueError: the shape does not match ``layout`` with batch 1 and 3 channels.
    """
    if layout == "nchw":
        if tensor.ndim != 4 or tensor.shape[0] != 1 or tensor.shape[1] != 3:
            raise ValueError(f"expected a (1, 3, H, W) tensor, got shape {tensor.shape}")
        chw = _to_u8(tensor[0])
        return cv2.merge((chw[2], chw[1], chw[0]))  # planar RGB -> interleaved BGR, contiguous
    if layout == "nhwc":
        if tensor.ndim != 4 or tensor.shape[0] != 1 or tensor.shape[3] != 3:
            raise ValueError(f"expected a (1, H, W, 3) tensor, got shape {tensor.shape}")
        return cv2.cvtColor(_to_u8(tensor[0]), cv2.COLOR_RGB2BGR)
    raise ValueError(f"layout must be 'nchw' or 'nhwc', not {layout!r}")


def _to_u8(values: np.ndarray) -> np.ndarray:
    """0..1 floats → uint8 0..255: clipped, scaled, rounded half up; C-contiguous."""
    scaled = np.clip(values, 0.0, 1.0, dtype=np.float32) * np.float32(255.0)
    scaled += np.float32(0.5)
    return np.ascontiguousarray(scaled, dtype=np.float32).astype(np.uint8)


def blend(original: np.ndarray, other: np.ndarray, amount: float) -> np.ndarray:
    """``(1 − amount)·original + amount·other`` for two uint8 images of one shape (rounded, saturated).

    ``amount`` 0 returns ``original`` and 1 returns ``other`` themselves (no copy, byte-identical).

    Raises:
        ValueError: ``amount`` outside [0, 1] or different shapes.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    if original.shape != other.shape:
        raise ValueError(f"cannot blend shapes {original.shape} and {other.shape}")
    if amount == 0.0:
        return original
    if amount == 1.0:
        return other
    return cv2.addWeighted(original, 1.0 - amount, other, amount, 0.0)


__all__ = ["blend", "centre_square", "crop", "fit_longer_side", "fit_within", "from_tensor", "pad_to_multiple",
           "pad_to_size", "resize_to", "to_tensor"]
