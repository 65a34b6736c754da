"""`VideoEncoder`: BGR frames in, compressed packets out, through PyAV (FFmpeg's libavcodec).

One encoder feeds any number of files (`streamcnn.recording.VideoFile`): segments of a recording
and event clips are cut from its packets at keyframes, never re-encoded. The encoder is the output
stream of an FFmpeg ``null`` muxer, so that its codec parameters (including the global header,
the H.264 SPS/PPS) can serve as the template of each file's stream.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np

try:
    import av
    from av.codec.context import Flags as _CodecFlags
    from av.video.frame import PictureType as _PictureType
except ImportError:  # pragma: no cover - av is a base dependency; the sinks fall back to OpenCV
    av = None

#: user-facing codec names → FFmpeg encoders, CPU first, then the NVIDIA (NVENC) one when there is one
CODECS: dict[str, tuple[str, str | None]] = {
    "h264": ("libx264", "h264_nvenc"),
    "hevc": ("libx265", "hevc_nvenc"),
    "mpeg4": ("mpeg4", None),
    "vp8": ("libvpx", None),
    "vp9": ("libvpx-vp9", None),
    "av1": ("libsvtav1", "av1_nvenc"),
    "mjpeg": ("mjpeg", None),
}
CODEC_ALIASES = {"h.264": "h264", "h.265": "hevc", "h265": "hevc", "avc": "h264", "x264": "h264", "x265": "hevc",
                 "mjpg": "mjpeg"}
#: the MPEG clock (ISO/IEC 13818-1: 90 kHz): exact for every integer frame rate that divides 90000
MPEG_CLOCK = 90000
MIN_SIDE = 2  # pixels: FFmpeg encoders refuse 1-pixel-wide or -high frames

log = logging.getLogger("streamcnn.recording")


@dataclass(frozen=True)
class EncoderSettings:
    """How to encode a video.

    Attributes:
        codec: ``h264`` (default), ``hevc``, ``mpeg4``, ``vp8``, ``vp9``, ``av1``, ``mjpeg``, or an
            FFmpeg encoder name (``libx264``, ``h264_nvenc`` ...).
        crf: constant rate factor (quality; lower is better, 23 is libx264's default). Ignored when
            ``bitrate`` is given.
        bitrate: target bits/s instead of a constant quality, e.g. 4_000_000.
        preset: the encoder's speed/size trade-off (libx264: ``ultrafast`` … ``veryslow``);
            default ``veryfast`` for x264/x265 (real time at 1080p on two cores, see
            tools/bench_recording.py), ``p4`` for NVENC.
        gop: seconds between keyframes (segments and clips are cut at keyframes).
        device: ``cpu``, ``cuda`` (NVENC, an error when it cannot be opened) or ``auto`` (NVENC when
            it can be opened here, else the CPU encoder; the log says which).
        bframes: allow B-frames (better compression, frames leave the encoder later); fragmented
            files turn them off so every frame is on disk at the next fragment.
        low_delay: each frame's packet leaves the encoder with it (x264 ``tune=zerolatency``: no
            lookahead, sliced threads), for clips cut at exact moments.
    """

    codec: str = "h264"
    crf: int | None = None
    bitrate: int | None = None
    preset: str | None = None
    gop: float = 2.0
    device: str = "auto"
    bframes: bool = True
    low_delay: bool = False


def codec_name(codec: str) -> str:
    """The canonical user-facing name of ``codec`` (``H.264`` → ``h264``; FFmpeg encoder names kept)."""
    key = codec.strip().lower()
    return CODEC_ALIASES.get(key, key)


def available_encoders() -> set[str]:
    """FFmpeg encoder names this PyAV has (empty without PyAV)."""
    return set(av.codecs_available) if av is not None else set()


@cache
def encoder_opens(encoder: str) -> str | None:
    """Why ``encoder`` cannot be opened here (no NVIDIA driver for NVENC ...), or None when a 64×64
    yuv420p encoder opens. Cached per process: opening NVENC without a GPU fails in under 1 ms."""
    if av is None:
        return "PyAV is not installed"
    if encoder not in av.codecs_available:
        return f"this PyAV's FFmpeg has no {encoder} encoder"
    try:
        ctx = av.codec.CodecContext.create(encoder, "w")
        ctx.width, ctx.height, ctx.time_base = 64, 64, Fraction(1, 25)
        ctx.pix_fmt = _pixel_format(encoder)
        ctx.open()
    except (av.FFmpegError, ValueError) as exc:
        return str(exc)
    return None


def choose_encoder(settings: EncoderSettings) -> str:
    """The FFmpeg encoder for ``settings``: its ``codec`` mapped through `CODECS` and ``device``.

    Raises:
        ValueError: an unknown codec (with the names that work), ``device: cuda`` where NVENC cannot
            be opened, or a CPU encoder this PyAV build lacks.
    """
    name = codec_name(settings.codec)
    if name not in CODECS:
        if name in available_encoders():
            return name
        from ..words import suggest

        raise ValueError(f"unknown codec {settings.codec!r}{suggest(name, list(CODECS))}; the codecs are "
                         f"{', '.join(CODECS)} (or an FFmpeg encoder name such as libx264 or h264_nvenc)")
    cpu, gpu = CODECS[name]
    if settings.device in ("cuda", "gpu"):
        if gpu is None:
            raise ValueError(f"codec {name} has no GPU (NVENC) encoder; use device: cpu")
        why = encoder_opens(gpu)
        if why:
            raise ValueError(f"device: cuda asks for the NVIDIA encoder {gpu}, which cannot be opened here "
                             f"({why}); use device: auto to fall back to {cpu}")
        return gpu
    if settings.device == "auto" and gpu is not None and encoder_opens(gpu) is None:
        return gpu
    if cpu not in available_encoders():
        raise ValueError(f"this PyAV's FFmpeg has no {cpu} encoder for codec {name}")
    return cpu


def _pixel_format(encoder: str) -> str:
    """The encoder's first 4:2:0 format (what every player decodes: libx264 yuv420p, mjpeg
    yuvj420p), else its first format."""
    formats = [f.name for f in av.codec.Codec(encoder, "w").video_formats or ()]
    if not formats:
        return "yuv420p"
    return next((f for f in formats if f in ("yuv420p", "yuvj420p", "nv12")), formats[0])


def time_base_for(fps: float | None, encoder: str = "libx264") -> Fraction:
    """The time base of written timestamps: 1/90000 s (the MPEG clock) when one frame at ``fps`` is
    a whole number of its ticks (every integer rate that divides 90000: 1–60 fps but 7, 11 ...),
    else 1/(1000·fps) as a fraction (24000/1001 → 1001/24000000 s), so that frame-exact sources
    keep frame-exact timestamps. MPEG-4 Part 2 (``mpeg4``) allows no denominator above 65535
    (ISO/IEC 14496-2 vop_time_increment_resolution, 16 bits): 1/1000 s, or 1/fps off that grid.
    """
    rate = Fraction(fps).limit_denominator(1001) if fps else None
    if encoder == "mpeg4":
        if rate is None or (1000 / rate).denominator == 1:
            return Fraction(1, 1000)
        return 1 / rate if rate.numerator <= 65535 else Fraction(1, 1000)
    if rate is None or (MPEG_CLOCK / rate).denominator == 1:
        return Fraction(1, MPEG_CLOCK)
    return Fraction(rate.denominator, rate.numerator * 1000)


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with one black column on the right and/or row at the bottom when W
    or H is odd (yuv420p needs even sizes); returned unchanged (not copied) when both are even."""
    h, w = image.shape[:2]
    if not (h % 2 or w % 2):
        return image
    out = np.zeros((h + h % 2, w + w % 2, 3), np.uint8)
    out[:h, :w] = image
    return out


