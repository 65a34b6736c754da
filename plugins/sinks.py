"""Built-in sinks: ``video`` (mp4 file), ``jsonl`` (one JSON record per frame), ``images`` (one
image file per frame), ``display`` (OpenCV window) and ``null``. Registered through the
``streamcnn`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import string
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2

from streamcnn import (
    Context,
    Field,
    Frame,
    Output,
    Params,
    Sink,
    SinkWriteError,
    StreamcnnError,
    StreamInfo,
    hookimpl,
    suggest,
)

MIN_VIDEO_SIDE = 2  # pixels: FFmpeg encoders refuse 1-pixel-wide or -high frames


class _FileSink(Sink):
    """A sink writing one file given by the ``path`` option: checked at validate time (the folder
    can be written), ``{pipeline}`` filled in, folders created, and the file locked for this process
    (`Context.lock_output`: a second process writing the same file refuses to start, naming this one's
    pid). Subclasses call ``super().close()`` last, which releases the lock."""

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        ctx.check_writable(params.path)

    @classmethod
    def outputs(cls, params: Params, ctx: Context) -> list[Output]:
        return [Output.file(ctx.output_path(params.path))]

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.path = ctx.output_path(params.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = ctx.lock_output(self.path)

    def close(self) -> None:
        """Release the output file's lock."""
        self.lock.release()


