"""Built-in sink ``jsonl``: one JSON record per frame, each line written whole."""

from __future__ import annotations

import json

from streamcnn import Field, Frame, Params

from .files import LinesSink


class JsonlSink(LinesSink):
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
        self.out.write_line((json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))
