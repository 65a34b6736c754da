"""YOLO post-processing and end-to-end speed.

1. Decode + NMS (``streamcnn.ops``) of one real YOLOX-nano output (3549×85, vtest frame 100) and
   of a synthetic 8400×85 YOLOX head (640 input): median time in ms (target ≤ 1 ms), side by side
   with the same decode followed by ``cv2.dnn.NMSBoxesBatched`` on the same boxes.
2. End to end on vtest.avi: streamcnn (Engine: file → yolo → null sink) vs a bare loop
   (read → letterbox → ``ort.run`` → decode → NMS) with the same model: frames/s and ratio
   (target ≥ 0.97).

Usage: ``python tools/bench_yolo.py [--repeat 3] [--iters 300]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import guarded, median_ms, report, run_engine  # noqa: E402

from streamcnn.ops import letterbox, letterbox_info  # noqa: E402
from streamcnn.ops.yolo import cxcywh_to_xyxy, decode_yolox, make_grid, select  # noqa: E402
from streamcnn.registry import resolve_asset  # noqa: E402


def postprocess_bench(raw: np.ndarray, size: int, frame_wh: tuple[int, int], iters: int) -> None:
    grid = make_grid(size, size, [8, 16, 32])
    info = letterbox_info(frame_wh[0], frame_wh[1], size, size, "top-left")

    def ours():
        cxcywh, obj, cls = decode_yolox(raw, grid)
        return select(cxcywh, obj, cls, info, conf=0.3, iou=0.45)

    def with_opencv_nms():
        cxcywh, obj, cls = decode_yolox(raw, grid)
        keep = obj > 0.3
        cxcywh, obj, cls = cxcywh[keep], obj[keep], cls[keep]
        cid = cls.argmax(1)
        score = obj * cls[np.arange(len(cls)), cid]
        m = score > 0.3
        xyxy = info.boxes_to_frame(cxcywh_to_xyxy(cxcywh[m]))
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), score[m].tolist(), cid[m].tolist(), 0.3, 0.45)
        return np.asarray(idx).reshape(-1)

    kept = ours()
    ref = with_opencv_nms()
    cand = int(((raw[:, 4] * raw[:, 5:].max(1)) > 0.3).sum())
    print(f"  {raw.shape[0]}×{raw.shape[1]} head, {cand} candidates above 0.3, {len(kept[0])} kept "
          f"(OpenCV keeps {len(ref)})")
    print(f"    streamcnn decode + nms:             {median_ms(ours, iters):.3f} ms (target ≤ 1 ms)")
    print(f"    same decode + cv2 NMSBoxesBatched:  {median_ms(with_opencv_nms, iters):.3f} ms")


def synthetic_head(rng: np.random.Generator, rows: int = 8400, classes: int = 80) -> np.ndarray:
    """A YOLOX-like head: small offsets, log-sizes, mostly-low obj, a few dozen confident clusters."""
    raw = np.empty((rows, 5 + classes), np.float32)
    raw[:, :2] = rng.uniform(-0.5, 1.5, (rows, 2))
    raw[:, 2:4] = rng.normal(0.5, 0.8, (rows, 2))
    raw[:, 4] = rng.beta(0.3, 6.0, rows)
    raw[:, 5:] = rng.beta(0.3, 8.0, (rows, classes))
    hot = rng.choice(rows, 150, replace=False)
    raw[hot, 4] = rng.uniform(0.5, 0.95, len(hot))
    raw[hot, 5 + rng.integers(0, classes, len(hot))] = rng.uniform(0.6, 0.99, len(hot))
    return raw


def bare_loop(video: Path, model: Path) -> tuple[int, float]:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    grid = make_grid(416, 416, [8, 16, 32])
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        canvas, info = letterbox(img, 416, 416, "top-left")
        blob = cv2.dnn.blobFromImage(canvas, 1.0)
        raw = sess.run(None, {"images": blob})[0][0]
        cxcywh, obj, cls = decode_yolox(raw, grid)
        select(cxcywh, obj, cls, info, conf=0.3, iou=0.45)
        n += 1
    cap.release()
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--iters", type=int, default=300)
    args = ap.parse_args()
    model = resolve_asset("yolox_nano_coco_416")
    video = resolve_asset("vtest.avi")

    print("1. decode + NMS")
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    img = cap.read()[1]
    canvas, _ = letterbox(img, 416, 416, "top-left")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    real = sess.run(None, {"images": cv2.dnn.blobFromImage(canvas, 1.0)})[0][0]
    postprocess_bench(real, 416, (img.shape[1], img.shape[0]), args.iters)
    postprocess_bench(synthetic_head(np.random.default_rng(0)), 640, (640, 640), args.iters)

    print("2. end to end on vtest.avi, YOLOX-nano, CPU")
    bare, ours = [], []
    for _ in range(args.repeat):
        n, s = bare_loop(video, model)
        bare.append(n / s)
        m, s2 = run_engine(f"""
            pipelines:
              bench:
                source: {video}
                stages: [{{yolo: {{model: {model}, conf: 0.3, iou: 0.45}}}}]
                sinks: [null]
            """)
        assert m == n
        ours.append(m / s2)
    report([("bare loop (read → letterbox → ort → decode → nms)", bare), ("streamcnn run", ours)])
    print(f"  ratio streamcnn / bare loop: {statistics.median(ours) / statistics.median(bare):.3f} (target ≥ 0.97)")


if __name__ == "__main__":
    guarded(main)