class VideoEncoder:
    """Encodes BGR frames of one size into packets of one codec.

    Args:
        width, height: frame size in pixels (each at least 2); odd sizes are padded to even with
            black on the right/bottom (`pad_to_even`) for the yuv420p formats.
        fps: nominal frames/s (the stream's rate; keyframe spacing and the time base).
        settings: `EncoderSettings`.
        time_base: seconds per tick instead of `time_base_for` (1/fps for constant-rate AVI).

    Attributes:
        encoder: the FFmpeg encoder in use (``libx264``, ``h264_nvenc`` ...).
        time_base: `fractions.Fraction` seconds per timestamp tick of the packets.
        step: ticks per frame at ``fps``.
        width, height: the encoded (padded) size.
        stream: the PyAV stream whose parameters are the template of each file's stream.

    Raises:
        ValueError: see `choose_encoder`; or the encoder refuses these options (FFmpeg's message).
    """

    def __init__(self, width: int, height: int, fps: float, settings: EncoderSettings,
                 time_base: Fraction | None = None) -> None:
        if av is None:  # pragma: no cover
            raise ValueError("PyAV is not installed: pip install av")
        self.settings = settings
        self.encoder = choose_encoder(settings)
        self.source_size = (width, height)
        self.pix_fmt = _pixel_format(self.encoder)
        even = self.pix_fmt.startswith(("yuv420", "yuvj420", "nv12"))
        self.width, self.height = (width + width % 2, height + height % 2) if even else (width, height)
        self.fps = fps
        self.time_base = time_base or time_base_for(fps, self.encoder)
        self.step = max(1, round(1 / (fps * self.time_base)))  # ticks per frame at `fps`
        self._host = av.open(os.devnull, "w", format="null")
        try:
            self.stream = self._host.add_stream(self.encoder, rate=Fraction(fps).limit_denominator(1001))
            ctx = self.stream.codec_context
            ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, self.pix_fmt
            self.stream.time_base = ctx.time_base = self.time_base
            ctx.gop_size = max(1, round(settings.gop * fps))
            ctx.flags |= _CodecFlags.global_header  # SPS/PPS in the stream parameters (mp4 avcC)
            options = self._options()
            if settings.bitrate:
                ctx.bit_rate = int(settings.bitrate)
            ctx.options = options
            self._host.start_encoding()
        except (av.FFmpegError, ValueError) as exc:
            self._host.close()
            raise ValueError(f"the {self.encoder} encoder cannot be opened with these options "
                             f"({self.width}x{self.height} @ {fps:g} fps): {exc}") from None
        self.frames = 0

    def _options(self) -> dict[str, str]:
        """The encoder's private options (preset, quality, B-frames, forced keyframes are IDR)."""
        s, enc, opts = self.settings, self.encoder, {}
        if enc in ("libx264", "libx265"):
            opts["preset"] = s.preset or "veryfast"
            if not s.bitrate:
                opts["crf"] = str(23 if s.crf is None else s.crf)
            if enc == "libx264":
                opts["forced-idr"] = "1"
                if s.low_delay:
                    opts["tune"] = "zerolatency"
                if not s.bframes:
                    opts["bf"] = "0"
            else:
                opts["x265-params"] = "log-level=error" + ("" if s.bframes else ":bframes=0")
        elif enc.endswith("_nvenc"):
            opts["preset"] = s.preset or "p4"
            opts["forced-idr"] = "1"
            if s.low_delay:
                opts["zerolatency"], opts["delay"] = "1", "0"
            if not s.bitrate:
                opts["rc"], opts["cq"] = "vbr", str(23 if s.crf is None else s.crf)
            if not s.bframes:
                opts["bf"] = "0"
        elif enc in ("libvpx", "libvpx-vp9"):
            opts["deadline"] = s.preset or "realtime"
            opts["cpu-used"] = "8"
            if not s.bitrate:
                opts["crf"], opts["b"] = str(32 if s.crf is None else s.crf), "0"
        elif enc == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only: SVT-AV1 prints its banner otherwise
            opts["preset"] = s.preset or "10"
            if not s.bitrate:
                opts["crf"] = str(35 if s.crf is None else s.crf)
        elif enc in ("mpeg4", "mjpeg"):
            if not s.bitrate:  # a fixed quantiser 2-31 (lower is better, like ffmpeg -q:v); crf is mapped onto it
                q = str(max(2, min(31, 4 if s.crf is None else s.crf)))
                opts["qmin"] = opts["qmax"] = q
            if not s.bframes:
                opts["bf"] = "0"
        return opts

    def encode(self, image: np.ndarray, pts: int, duration: int, keyframe: bool = False) -> list[av.Packet]:
        """Encode one frame.

        Args:
            image: (H, W, 3) uint8 BGR, of the size given at construction.
            pts: presentation time in ``time_base`` ticks (strictly increasing).
            duration: the frame's display time in ticks (written to mp4/mkv as its duration).
            keyframe: force this frame to be a keyframe (IDR), e.g. the first of a new segment.

        Returns:
            The packets that left the encoder (0 or more: encoders delay frames), each with ``pts``,
            ``dts``, ``duration`` in ``time_base`` and ``is_keyframe``.
        """
        if self.width != image.shape[1] or self.height != image.shape[0]:
            image = pad_to_even(image)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts, frame.time_base, frame.duration = pts, self.time_base, duration
        if keyframe:
            frame.pict_type = _PictureType.I
        self.frames += 1
        return self._own(self.stream.encode(frame))

    def flush(self) -> list[av.Packet]:
        """The packets still held by the encoder (after the last frame); the encoder is then done."""
        return self._own(self.stream.encode(None))

    def _own(self, packets: list[av.Packet]) -> list[av.Packet]:
        for p in packets:
            p.time_base = self.time_base
            if not p.duration:  # some encoders do not pass the frame's duration on
                p.duration = self.step
        return packets

    def close(self) -> None:
        """Release the encoder (packets not yet flushed are dropped)."""
        try:
            self._host.close()
        except av.FFmpegError:  # pragma: no cover - the null muxer has nothing to lose
            pass
