"""Built-in sinks, registered through the ``streamcnn`` entry-point group like any third-party plugin:

- ``video``: H.264 recordings through PyAV (crash-safe fragments, segments, retention) — OpenCV's
  ``mp4v`` writer only where PyAV cannot be imported (`cvvideo`);
- ``clip``: event clips with pre-roll from a ring buffer of encoded packets;
- ``jsonl``: one JSON record per frame; ``images``: image files or snapshots;
- ``events_jsonl``: one JSON line per event;
- ``mqtt``: events to an MQTT broker (zone counts retained, availability); ``webhook``: each event
  POSTed as JSON to a URL;
- ``display``: an OpenCV window; ``null``: discards frames.
"""

from __future__ import annotations

from streamcnn import Sink, hookimpl
from streamcnn import recording as _recording

from .clip import ClipSink
from .cvvideo import CvVideoSink, codec_problem, writer_opens
from .display import DisplaySink, NullSink, gui_problem
from .events_jsonl import EventsJsonlSink
from .images import ImagesSink, image_pattern_problem
from .jsonl import JsonlSink
from .mqtt import MqttSink
from .video import VideoSink
from .webhook import WebhookSink

#: the ``video`` sink of this install: PyAV's, or OpenCV's where PyAV cannot be imported
VIDEO_SINK: type[Sink] = VideoSink if _recording.AVAILABLE else CvVideoSink


@hookimpl
def streamcnn_sink_types() -> dict[str, type[Sink]]:
    sinks: dict[str, type[Sink]] = {"video": VIDEO_SINK, "jsonl": JsonlSink, "images": ImagesSink,
                                    "display": DisplaySink, "null": NullSink, "events_jsonl": EventsJsonlSink,
                                    "mqtt": MqttSink, "webhook": WebhookSink}
    if _recording.AVAILABLE:
        sinks["clip"] = ClipSink
    return sinks


__all__ = [
    "VIDEO_SINK", "ClipSink", "CvVideoSink", "DisplaySink", "EventsJsonlSink", "ImagesSink", "JsonlSink", "MqttSink",
    "NullSink", "VideoSink", "WebhookSink",
    "codec_problem", "gui_problem", "image_pattern_problem", "writer_opens",
]
