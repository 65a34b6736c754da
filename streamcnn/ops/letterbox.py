"""Resize a frame to a network's input size, and map boxes/points back exactly.

Letterbox (YOLOv5/YOLOX/Ultralytics convention): scale ``r = min(Wn/W, Hn/H)``, resized size
``(round(W·r), round(H·r))``, integer padding with pad value 114; in ``center`` mode the odd
padding pixel goes right/bottom, in ``top-left`` mode all padding is right/bottom (the YOLOX
demo). ``stretch`` resizes to ``Wn×Hn`` without keeping the aspect ratio. The inverse uses the
same integer pads and scales that the forward pass applied (carried in `LetterboxInfo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

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


def letterbox(
    image: np.ndarray, net_w: int, net_h: int, mode: ResizeMode = "center", pad_value: int = 114
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``image`` (uint8 H×W×C) into a ``net_h×net_w×C`` canvas; return it and the mapping."""
    h, w = image.shape[:2]
    info = letterbox_info(w, h, net_w, net_h, mode)
    if mode == "stretch":
        return cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_LINEAR), info
    new_w, new_h = round(w * info.scale_x), round(h * info.scale_y)
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((net_h, net_w) + image.shape[2:], pad_value, dtype=image.dtype)
    canvas[info.pad_top:info.pad_top + new_h, info.pad_left:info.pad_left + new_w] = resized
    return canvas, info
