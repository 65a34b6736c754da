"""Built-in sink ``images``: one image file per frame (or per snapshot interval), named by a pattern."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from streamcnn import Context, Field, Frame, Output, Params, Sink, SinkWriteError, StreamcnnError, suggest
from streamcnn import recording as rec

from .files import write_all


class ImagesSink(Sink):
    """Writes every processed frame as an image file, named by a pattern.

    ``path`` is a Python format pattern with the fields ``{index}`` (the frame index) and
    ``{pipeline}``, e.g. ``out/{pipeline}/{index:06d}.png``; the extension picks the format
    (.jpg, .png, .webp, .bmp ...; ``quality`` for JPEG/WebP, ``png_compression`` for PNG).
    Snapshots: ``every: N`` writes every N-th frame, ``min_interval: S`` at most one file per S
    seconds of stream time (pts), e.g. ``{path: snap/{index:06d}.jpg, min_interval: 10}``.
    Folders are created. A pattern without ``{index}`` writes every frame to the same file, so
    it is refused unless ``overwrite: true`` (a "latest snapshot" file, replaced atomically so a
    reader never sees half an image). A file the OS
    refuses to write (a full disk) raises `SinkWriteError` naming it, which stops the pipeline; the
    partial file is removed. Two processes writing the same pattern are refused like two writing
    the same file (the lock file sits in the folder of frame 0).
    """

    class Params(Params):
        path: str = Field("out/frames/{index:06d}.jpg",
                          description="file name pattern with {index} and optionally {pipeline}; folders are created")
        quality: int = Field(95, ge=0, le=100, description="JPEG and WebP quality, 0-100 (WebP 100: lossless)")
        png_compression: int = Field(3, ge=0, le=9, description="PNG zlib level, 0 (fastest) to 9 (smallest)")
        every: int = Field(1, ge=1, description="write every N-th processed frame (1: all)")
        min_interval: float = Field(0.0, ge=0, description="seconds of stream time (pts) at least between two files")
        overwrite: bool = Field(False, description="allow a path without {index}: each frame replaces the last")

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        problem = image_pattern_problem(params.path, params.overwrite)
        if problem:
            raise ValueError(problem)
        ctx.check_writable(ctx.fill(params.path).format(index=0))

    @classmethod
    def outputs(cls, params: Params, ctx: Context) -> list[Output]:
        return [Output.file(ctx.output_path(params.path))]  # the pattern: two sinks with one pattern collide

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        problem = image_pattern_problem(params.path, params.overwrite)
        if problem:
            raise StreamcnnError(f"images sink: {problem}")
        ext = os.path.splitext(ctx.fill(params.path).format(index=0))[1].lower()
        if ext in (".jpg", ".jpeg", ".jpe"):
            self.flags = [cv2.IMWRITE_JPEG_QUALITY, params.quality]
        elif ext == ".webp":
            self.flags = [cv2.IMWRITE_WEBP_QUALITY, max(1, params.quality)]
        elif ext == ".png":
            self.flags = [cv2.IMWRITE_PNG_COMPRESSION, params.png_compression]
        else:
            self.flags = []
        self.snapshot = "index" not in rec.template_fields(params.path)
        self.ext = ext
        self.folders: set[Path] = set()
        self.frames = 0
        self.seen = 0  # frames offered (for `every`)
        self.last_pts: float | None = None  # pts of the last frame written (for `min_interval`)
        self.pattern = ctx.fill(params.path)  # {pipeline} and {node} once; {index} per frame
        first = ctx.resolve(self.pattern.format(index=0))
        first.parent.mkdir(parents=True, exist_ok=True)
        self.lock = ctx.lock_output(first.parent / Path(self.pattern).name)

    def write(self, frame: Frame) -> None:
        self.seen += 1
        if (self.seen - 1) % self.params.every:
            return
        if self.last_pts is not None and frame.pts - self.last_pts < self.params.min_interval - 1e-9:
            return
        self.last_pts = frame.pts
        path = self.ctx.resolve(self.pattern.format(index=frame.index))
        if path.parent not in self.folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.folders.add(path.parent)
        target = path.with_name(f".{path.stem}.tmp{path.suffix}") if self.snapshot else path
        try:
            ok, data = cv2.imencode(self.ext, frame.image, self.flags)
        except cv2.error as exc:
            raise StreamcnnError(f"images sink: cannot write {path}: {exc}") from None
        if not ok:
            raise StreamcnnError(f"images sink: cannot write {path} (OpenCV could not encode the frame as {self.ext})")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                write_all(fd, data.tobytes())
            finally:
                os.close(fd)
            if self.snapshot:
                os.replace(target, path)
        except OSError as exc:
            try:
                os.unlink(target)  # no half image left behind
            except OSError:
                pass
            raise SinkWriteError.from_os_error("images", path, exc) from None
        if self.frames == 0:
            self.ctx.log.info("writing frames as %s", self.ctx.resolve(self.params.path))
        self.frames += 1

    def close(self) -> None:
        """Release the pattern's lock."""
        self.lock.release()


def image_pattern_problem(pattern: str, overwrite: bool = False) -> str | None:
    """What is wrong with an ``images`` sink path pattern, or None."""
    example = "e.g. out/frames/{index:06d}.jpg"
    try:
        fields = rec.template_fields(pattern)
    except ValueError as exc:
        return f"path {pattern!r} is not a valid pattern ({exc}); write fields as {{index}}, {example}"
    unknown = sorted(fields - {"index", "pipeline", "node"})
    if unknown:
        hints = "".join(suggest(f, ["index", "pipeline", "node"]) for f in unknown[:1])
        what = ", ".join("{" + f + "}" if f else "{}" for f in unknown)
        return (f"path {pattern!r} uses {what}{hints}; the fields are {{index}}, {{pipeline}} and {{node}} "
                f"({example})")
    try:
        sample = pattern.format(index=0, pipeline="p", node="n")
    except (ValueError, KeyError, IndexError) as exc:
        return f"path {pattern!r} is not a valid pattern ({exc}); {example}"
    if "index" not in fields and not overwrite:
        return (f"path {pattern!r} has no {{index}}: every frame would overwrite the last one. Add {{index}} "
                f"({example}), or set overwrite: true to keep only the latest frame (a snapshot)")
    if not cv2.haveImageWriter(sample):
        ext = os.path.splitext(sample)[1] or "(no extension)"
        return f"path {pattern!r}: OpenCV cannot write {ext} images; use .jpg, .png, .webp or .bmp"
    return None
