"""Built-in sinks ``display`` (an OpenCV window) and ``null`` (discards frames)."""

from __future__ import annotations

import os
import sys

import cv2

from streamcnn import Context, Field, Frame, Params, Sink, StreamcnnError

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
