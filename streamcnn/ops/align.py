"""Face crops and alignment with exact point mapping (vectorised numpy + OpenCV warps).

Coordinates are *continuous* pixel coordinates: pixel (i, j) covers [i, i+1) × [j, j+1), so a
point keeps its meaning under scaling (the convention of ``cv2.resize``). Landmark models that
output points normalised to their crop (PFLD) map back with ``x = u·side + x0``.

* `SquareCrops`: square crops of side ``scale·max(w, h)`` centred on each box (PFLD recipe).
  Parts outside the frame are **padded** with black, never clamped or stretched, so the crop
  stays square and the mapping stays one similarity per face.
* `arcface_align`: 5-point similarity alignment to the ArcFace 112×112 template (Deng et al.,
  ArcFace, CVPR 2019; template from InsightFace ``face_align.py``). The
  transform is estimated with OpenCV's ``estimateAffinePartial2D`` (4-DoF similarity); with a
  reprojection threshold that keeps every point an inlier its Levenberg-Marquardt refinement is
  the least-squares similarity (the Umeyama 1991 solution used by scikit-image/InsightFace).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: ArcFace 5-point template for a 112×112 crop (x, y) in pixels: eye image-left, other eye, nose,
#: mouth corner image-left, mouth corner image-right (InsightFace ``arcface_dst``).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
ARCFACE_SIZE = 112


@dataclass(frozen=True)
class SquareCrops:
    """Square crops of N faces, resized to ``size × size`` network pixels.

    Attributes:
        x0, y0: float64 (N,) top-left corner of each crop in frame pixels (may be negative).
        side: float64 (N,) crop side in frame pixels.
        size: the network input side in pixels (e.g. 112).
    """

    x0: np.ndarray
    y0: np.ndarray
    side: np.ndarray
    size: int

    @classmethod
    def from_boxes(cls, xyxy: np.ndarray, size: int, scale: float = 1.0) -> SquareCrops:
        """Crops of side ``scale·max(w, h)`` centred on each (N, 4) ``xyxy`` box (frame pixels)."""
        b = np.asarray(xyxy, np.float64).reshape(-1, 4)
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        side = scale * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        return cls(cx - side / 2, cy - side / 2, side, int(size))

    def __len__(self) -> int:
        return len(self.side)

    def matrices(self) -> np.ndarray:
        """float64 (N, 2, 3) affine matrices frame → crop for ``cv2.warpAffine`` (pixel-index
        convention: ``u + 0.5 = (x + 0.5 − x0)·s`` with ``s = size/side``)."""
        s = self.size / self.side
        m = np.zeros((len(self), 2, 3))
        m[:, 0, 0] = m[:, 1, 1] = s
        m[:, 0, 2] = (0.5 - self.x0) * s - 0.5
        m[:, 1, 2] = (0.5 - self.y0) * s - 0.5
        return m

    def extract(self, image: np.ndarray) -> np.ndarray:
        """uint8 (N, size, size, C) crops of ``image`` (bilinear; outside the frame = 0)."""
        out = np.zeros((len(self), self.size, self.size) + image.shape[2:], image.dtype)
        for i, m in enumerate(self.matrices()):
            out[i] = cv2.warpAffine(image, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Crop points (N, K, 2) in network pixels (0..size) → frame pixels float32 (N, K, 2)."""
        p = np.asarray(points, np.float64)
        k = (self.side / self.size)[:, None, None]
        return (p * k + np.stack([self.x0, self.y0], axis=1)[:, None, :]).astype(np.float32)

    def normalised_to_frame(self, points: np.ndarray) -> np.ndarray:
        """Crop points (N, K, 2) normalised to 0..1 (PFLD outputs) → frame pixels float32 (N, K, 2)."""
        return self.to_frame(np.asarray(points, np.float64) * self.size)


def similarity_matrix(src: np.ndarray, dst: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` → ``dst``.

    Args:
        src, dst: (K, 2) corresponding points, K ≥ 2, continuous pixel coordinates.

    Returns:
        float64 (2, 3) matrix ``[[a, −b, tx], [b, a, ty]]`` (``dst ≈ M·[src; 1]``).

    Raises:
        ValueError: OpenCV found no transform (degenerate points, e.g. all equal).
    """
    s = np.ascontiguousarray(src, np.float32).reshape(-1, 1, 2)
    d = np.ascontiguousarray(dst, np.float32).reshape(-1, 1, 2)
    m, _ = cv2.estimateAffinePartial2D(s, d, method=cv2.RANSAC, ransacReprojThreshold=1e9,
                                       maxIters=1, refineIters=50)
    if m is None or not np.isfinite(m).all():
        raise ValueError("no similarity transform for these points (degenerate landmarks)")
    return m


def arcface_align(image: np.ndarray, kps: np.ndarray, size: int = ARCFACE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Warp each face to the ArcFace template.

    Args:
        image: uint8 (H, W, 3) frame.
        kps: (N, 5, 2) landmarks in frame pixels, in the order of `ARCFACE_TEMPLATE`.
        size: output side; the template is scaled by ``size/112``.

    Returns:
        uint8 (N, size, size, 3) aligned faces and float64 (N, 2, 3) matrices frame → face
        (continuous coordinates). Faces whose landmarks are degenerate come out black with an
        all-zero matrix (their embedding is then blank → ``unknown``).
    """
    kps = np.asarray(kps, np.float32).reshape(-1, 5, 2)
    dst = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    faces = np.zeros((len(kps), size, size) + image.shape[2:], np.uint8)
    mats = np.zeros((len(kps), 2, 3))
    for i, pts in enumerate(kps):
        try:
            m = similarity_matrix(pts, dst)
        except ValueError:
            continue
        mats[i] = m
        # continuous → pixel-index convention for warpAffine: t' = t + 0.5·(a + (−b) − 1) etc.
        w = m.copy()
        w[:, 2] += 0.5 * (m[:, 0] + m[:, 1]) - 0.5
        faces[i] = cv2.warpAffine(image, w, (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return faces, mats


__all__ = ["ARCFACE_SIZE", "ARCFACE_TEMPLATE", "SquareCrops", "arcface_align", "similarity_matrix"]
