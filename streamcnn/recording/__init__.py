"""Recording video through PyAV: encoders, crash-safe files, segments with retention, packet rings.

Public (a plugin writing video uses these, like the built-in ``video`` and ``clip`` sinks):

- `EncoderSettings`, `VideoEncoder`: BGR frames → packets (libx264 by default, NVENC when asked
  and present); `time_base_for`, `pad_to_even`, `choose_encoder`.
- `VideoFile`: packets → one mp4/mkv/webm/avi/ts file, fragmented (plays after a crash) or
  finalised with ``+faststart``; `count_frames` reads one back.
- `SegmentIndex`, `parse_duration`, `parse_bytes`, `render`, `free_path`, `template_fields`,
  `template_problem`: segment and clip names,
  the ``segments.jsonl`` index and retention.
- `PacketRing`: the last seconds of packets (pre-roll of event clips).
- `writer_problem`: why a codec/container pair cannot be written here (for a sink's ``check``).

``AVAILABLE`` is False when PyAV cannot be imported (the sinks then fall back to OpenCV's writer).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .container import CONTAINERS, VideoFile, count_frames, muxer_for
from .encoder import (
    CODECS,
    MIN_SIDE,
    EncoderSettings,
    VideoEncoder,
    av,
    choose_encoder,
    codec_name,
    encoder_opens,
    pad_to_even,
    time_base_for,
)
from .ring import PacketRing
from .segments import (
    INDEX_NAME,
    Segment,
    SegmentIndex,
    free_path,
    glob_of,
    index_folder,
    parse_bytes,
    parse_duration,
    render,
    template_fields,
    template_problem,
)

AVAILABLE = av is not None


def writer_problem(path: Path, settings: EncoderSettings) -> str | None:
    """Why a video of ``settings`` cannot be written to a file like ``path`` here, or None: an
    encoder of 64×64 frames is opened and 3 frames are written to a temporary file with ``path``'s
    extension (removed again), then read back. For ``streamcnn validate``."""
    try:
        muxer_for(path)
        encoder = VideoEncoder(64, 64, 25.0, settings)
    except ValueError as exc:
        return str(exc)
    try:
        with tempfile.TemporaryDirectory(prefix="streamcnn-codec-") as tmp:
            probe = Path(tmp) / f"probe{path.suffix.lower()}"
            try:
                out = VideoFile(probe, encoder, fragmented=False)
            except ValueError:
                return (f"a {path.suffix} file cannot hold {codec_name(settings.codec)} video "
                        f"({encoder.encoder}); {_fits(encoder.encoder)}")
            step = int(1 / (25 * encoder.time_base))
            image = np.zeros((64, 64, 3), np.uint8)
            for i in range(3):
                for packet in encoder.encode(image, i * step, step):
                    out.write(packet)
            for packet in encoder.flush():
                out.write(packet)
            out.close()
            if count_frames(probe) != 3:
                return f"a test file of {encoder.encoder} video in {path.suffix} could not be read back"
    except (OSError, av.FFmpegError, ValueError) as exc:
        return f"{encoder.encoder} video cannot be written to {path.suffix} files here: {exc}"
    finally:
        encoder.close()
    return None


def _fits(encoder: str) -> str:
    if encoder in ("libvpx", "libvpx-vp9", "libsvtav1"):
        return "use .webm, .mkv or .mp4"
    if encoder == "mjpeg":
        return "use .avi, .mkv or .mov"
    return "use .mp4 or .mkv (.webm holds only vp8, vp9 and av1)"


__all__ = [
    "AVAILABLE", "CODECS", "CONTAINERS", "INDEX_NAME", "MIN_SIDE", "EncoderSettings", "PacketRing", "Segment",
    "SegmentIndex", "VideoEncoder", "VideoFile", "choose_encoder", "codec_name", "count_frames", "encoder_opens",
    "free_path", "glob_of", "index_folder", "muxer_for", "pad_to_even", "parse_bytes", "parse_duration", "render",
    "template_fields", "template_problem", "time_base_for", "writer_problem",
]
