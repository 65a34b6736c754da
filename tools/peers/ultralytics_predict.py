"""Peer benchmark: Ultralytics' own predictor over a video file, on ONNX Runtime (CPU).

What it measures: frames/s of ``YOLO(model, task="detect").predict(source=video, stream=True, ...)``, i.e. the
path an Ultralytics user takes for a video file: Ultralytics' video loader (OpenCV ``VideoCapture``, every frame,
``vid_stride=1``) → its LetterBox (centred, pad 114) → ONNX Runtime ``InferenceSession`` (CPUExecutionProvider)
→ its torch/torchvision NMS → ``Results``. Timing starts after the model is loaded AND the first frame has been
processed (that frame carries the predictor setup and warm-up); ``seconds`` and ``fps`` cover the remaining
``timed_frames = frames - 1`` frames. ``detections`` is the total number of boxes over all processed frames.

Threads, as Ultralytics sets them (nothing is changed here): importing ultralytics calls ``cv2.setNumThreads(0)``;
``select_device("cpu")`` calls ``torch.set_num_threads(min(8, max(1, os.cpu_count() - 1)))`` (1 on a 2-core box);
the ORT session is created with ``sess_options=None``, i.e. ONNX Runtime's defaults (intra-op = physical cores).
The JSON line reports what was in force after the run.

Standalone: imports only ultralytics, cv2, numpy (via ultralytics), onnxruntime/torch (for versions and thread
reporting) and the stdlib; it must NOT import streamcnn, and its venv must stay separate from streamcnn's.

Venv (as created for this benchmark; the PyTorch CPU index was unreachable, so torch came from PyPI with CUDA
wheels, about 6 GB, unused here)::

    python3 -m venv /work/venv-ultralytics
    /work/venv-ultralytics/bin/pip install --upgrade pip          # pip 26.3
    /work/venv-ultralytics/bin/pip install ultralytics onnxruntime==1.32.0 torch
        # -> ultralytics 8.4.190, torch 2.14.1+cu130, torchvision 0.29.1, onnxruntime 1.32.0, opencv-python 5.1.0.95
    /work/venv-ultralytics/bin/pip install onnx                    # onnx 1.23.2; Ultralytics would
        # otherwise auto-install it (check_requirements("onnx")) on first ONNX load

Usage::

    /work/venv-ultralytics/bin/python tools/peers/ultralytics_predict.py \
        --model /work/shared/models/yolov8n_coco_640_int8.onnx --video /work/shared/media/vtest.avi [--frames N]

Output: ONE JSON line on stdout, e.g.
``{"tool": "ultralytics", "version": "8.4.190", "onnxruntime": "1.32.0", "frames": 795, "timed_frames": 794,
"seconds": 123.4, "fps": 6.43, "detections": 5000, ...}`` (plus torch version, imgsz/conf/iou and thread counts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="ONNX model (Ultralytics export, e.g. yolov8n_coco_640_int8.onnx)")
    ap.add_argument("--video", required=True, help="video file")
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0 = whole file)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--conf", type=float, default=0.25, help="Ultralytics' default")
    ap.add_argument("--iou", type=float, default=0.45, help="Ultralytics' own default is 0.7")
    args = ap.parse_args()

    # Ultralytics logs to stdout: keep the real stdout for the JSON line, send everything else to stderr.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    import cv2
    import onnxruntime
    import torch
    import ultralytics
    from ultralytics import YOLO

    model = YOLO(args.model, task="detect")
    stream = model.predict(source=args.video, stream=True, imgsz=args.imgsz, conf=args.conf, iou=args.iou,
                           device="cpu", verbose=False)
    frames = detections = 0
    t0 = None
    for result in stream:
        frames += 1
        detections += len(result.boxes)
        if t0 is None:
            t0 = time.perf_counter()  # warm-up frame done: start the clock
        if args.frames and frames >= args.frames:
            break
    seconds = time.perf_counter() - t0 if t0 is not None else 0.0
    timed = max(frames - 1, 0)

    intra = None
    sess = getattr(getattr(getattr(model, "predictor", None), "model", None), "backend", None)
    sess = getattr(sess, "session", None)
    if sess is not None:
        intra = sess.get_session_options().intra_op_num_threads  # 0 = ORT default (physical cores)
    sys.stdout.flush()
    print(json.dumps({
        "tool": "ultralytics",
        "version": ultralytics.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "frames": frames,
        "timed_frames": timed,
        "seconds": round(seconds, 3),
        "fps": round(timed / seconds, 3) if seconds > 0 else None,
        "detections": detections,
        "imgsz": args.imgsz, "conf": args.conf, "iou": args.iou,
        "threads": {"cv2": cv2.getNumThreads(), "torch": torch.get_num_threads(), "ort_intra_op": intra},
    }), file=out, flush=True)


if __name__ == "__main__":
    main()