def _write_problem(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` just now (``[Errno 28] No space left on device``),
    found by writing 64 KiB to a temporary file there, or None when that works."""
    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
    return None


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


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (short writes continued); OSError when the OS refuses."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - a regular file makes progress or raises
            raise OSError(f"write returned {n}")
        view = view[n:]


class VideoSink(_FileSink):
    """Writes every processed frame to a video file at the source's frame rate.

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
        return _write_problem(self.path.parent) or "the disk may be full, or the file too large for the file system"

    def _probe_output(self) -> str | None:
        """Why the output file cannot be written (a full disk, a read-only file ...), found by writing
        64 KiB to it (then emptied for the encoder), or None."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                _write_all(fd, b"\0" * 65536)
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.fsync(fd)
                    os.ftruncate(fd, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            return f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
        return None

    def _check_written(self) -> None:
        """Sync the finished file and read its frame count back; `SinkWriteError` when it falls short."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.fsync(fd)  # a write-back error (e.g. a full disk) shows here
            finally:
                os.close(fd)
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


class JsonlSink(_FileSink):
    """One JSON object per line and per frame:
    ``{"pipeline", "source", "index", "pts" (s), "capture_time" (epoch s), "width", "height",
    "detections": [{"xyxy" (frame pixels), "conf", "class_id", "class_name", ...}]}``, plus
    ``"file"`` (the image's path) when the source set ``frame.meta["file"]`` (the images source).

    Each line is written whole, unbuffered (``os.write``, continued after a short write), so the last
    line is complete after Ctrl-C; a write the OS refuses (a full disk) raises `SinkWriteError` naming the file, which
    stops the pipeline, and the partly written line is cut off again, so the file stays valid JSON
    Lines. ``close`` syncs the file to disk.
    """

    class Params(Params):
        path: str = Field(description="output .jsonl file; folders are created")
        append: bool = Field(False, description="append instead of overwrite")

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        try:  # after the lock: a second writer must not truncate the first one's file
            self.fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if params.append else os.O_TRUNC), 0o666
            )
        except OSError:
            self.lock.release()
            raise
        self.good = os.lseek(self.fd, 0, os.SEEK_END)  # bytes of complete lines in the file
        self.failed = False

    def write(self, frame: Frame) -> None:
        record = {
            "pipeline": self.ctx.pipeline,
            "source": frame.source,
            "index": frame.index,
            "pts": round(frame.pts, 6),
            "capture_time": round(frame.capture_time, 6),
            "width": frame.width,
            "height": frame.height,
            "detections": frame.detections.to_records(),
        }
        file = frame.meta.get("file")
        if isinstance(file, str):
            record["file"] = file
        assert self.fd is not None
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            _write_all(self.fd, data)
        except OSError as exc:
            self.failed = True
            try:
                os.ftruncate(self.fd, self.good)  # no half line at the end
            except OSError:
                pass
            raise SinkWriteError.from_os_error("jsonl", self.path, exc) from None
        self.good += len(data)

    def close(self) -> None:
        """Sync the file to disk and close it (`SinkWriteError` when the OS reports a lost write);
        then release the file's lock."""
        fd, self.fd = self.fd, None
        try:
            if fd is not None:
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            if not self.failed:
                raise SinkWriteError.from_os_error("jsonl", self.path, exc) from None
        finally:
            super().close()


class ImagesSink(Sink):
    """Writes every processed frame as an image file, named by a pattern.

    ``path`` is a Python format pattern with the fields ``{index}`` (the frame index) and
    ``{pipeline}``, e.g. ``out/{pipeline}/{index:06d}.png``; the extension picks the format
    (.jpg, .png, .webp, .bmp ...). Folders are created. A pattern without ``{index}`` writes
    every frame to the same file, so it is refused unless ``overwrite: true`` (a "latest
    snapshot" file, replaced atomically so a reader never sees half an image). A file the OS
    refuses to write (a full disk) raises `SinkWriteError` naming it, which stops the pipeline; the
    partial file is removed. Two processes writing the same pattern are refused like two writing
    the same file (the lock file sits in the folder of frame 0).
    """

    class Params(Params):
        path: str = Field("out/frames/{index:06d}.jpg",
                          description="file name pattern with {index} and optionally {pipeline}; folders are created")
        quality: int = Field(95, ge=0, le=100, description="JPEG (and WebP) quality, 0-100")
        overwrite: bool = Field(False, description="allow a path without {index}: each frame replaces the last")

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        problem = image_pattern_problem(params.path, params.overwrite)
        if problem:
            raise ValueError(problem)
        ctx.check_writable(params.path.format(index=0, pipeline=ctx.pipeline))

    @classmethod
    def outputs(cls, params: Params, ctx: Context) -> list[Output]:
        return [Output.file(ctx.output_path(params.path))]  # the pattern: two sinks with one pattern collide

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        problem = image_pattern_problem(params.path, params.overwrite)
        if problem:
            raise StreamcnnError(f"images sink: {problem}")
        ext = os.path.splitext(params.path.format(index=0, pipeline=ctx.pipeline))[1].lower()
        if ext in (".jpg", ".jpeg", ".jpe"):
            self.flags = [cv2.IMWRITE_JPEG_QUALITY, params.quality]
        elif ext == ".webp":
            self.flags = [cv2.IMWRITE_WEBP_QUALITY, max(1, params.quality)]
        else:
            self.flags = []
        self.snapshot = "index" not in _pattern_fields(params.path)
        self.ext = ext
        self.folders: set[Path] = set()
        self.frames = 0
        first = ctx.resolve(params.path.format(index=0, pipeline=ctx.pipeline))
        first.parent.mkdir(parents=True, exist_ok=True)
        self.lock = ctx.lock_output(first.parent / Path(params.path.replace("{pipeline}", ctx.pipeline)).name)

    def write(self, frame: Frame) -> None:
        path = self.ctx.resolve(self.params.path.format(index=frame.index, pipeline=self.ctx.pipeline))
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
                _write_all(fd, data.tobytes())
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


def _pattern_fields(pattern: str) -> set[str]:
    """Field names used in a format pattern (``{index:06d}`` → ``index``); ValueError when malformed."""
    fields = set()
    for _, name, _, _ in string.Formatter().parse(pattern):
        if name is not None:
            fields.add(name.split(".")[0].split("[")[0])
    return fields


def image_pattern_problem(pattern: str, overwrite: bool = False) -> str | None:
    """What is wrong with an ``images`` sink path pattern, or None."""
    example = "e.g. out/frames/{index:06d}.jpg"
    try:
        fields = _pattern_fields(pattern)
    except ValueError as exc:
        return f"path {pattern!r} is not a valid pattern ({exc}); write fields as {{index}}, {example}"
    unknown = sorted(fields - {"index", "pipeline"})
    if unknown:
        hints = "".join(suggest(f, ["index", "pipeline"]) for f in unknown[:1])
        what = ", ".join("{" + f + "}" if f else "{}" for f in unknown)
        return f"path {pattern!r} uses {what}{hints}; the fields are {{index}} and {{pipeline}} ({example})"
    try:
        sample = pattern.format(index=0, pipeline="p")
    except (ValueError, KeyError, IndexError) as exc:
        return f"path {pattern!r} is not a valid pattern ({exc}); {example}"
    if "index" not in fields and not overwrite:
        return (f"path {pattern!r} has no {{index}}: every frame would overwrite the last one. Add {{index}} "
                f"({example}), or set overwrite: true to keep only the latest frame (a snapshot)")
    if not cv2.haveImageWriter(sample):
        ext = os.path.splitext(sample)[1] or "(no extension)"
        return f"path {pattern!r}: OpenCV cannot write {ext} images; use .jpg, .png, .webp or .bmp"
    return None


GUI_HELP = (
    "the 'display' sink needs OpenCV with GUI support and a screen. This install has {why}. "
    "For a window: pip uninstall -y opencv-python-headless && pip install opencv-python "
    "(on a desktop with a display); on a server use the browser live view instead: "
    "sinks: [{{preview: {{port: 8090}}}}] and open http://127.0.0.1:8090/"
)


def gui_problem() -> str | None:
    """Why no OpenCV window can be opened here, or None when one can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    info = cv2.getBuildInformation()
    gui = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.strip().startswith("GUI:")), "")
    if not gui or gui.upper() == "NONE":
        return "a headless OpenCV build (opencv-python-headless, no GUI backend)"
    return None


class DisplaySink(Sink):
    """Shows frames in an OpenCV window named after the pipeline (stop the run with Ctrl-C)."""

    class Params(Params):
        title: str | None = Field(None, description="window title (default: pipeline name)")

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        why = gui_problem()
        if why:
            raise ValueError(GUI_HELP.format(why=why))

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        why = gui_problem()
        if why:
            raise StreamcnnError(GUI_HELP.format(why=why))
        self.title = params.title or ctx.pipeline
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)

    def write(self, frame: Frame) -> None:
        cv2.imshow(self.title, frame.image)
        cv2.waitKey(1)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class NullSink(Sink):
    """Discards frames (for benchmarks and stages that act by side effect)."""

    def write(self, frame: Frame) -> None:
        return None


@hookimpl
def streamcnn_sink_types() -> dict[str, type[Sink]]:
    return {"video": VideoSink, "jsonl": JsonlSink, "images": ImagesSink, "display": DisplaySink, "null": NullSink}


__all__ = ["DisplaySink", "ImagesSink", "JsonlSink", "NullSink", "VideoSink"]
