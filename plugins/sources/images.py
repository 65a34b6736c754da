"""Source type ``images``: still images from a folder or a glob, sorted by name, each frame's
``meta["file"]`` naming its image."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamcnn import Context, Field, Source, SourceError, SourceParams, redact, to_bgr3

from .uri import _Missing, check_not_a_url, local_path, uri_scheme

_GLOB_CHARS = re.compile(r"[*?\[]")
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .bmp .dib .tif .tiff .webp .ppm .pgm .pbm .pnm .jp2 .exr .hdr .pic .sr .ras".split()
)


class ImageFolderSource(Source):
    """Still images from a folder (files with an image extension) or a glob, sorted by name.

    Unreadable images are skipped with a warning; a folder none of whose images can be read is an
    error (``check`` and ``read``). Grayscale and 4-channel images become uint8
    H×W×3 BGR (alpha dropped). ``pts = index / fps`` in seconds, index counting delivered images.
    ``frame.meta["file"]`` is the image's path (str).

    Raises (from ``open``; ``check`` raises the same messages as ``ValueError``):
        SourceError: the folder does not exist or no image file matches.
    """

    class Params(SourceParams):
        """Options of ``type: images``."""

        fps: float = Field(25.0, gt=0, description="frame rate in frames/s used for pts = index / fps")

    live = False
    priority = 10

    def __init__(self, params: SourceParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        if not isinstance(uri, str) or uri_scheme(uri) not in (None, "file"):
            return False
        path = local_path(uri)
        return bool(_GLOB_CHARS.search(path)) or Path(path).expanduser().is_dir()

    @property
    def fps(self) -> float | None:
        return float(getattr(self.params, "fps", 25.0))

    @classmethod
    def list_files(cls, params: SourceParams, ctx: Context) -> list[Path]:
        """The image files, sorted by name.

        Raises:
            ValueError: the folder does not exist, or nothing matches.
        """
        uri = str(params.uri).strip()
        pattern = local_path(uri)
        target = ctx.resolve(pattern)
        if target.is_dir():
            files = sorted((p for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                           key=lambda p: p.name)
            if not files:
                raise _Missing(redact(f"no image files in folder {uri} (resolved to {target}; looked for .png, "
                                      ".jpg, .jpeg, .bmp, .tif, .webp …)"))
            return files
        if _GLOB_CHARS.search(pattern):
            files = sorted(Path(p) for p in glob.glob(str(target)) if Path(p).is_file())
            if not files:
                raise _Missing(redact(f"no image files match {uri} (resolved to {target})"))
            return files
        what = "is not a folder" if target.exists() else "not found"
        raise _Missing(redact(f"image folder {uri} {what} (resolved to {target})"))

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """The folder or glob matches at least one file; a mistyped or network URL says what to write."""
        uri = str(params.uri).strip()
        if not ctx.resolve(local_path(uri)).exists():
            check_not_a_url(uri, "images", "image files from a folder or a glob such as frames/*.jpg")
        files = cls.list_files(params, ctx)
        if not any(cv2.imread(str(f), cv2.IMREAD_REDUCED_COLOR_8) is not None for f in files):  # stops at the first
            raise ValueError(_none_readable(params.uri, files))

    def open(self) -> None:
        try:
            self._files = self.list_files(self.params, self.ctx)
        except _Missing as exc:
            raise SourceError(str(exc)) from None
        self._pos = 0
        self._index = 0

    def read(self) -> tuple[np.ndarray, float | None, dict[str, Any]] | None:
        while self._pos < len(self._files):
            path = self._files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # gray/BGRA/16-bit -> uint8 BGR
            if image is None or image.size == 0:
                self.ctx.log.warning("skipping unreadable image %s", redact(str(path)))
                continue
            pts = self._index / self.fps
            self._index += 1
            return to_bgr3(image), pts, {"file": str(path)}
        if self._index == 0 and self._files:
            raise SourceError(_none_readable(self.params.uri, self._files))
        return None

    def close(self) -> None:
        self._pos = len(self._files)


def _none_readable(uri: str | int, files: list) -> str:
    """The message for a folder or glob none of whose image files can be decoded."""
    n = len(files)
    which = (f"its only image file {files[0]} cannot" if n == 1
             else f"none of its {n} image files (first: {files[0]}) can")
    return redact(f"image folder {uri}: {which} be read as an image (damaged, truncated or not an image)")
