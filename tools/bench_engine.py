"""Engine overhead: the same video through a bare OpenCV + ONNX Runtime loop and through streamcnn.

(a) bare loop: ``cv2.VideoCapture`` → gray → the edges ONNX ``Conv`` graph (ORT) → uint8 → ``VideoWriter``
(b) streamcnn: the Engine running ``file → edges (sobel) → video`` with the same graph and writer.

Prints frames/s of both (median of ``--repeat`` alternating runs) and the ratio (b)/(a).
Target: ≥ 0.97. Usage: ``python tools/bench_engine.py [--video PATH] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import guarded, report, run_engine  # noqa: E402

from streamcnn.registry import resolve_asset  # noqa: E402
from streamcnn_plugins.edges import build_edges_model, kernel_weights, resolve_padding  # noqa: E402


def bare_loop(video: Path, out: Path, frames: int | None = None) -> tuple[int, float]:
    """Read → gray → the edges graph → uint8 → mp4v, for at most ``frames`` frames: (frames, seconds)."""
    weights = kernel_weights("sobel")
    model = build_edges_model(weights, resolve_padding("same", 3), 1, 1, True)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    n = 0
    while frames is None or n < frames:
        ok, img = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        edges = sess.run(None, {"image": gray[None, :, :, None]})[0][0, :, :, 0]
        disp = cv2.cvtColor(cv2.convertScaleAbs(edges), cv2.COLOR_GRAY2BGR)
        if writer is None:
            h, w = disp.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        writer.write(disp)
        n += 1
    cap.release()
    if writer is not None:
        writer.release()
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="vtest.avi", help="video path or registry name (default vtest.avi)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    video = resolve_asset(args.video)
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            n, s = bare_loop(video, Path(tmp) / "bare.mp4")
            bare.append(n / s)
            m, s2 = run_engine(f"""
                pipelines:
                  bench:
                    source: {video}
                    stages: [{{edges: {{kernel: sobel, padding: same, stride: 1}}}}]
                    sinks: [{{video: {{path: {tmp}/streamcnn.mp4, codec: mpeg4}}}}]  # MPEG-4 Part 2 like the loop
                """)
            assert m == n, (m, n)
            ours.append(m / s2)
    print(f"{video.name}: {n} frames, sobel edges → mp4, ORT {ort.__version__} CPU, {args.repeat} runs each")
    report([("bare loop (cv2 + ort)", bare), ("streamcnn run", ours)])
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"  ratio streamcnn / bare loop: {ratio:.3f}  (target ≥ 0.97)")


if __name__ == "__main__":
    guarded(main)
