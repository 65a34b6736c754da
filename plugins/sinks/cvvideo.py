"""The ``video`` sink on OpenCV's writer: used only where PyAV (``av``) cannot be imported.

It writes MPEG-4 Part 2 (``mp4v``) into .mp4 (the pip OpenCV wheels have no H.264 encoder), at the
source's nominal frame rate (one frame per processed frame), finalised at close: no segments, no
fragmented mode. ``streamcnn validate`` says so when a configuration asks for more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2

from streamcnn import Context, Field, Frame, Params, SinkWriteError, StreamcnnError, StreamInfo

from .files import FileSink, probe_file, sync_file, write_problem

MIN_VIDEO_SIDE = 2  # pixels: FFmpeg encoders refuse 1-pixel-wide or -high frames


#: fourccs to suggest per container, in order of preference (offered only where they open here)
CONTAINER_FOURCCS = {
    ".mp4": ("mp4v",), ".m4v": ("mp4v",), ".mov": ("mp4v", "MJPG"), ".webm": ("VP80", "VP90"),
    ".avi": ("MJPG", "XVID"), ".mkv": ("mp4v", "MJPG", "VP80", "VP90"), ".ogv": ("VP80",),
}


@contextlib.contextmanager
def _native_stderr_quiet(quiet: bool) -> Iterator[None]:
    """While active (and ``quiet``), OpenCV's and FFmpeg's own console lines are dropped: OpenCV's log
    level is set to silent and file descriptor 2 points at /dev/null (FFmpeg's muxer and OpenCV's
    ``OpenCV: FFMPEG: tag ... is not supported`` lines are printed straight to it). Meant for the short
    probe of `writer_opens` at validate time, before any pipeline thread runs."""
    if not quiet:
        yield
        return
    logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
    level = logging_mod.getLogLevel() if logging_mod else None
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        if logging_mod:
            logging_mod.setLogLevel(logging_mod.LOG_LEVEL_SILENT)
        yield
    finally:
        if logging_mod and level is not None:
            logging_mod.setLogLevel(level)
        os.dup2(saved, 2)
        os.close(saved)


def writer_opens(path: Path, fourcc: str, quiet: bool = True, size: tuple[int, int] = (64, 64),
                 fps: float = 25.0) -> bool:
    """True when OpenCV (FFmpeg) opens a video writer for ``fourcc`` on ``path``'s container: tried on
    a temporary file with ``path``'s extension in a temporary folder (removed again). ``quiet``
    drops OpenCV's and FFmpeg's own console lines meanwhile (`_native_stderr_quiet`)."""
    with tempfile.TemporaryDirectory(prefix="streamcnn-codec-") as tmp, _native_stderr_quiet(quiet):
        writer = cv2.VideoWriter(str(Path(tmp) / f"probe{path.suffix}"), cv2.CAP_FFMPEG,
                                 cv2.VideoWriter.fourcc(*fourcc), fps, size)
        try:
            return bool(writer.isOpened())
        finally:
            writer.release()


def codec_problem(path: Path, fourcc: str, quiet: bool = True) -> str | None:
    """Why the video sink cannot write ``path`` with ``fourcc`` (``writer_opens`` is false), saying
    which fourccs work for that container; None when it can."""
    if writer_opens(path, fourcc, quiet):
        return None
    ext = path.suffix.lower()
    if not ext:
        return (f"cannot write {path}: the path has no extension, so there is no container to write "
                f"fourcc {fourcc!r} into; end it in .mp4 (fourcc mp4v), .avi (MJPG, XVID) or .webm (VP80, VP90)")
    works = [c for c in CONTAINER_FOURCCS.get(ext, ()) if c != fourcc and writer_opens(path, c, quiet)]
    h264 = (" (avc1/H264 do not work in the pip OpenCV wheels: their FFmpeg has no H.264 encoder)"
            if fourcc.upper() in ("AVC1", "H264", "X264") else "")
    if works:
        fix = f"for {ext} use fourcc: {' or '.join(works)}"
    elif ext in CONTAINER_FOURCCS:
        fix = f"this OpenCV build writes no {ext} video at all; use .mp4 with fourcc mp4v"
    else:
        fix = f"{ext} is not a video container OpenCV writes; use .mp4 (mp4v), .avi (MJPG, XVID) or .webm (VP80, VP90)"
    return (f"cannot write {path}: OpenCV cannot encode fourcc {fourcc!r} into a {ext} container{h264}; "
            f"{fix}")


class CvVideoSink(FileSink):
    """The ``video`` sink where PyAV cannot be imported: OpenCV's writer, at the source's frame rate.

    The writer opens on the first frame (its size fixes the output size; later frames of another
    size are resized to it, with one warning the first time). Frames under 2×2 pixels cannot be
    encoded: the sink says so instead of blaming the codec. mp4 files use the ``mp4v`` codec: the
    OpenCV wheels have no H.264 encoder (their FFmpeg has no libx264 or openh264). ``close``
    finalises the container, so the file plays after Ctrl-C or SIGTERM.

    Every write is checked: a frame the writer refuses (a full disk, a file larger than the file
    system allows; OpenCV ≥ 5 reports it per frame) raises `SinkWriteError` naming the file, which
    stops the pipeline. ``close`` syncs the file to disk and reopens it: a file that cannot be read
    back, or holds fewer frames than were written (OpenCV 4 does not report failed writes), raises
    `SinkWriteError` too, so a broken video never goes unnoticed.
    """

    class Params(Params):
        path: str = Field(description="output file (.mp4, .avi, .mkv, .webm); folders are created")
        fourcc: str = Field("mp4v", min_length=4, max_length=4, description="codec FOURCC")
        fps: float | None = Field(None, gt=0, description="frames/s (default: the source's, else 25)")

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """The folder can be written, and this OpenCV can encode ``fourcc`` into the path's container
        (a writer is opened on a small temporary file of the same extension): ValueError naming the
        path, the fourcc, the container and the fourccs that work for it."""
        super().check(params, ctx)
        problem = codec_problem(ctx.output_path(params.path), params.fourcc,
                                quiet=not ctx.log.isEnabledFor(logging.DEBUG))  # -v shows OpenCV's own lines
        if problem:
            raise ValueError(problem)

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.fps = params.fps or 25.0
        self.size: tuple[int, int] | None = None
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0
        self.resized = False  # warned once about a frame of another size
        self.failed = False  # a write failed (reported): close only releases

    def open(self, stream: StreamInfo) -> None:
        super().open(stream)
        self.fps = self.params.fps or stream.fps or 25.0

    def write(self, frame: Frame) -> None:
        image = frame.image
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            if min(self.size) < MIN_VIDEO_SIDE:
                raise StreamcnnError(
                    f"video sink: frame {frame.index} is {self.size[0]}×{self.size[1]} pixels, too small to encode "
                    f"as video {self.path.name}: encoders need at least {MIN_VIDEO_SIDE}×{MIN_VIDEO_SIDE} pixels "
                    "(and even sizes for some codecs). Make the frames larger (e.g. a smaller `stride` for "
                    "edges) or write them with the 'images' sink"
                )
            problem = self._probe_output()  # before OpenCV, which deletes a file it cannot open
            if problem:
                self.failed = True
                raise SinkWriteError("video", self.path, problem)
            fourcc = cv2.VideoWriter.fourcc(*self.params.fourcc)
            self.writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                odd = (" Odd sizes fail with some codecs: try an even width and height."
                       if self.size[0] % 2 or self.size[1] % 2 else "")
                raise StreamcnnError(
                    f"video sink: cannot open {self.path} for writing with codec {self.params.fourcc!r} "
                    f"({self.size[0]}x{self.size[1]} @ {self.fps:g} fps); mp4v (.mp4), MJPG (.avi) and "
                    "VP80 (.webm) work with the OpenCV wheels." + odd
                )
            self.ctx.log.info("writing %s (%dx%d, %g fps)", self.path, *self.size, self.fps)
        if (image.shape[1], image.shape[0]) != self.size:
            if not self.resized:
                self.resized = True
                self.ctx.log.warning(
                    "video sink: frame %d is %d×%d, the video is %d×%d: resized (this and any later frames of "
                    "another size)", frame.index, image.shape[1], image.shape[0], *self.size,
                )
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self.writer.write(image) is False:  # OpenCV >= 5; 4.x returns None (checked at close)
            self.failed = True
            raise SinkWriteError("video", self.path, f"the video writer refused frame {frame.index} after "
                                 f"{self.frames} frames ({self._why_failed()})")
        self.frames += 1

    def close(self) -> None:
        """Finalise the container, sync it to disk and check it can be read back with every frame
        written (`SinkWriteError` otherwise); then release the file's lock."""
        try:
            writer, self.writer = self.writer, None
            if writer is None:
                return
            writer.release()
            if not self.failed:
                self._check_written()
        finally:
            super().close()

    def _why_failed(self) -> str:
        """The likely reason a write failed, for messages."""
        return write_problem(self.path.parent) or "the disk may be full, or the file too large for the file system"

    def _probe_output(self) -> str | None:
        return probe_file(self.path)

    def _check_written(self) -> None:
        """Sync the finished file and read its frame count back; `SinkWriteError` when it falls short."""
        try:
            sync_file(self.path)  # a write-back error (e.g. a full disk) shows here
        except OSError as exc:
            raise SinkWriteError.from_os_error("video", self.path, exc) from None
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        try:
            readable = cap.isOpened()
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if readable else 0
        finally:
            cap.release()
        if not readable:
            raise SinkWriteError("video", self.path, f"the finished file cannot be read back as a video after "
                                 f"{self.frames} frames were written ({self._why_failed()})")
        if 0 <= count < self.frames:  # -1: the container does not say
            raise SinkWriteError("video", self.path, f"the finished file holds {count} of the {self.frames} frames "
                                 f"written ({self._why_failed()})")


