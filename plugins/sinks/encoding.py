"""What the ``video`` and ``clip`` sinks share: the encoder options, the frame checks (too small,
another size), and each frame's timestamp in the encoder's time base."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from streamcnn import Field, Frame, Params, StreamcnnError, StreamInfo
from streamcnn.recording import MIN_SIDE, EncoderSettings, VideoEncoder


class EncoderParams(Params):
    """Options of every sink that encodes video (see `streamcnn.recording.EncoderSettings`)."""

    codec: str = Field("h264", description="h264, hevc, mpeg4, vp8, vp9, av1, mjpeg, or an FFmpeg encoder name")
    crf: int | None = Field(None, ge=0, le=63, description="constant quality (lower: better, larger); "
                            "default 23 for h264/hevc")
    bitrate: int | None = Field(None, gt=0, description="target bits/s instead of a constant quality")
    preset: str | None = Field(None, description="encoder speed preset (libx264 default: veryfast)")
    gop: float = Field(2.0, gt=0, description="seconds between keyframes")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: the NVIDIA encoder (NVENC) when it opens here, else the CPU one")
    fps: float | None = Field(None, gt=0, description="write at this constant rate, ignoring the frames' pts "
                              "(default: each frame at its own pts, at the source's rate)")

    def settings(self, bframes: bool = True, low_delay: bool = False) -> EncoderSettings:
        return EncoderSettings(self.codec, self.crf, self.bitrate, self.preset, self.gop, self.device, bframes,
                               low_delay)


class FrameEncoder:
    """The encoder of one sink, opened on the first frame, and the clock that stamps each frame.

    Frames are stamped with their own ``pts`` relative to the first frame (so a live camera whose
    frames were dropped plays at real speed, and a file keeps its exact rate); with ``fps`` set,
    frame N is at N/fps instead. A timestamp that rounds onto the previous one is moved one tick on.

    Args:
        sink: the sink type name, for messages (``video``).
        params: the sink's `EncoderParams`.
        bframes: allow B-frames (False for fragmented files: no reordering delay, pts start at 0).
        low_delay: every packet leaves the encoder with its frame (clips).
        log: the sink's logger.
    """

    def __init__(self, sink: str, params: EncoderParams, bframes: bool, log, low_delay: bool = False) -> None:
        self.sink, self.params, self.bframes, self.log, self.low_delay = sink, params, bframes, log, low_delay
        self.encoder: VideoEncoder | None = None
        self.size: tuple[int, int] | None = None
        self.origin = 0.0  # pts (s) of the first frame
        self.last = -1  # ticks of the last frame
        self.count = 0
        self.resized = False
        self.fps = 25.0
        self.step = 1  # ticks per frame at `fps`

    def open(self, stream: StreamInfo | None) -> None:
        self.fps = self.params.fps or (stream.fps if stream else None) or 25.0

    def start(self, frame: Frame, name: str) -> VideoEncoder:
        """Open the encoder for the first frame (its size is the video's); ``name`` is the file,
        for messages. Raises StreamcnnError (too small) or ValueError (the encoder refuses)."""
        h, w = frame.image.shape[:2]
        if min(w, h) < MIN_SIDE:
            raise StreamcnnError(
                f"{self.sink} sink: frame {frame.index} is {w}×{h} pixels, too small to encode as video {name}: "
                f"encoders need at least {MIN_SIDE}×{MIN_SIDE} pixels (and even sizes for some codecs). Make the "
                "frames larger (e.g. a smaller `stride` for edges) or write them with the 'images' sink")
        self.size = (w, h)
        self.origin = frame.pts
        rate = Fraction(self.fps).limit_denominator(1001)
        cfr = Path(name).suffix.lower() == ".avi"  # AVI has no timestamps: one tick per frame
        self.encoder = VideoEncoder(w, h, self.fps, self.params.settings(self.bframes, self.low_delay),
                                    1 / rate if cfr else None)
        self.step = self.encoder.step
        self.tick = float(self.encoder.time_base)
        return self.encoder

    def image(self, frame: Frame) -> np.ndarray:
        """The frame's image at the video's size (another size is resized, with one warning)."""
        image = frame.image
        if (image.shape[1], image.shape[0]) != self.size:
            if not self.resized:
                self.resized = True
                self.log.warning(
                    "%s sink: frame %d is %d×%d, the video is %d×%d: resized (this and any later frames of "
                    "another size)", self.sink, frame.index, image.shape[1], image.shape[0], *self.size)
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        return image

    def ticks(self, frame: Frame) -> tuple[int, int]:
        """(pts, duration) of ``frame`` in the encoder's ticks."""
        if self.params.fps:
            pts = self.count * self.step
        else:
            pts = round((frame.pts - self.origin) / self.tick)
        pts = max(pts, self.last + 1)
        self.last = pts
        self.count += 1
        return pts, self.step

    def encode(self, frame: Frame, stamp: tuple[int, int], keyframe: bool = False) -> list:
        """Encode ``frame`` at ``stamp`` (from `ticks`): the packets that left the encoder."""
        assert self.encoder is not None
        return self.encoder.encode(self.image(frame), stamp[0], stamp[1], keyframe)

    def close(self) -> None:
        """Release the encoder (after the sink has written what `VideoEncoder.flush` returned)."""
        encoder, self.encoder = self.encoder, None
        if encoder is not None:
            encoder.close()

    def seconds(self, ticks: int) -> float:
        """Encoder ticks → the source's pts in seconds."""
        assert self.encoder is not None
        return self.origin + float(ticks * self.encoder.time_base)
