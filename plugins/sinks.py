"""Built-in sinks: ``video`` (mp4 file), ``jsonl`` (one JSON record per frame), ``display``
(OpenCV window) and ``null``. Registered through the ``streamcnn`` entry-point group like any
third-party plugin.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO

import cv2

from streamcnn import Context, Field, Frame, Params, Sink, StreamcnnError, hookimpl


class VideoSink(Sink):
    """Writes every processed frame to a video file at the source's frame rate.

    The writer opens on the first frame (its size fixes the output size; later frames of another
    size are resized to it). mp4 files use the ``mp4v`` codec: the OpenCV wheels have no H.264
    encoder (shared/research/deps.md, section 2.2). ``close`` finalises the container, so the
    file plays after Ctrl-C or SIGTERM.
    """

    class Params(Params):
        path: str = Field(description="output file (.mp4, .avi, .mkv, .webm); folders are created")
        fourcc: str = Field("mp4v", min_length=4, max_length=4, description="codec FOURCC")
        fps: float | None = Field(None, gt=0, description="frames/s (default: the source's, else 25)")

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.path = ctx.resolve(params.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = params.fps or ctx.fps or 25.0
        self.size: tuple[int, int] | None = None
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, frame: Frame) -> None:
        image = frame.image
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter.fourcc(*self.params.fourcc)
            self.writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise StreamcnnError(
                    f"video sink: cannot open {self.path} for writing with codec {self.params.fourcc!r} "
                    f"({self.size[0]}x{self.size[1]} @ {self.fps:g} fps); mp4v (.mp4), MJPG (.avi) and "
                    "VP80 (.webm) work with the OpenCV wheels"
                )
            self.ctx.log.info("writing %s (%dx%d, %g fps)", self.path, *self.size, self.fps)
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class JsonlSink(Sink):
    """One JSON object per line and per frame:
    ``{"pipeline", "source", "index", "pts" (s), "capture_time" (epoch s), "width", "height",
    "detections": [{"xyxy" (frame pixels), "conf", "class_id", "class_name", ...}]}``.

    Each line is written and flushed whole, so the last line is complete after Ctrl-C.
    """

    class Params(Params):
        path: str = Field(description="output .jsonl file; folders are created")
        append: bool = Field(False, description="append instead of overwrite")

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.path = ctx.resolve(params.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh: IO[str] | None = open(self.path, "a" if params.append else "w", encoding="utf-8")  # noqa: SIM115

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
        assert self.fh is not None
        self.fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            self.fh = None


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
    """Shows frames in an OpenCV window named after the pipeline; ``q`` or Esc closes it."""

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
    return {"video": VideoSink, "jsonl": JsonlSink, "display": DisplaySink, "null": NullSink}


__all__ = ["DisplaySink", "JsonlSink", "NullSink", "VideoSink"]
