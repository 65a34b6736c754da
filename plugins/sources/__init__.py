"""Built-in source types, registered through the ``streamcnn_source_types`` hook like any plugin.

===========  ======================================================  =====  ========================
type         ``uri``                                                 live   pts
===========  ======================================================  =====  ========================
``stream``   any ``scheme://`` but ``file://``: ``rtsp://``,         yes    the stream's own
             ``http(s)://``, ``rtmp://``, ``srt://``, ``udp://`` …               (PyAV)
``webcam``   ``0``, ``"1"``, ``/dev/video2``                         yes    arrival (OpenCV)
``pattern``  ``pattern``                                             no     index / fps
``images``   existing folder, or glob with ``*``, ``?`` or ``[``     no     index / fps
``file``     anything else: a video file path or ``file://`` URI;    no     file time
             a bare registry name (``vtest.avi``) is fetched
===========  ======================================================  =====  ========================

Source contract used by `streamcnn.engine.reader.SourceReader` (also for third-party sources):

* ``open()`` starts a stream; ``open()`` after ``close()`` starts a *fresh* one (live sources are
  reconnected this way, on the same object).
* ``close()`` never blocks, may be called from any thread and more than once, also while
  another thread is stuck inside ``read()``. The built-in live sources then let the stuck
  ``read()`` release its own capture when it finally returns (`capture._Capture`), because releasing a
  ``cv2.VideoCapture`` under a running ``read()`` is not safe.
* ``read()`` returns ``(uint8 H×W×3 BGR image, pts seconds | None)`` or None at the end or on
  failure; it may raise. It may add a third item, a dict merged into ``Frame.meta`` (the
  ``images`` source gives ``{"file": "/path/of/image.png"}``); its ``capture_time`` key, when
  given, is the wall-clock time (``time.time()``) the frame's data arrived (the stream source stamps
  each packet as it is demuxed) and becomes ``Frame.capture_time``. The reader turns the pts into
  the pipeline's strictly increasing ``Frame.pts`` (`streamcnn.engine.timeline`). Every error
  message has credentials removed.
* ``check(params, ctx)`` (validate time, and before ``run``) raises ``ValueError`` for what can be
  known without opening: a missing video file, an image folder without images, a camera device
  that does not exist.

Modules: ``uri`` (scheme and ``file://`` path helpers, registry media names), ``capture`` (the
OpenCV capture shared by file and webcam, and the OpenCV live-source base), one module per type
(``file``, ``images``, ``pattern``, ``webcam``, ``stream``); this one registers them.
"""

from __future__ import annotations

from streamcnn import Source, hookimpl

from .file import VideoFileSource
from .images import ImageFolderSource
from .pattern import PatternSource
from .stream import NetworkStreamSource
from .webcam import WebcamSource

__all__ = [
    "ImageFolderSource",
    "NetworkStreamSource",
    "PatternSource",
    "VideoFileSource",
    "WebcamSource",
    "streamcnn_source_types",
]


@hookimpl
def streamcnn_source_types() -> dict[str, type[Source]]:
    """The built-in source types."""
    return {
        "file": VideoFileSource,
        "images": ImageFolderSource,
        "webcam": WebcamSource,
        "stream": NetworkStreamSource,
        "pattern": PatternSource,
    }
