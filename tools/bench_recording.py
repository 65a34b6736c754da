"""Recording costs, side by side in one run (issue 11): libx264 through PyAV (the ``video`` sink's
default: preset veryfast, CRF 23) against OpenCV's ``mp4v`` writer (the sink before PyAV).

    python tools/bench_recording.py [--frames 120] [--media ../shared/media/vtest.avi]

Prints, for 768×576 (vtest.avi's own size) and 1080p (the same frames scaled up):
- encoding cost per frame (ms; the whole write path: BGR → yuv420p → encoder → muxer → file),
- file size per minute of vtest.avi (all 795 frames at 10 fps, scaled to 60 s),
- the `PacketRing` memory of the ``clip`` sink for 10 s of 1080p25 against the same frames raw.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from streamcnn import recording as rec


def _frames(path: Path, limit: int | None, size: tuple[int, int] | None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while limit is None or len(out) < limit:
        ok, img = cap.read()
        if not ok:
            break
        out.append(cv2.resize(img, size, interpolation=cv2.INTER_LINEAR) if size else img)
    cap.release()
    return out


def pyav_write(frames: list[np.ndarray], fps: float, out: Path, preset: str = "veryfast") -> float:
    """Seconds to write ``frames`` as H.264 (libx264) mp4 with the recording module."""
    h, w = frames[0].shape[:2]
    t0 = time.perf_counter()
    enc = rec.VideoEncoder(w, h, fps, rec.EncoderSettings(preset=preset, device="cpu"))
    f = rec.VideoFile(out, enc, fragmented=False)
    step = round(1 / (fps * enc.time_base))
    for i, img in enumerate(frames):
        for p in enc.encode(img, i * step, step):
            f.write(p)
    for p in enc.flush():
        f.write(p)
    f.close()
    enc.close()
    return time.perf_counter() - t0


def cv2_write(frames: list[np.ndarray], fps: float, out: Path) -> float:
    """Seconds to write ``frames`` with OpenCV's mp4v VideoWriter."""
    h, w = frames[0].shape[:2]
    t0 = time.perf_counter()
    writer = cv2.VideoWriter(str(out), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    for img in frames:
        writer.write(img)
    writer.release()
    return time.perf_counter() - t0


def ring_bytes(frames: list[np.ndarray], fps: float, seconds: float) -> tuple[int, float]:
    """(peak ring bytes, seconds held) for the clip sink's encoder over ``frames`` (repeated as needed)."""
    h, w = frames[0].shape[:2]
    enc = rec.VideoEncoder(w, h, fps, rec.EncoderSettings(gop=1.0, bframes=False, low_delay=True, device="cpu"))
    ring = rec.PacketRing(seconds + 1.0, enc.time_base)
    step = round(1 / (fps * enc.time_base))
    peak = 0
    n = int((seconds + 3) * fps)
    for i in range(n):
        for p in enc.encode(frames[i % len(frames)], i * step, step):
            ring.push(p)
        peak = max(peak, ring.bytes)
    held = float((ring.packets[-1].pts - ring.packets[0].pts) * enc.time_base)
    enc.close()
    return peak, held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("STREAMCNN_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--media", type=Path, default=default / "media" / "vtest.avi")
    ap.add_argument("--frames", type=int, default=120, help="frames per timing run")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, PyAV encoder libx264 preset veryfast crf 23 vs OpenCV mp4v")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print("\n| frames | libx264 ms/frame | mp4v ms/frame | ratio (x264/mp4v) |\n|---|---|---|---|")
        for size in (None, (1920, 1080)):
            frames = _frames(args.media, args.frames, size)
            h, w = frames[0].shape[:2]
            cv2_write(frames[:10], 10, out / "warm.mp4")
            a = pyav_write(frames, 10, out / "a.mp4") / len(frames) * 1e3
            b = cv2_write(frames, 10, out / "b.mp4") / len(frames) * 1e3
            print(f"| {w}×{h} | {a:.1f} | {b:.1f} | **{a / b:.2f}** |")
        allf = _frames(args.media, None, None)
        duration = len(allf) / 10.0
        pyav_write(allf, 10, out / "all.mp4")
        cv2_write(allf, 10, out / "all_cv.mp4")
        x264 = (out / "all.mp4").stat().st_size * 60 / duration / 1e6
        mp4v = (out / "all_cv.mp4").stat().st_size * 60 / duration / 1e6
        print(f"\nfile size per minute of {args.media.name} ({len(allf)} frames, {duration:g} s): "
              f"libx264 {x264:.2f} MB, mp4v {mp4v:.2f} MB, ratio **{x264 / mp4v:.2f}**")
        big = _frames(args.media, 100, (1920, 1080))
        peak, held = ring_bytes(big, 25.0, 10.0)
        raw = 10 * 25 * 1920 * 1080 * 3
        print(f"clip ring for 10 s of 1080p25 (pre_roll 10 s + gop 1 s, as the clip sink sizes it; held {held:.1f} s): "
              f"{peak / 1e6:.1f} MB of packets vs {raw / 1e9:.2f} GB raw (**{raw / peak:.0f}×** less)")


if __name__ == "__main__":
    main()
