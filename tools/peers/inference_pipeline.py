"""Peer benchmark: Roboflow Inference's ``InferencePipeline`` over a video file, with our YOLOX-nano work per frame.

What it measures: frames/s of ``InferencePipeline.init_with_custom_logic(video_reference=video,
on_video_frame=fn, on_prediction=sink, max_fps=None, ...)``, where ``fn`` does the same work as the bare
serial loop of ``tools/bench_yolo.py``: letterbox (top-left, pad 114, 416x416) → ``cv2.dnn.blobFromImage`` →
one ``ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run`` → YOLOX decode → per-class NMS
(conf 0.3, IoU 0.45). What differs is Roboflow's plumbing: its video source decodes in its own thread into a
bounded buffer, ``fn`` runs in the inference thread and ``sink`` in a dispatching thread.

Every frame of a file is processed, as fast as possible: ``max_fps=None`` (no pacing; with a max_fps a file
would be slowed, or sub-sampled if ``ENABLE_FRAME_DROP_ON_VIDEO_FILE_RATE_LIMITING`` is set) and, passed
explicitly although they are the file defaults of the installed version, ``BufferFillingStrategy.WAIT``
(the decoder blocks on a full buffer instead of dropping) and ``BufferConsumptionStrategy.LAZY`` (frames
taken one by one, no purge). ``frames`` is the number of frames ``fn`` processed; ``last_frame_id`` is the
source's frame counter of the last one (both must be 795 for vtest.avi).

Timing: the ORT session is created before the pipeline; the clock starts when ``fn`` has finished the first
frame (warm-up) and stops when ``pipeline.join()`` returns. ``seconds``/``fps`` cover the ``frames - 1``
frames after the warm-up frame (the decoder thread may already have buffered a few frames during it);
``seconds_total``/``fps_total`` are from ``pipeline.start()`` (source open included) over all frames.

Decode: ``--decode auto`` (default) uses ``streamcnn.ops`` (letterbox, decode_yolox, select) through
``sys.path`` when it imports in this venv, otherwise the short numpy decode below with
``cv2.dnn.NMSBoxesBatched``; ``--decode inline`` forces the latter. Nothing of streamcnn is installed here.

Threads: nothing is set. ORT session options are defaults (intra-op = physical cores), OpenCV keeps its
default thread count, plus Roboflow's decode / inference / dispatch threads. The JSON line reports them.

Venv (as created for this benchmark; ``inference`` pulls torch with CUDA wheels, about 7 GB, and installs
opencv-python, opencv-contrib-python 4.12 and opencv-python-headless 5.1 over each other: cv2 ends up 4.12)::

    python3 -m venv /work/venv-inference
    /work/venv-inference/bin/pip install --upgrade pip             # pip 26.3
    /work/venv-inference/bin/pip install inference                 # inference 1.8.3 (streamvision 0.1.3,
        # torch 2.14.1, numpy 2.2.6), with onnxruntime 1.21.1 (it pins onnxruntime<1.22)
    /work/venv-inference/bin/pip install onnxruntime==1.32.0       # same ORT as streamcnn's venv; pip warns
        # about inference's pin, InferencePipeline still imports and runs

Usage::

    /work/venv-inference/bin/python tools/peers/inference_pipeline.py \
        --model /work/shared/models/yolox_nano_coco_416.onnx --video /work/shared/media/vtest.avi [--frames N]

Output: ONE JSON line on stdout, e.g.
``{"tool": "roboflow-inference", "version": "1.8.3", "onnxruntime": "1.32.0", "frames": 795, "timed_frames": 794,
"seconds": 30.1, "fps": 26.4, "detections": 6000, ...}`` (plus totals, decode used and thread counts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

CONF, IOU, SIZE = 0.3, 0.45, 416


def inline_decoder():
    """Letterbox + YOLOX decode + NMS in numpy/OpenCV (used when streamcnn.ops does not import)."""
    import cv2
    import numpy as np

    gx, gy, st = [], [], []
    for s in (8, 16, 32):
        n = SIZE // s
        yy, xx = np.mgrid[0:n, 0:n]
        gx.append(xx.ravel()), gy.append(yy.ravel()), st.append(np.full(n * n, s))
    gx, gy, st = (np.concatenate(a).astype(np.float32) for a in (gx, gy, st))

    def prep(img):
        h, w = img.shape[:2]
        r = min(SIZE / h, SIZE / w)
        canvas = np.full((SIZE, SIZE, 3), 114, np.uint8)
        canvas[:round(h * r), :round(w * r)] = cv2.resize(img, (round(w * r), round(h * r)),
                                                          interpolation=cv2.INTER_LINEAR)
        return cv2.dnn.blobFromImage(canvas, 1.0), (r, w, h)

    def post(raw, meta):
        r, w, h = meta
        score_all = raw[:, 4:5] * raw[:, 5:]
        cid = score_all.argmax(1)
        score = score_all[np.arange(len(raw)), cid]
        m = score > CONF
        raw, score, cid = raw[m], score[m], cid[m]
        cx = (raw[:, 0] + gx[m]) * st[m]
        cy = (raw[:, 1] + gy[m]) * st[m]
        bw = np.exp(raw[:, 2]) * st[m]
        bh = np.exp(raw[:, 3]) * st[m]
        x1 = np.clip((cx - bw / 2) / r, 0, w)
        y1 = np.clip((cy - bh / 2) / r, 0, h)
        x2 = np.clip((cx + bw / 2) / r, 0, w)
        y2 = np.clip((cy + bh / 2) / r, 0, h)
        xywh = np.stack([x1, y1, x2 - x1, y2 - y1], 1)
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), score.tolist(), cid.tolist(), CONF, IOU)
        return len(np.asarray(idx).reshape(-1))

    return prep, post


def streamcnn_decoder():
    """The same work through streamcnn.ops (as tools/bench_yolo.py's bare loop), via sys.path only."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import cv2

    from streamcnn.ops import letterbox
    from streamcnn.ops.yolo import decode_yolox, make_grid, select

    grid = make_grid(SIZE, SIZE, [8, 16, 32])

    def prep(img):
        canvas, info = letterbox(img, SIZE, SIZE, "top-left")
        return cv2.dnn.blobFromImage(canvas, 1.0), info

    def post(raw, info):
        cxcywh, obj, cls = decode_yolox(raw, grid)
        return len(select(cxcywh, obj, cls, info, conf=CONF, iou=IOU)[0])

    return prep, post


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="YOLOX-nano 416 ONNX (yolox_nano_coco_416.onnx)")
    ap.add_argument("--video", required=True, help="video file")
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0 = whole file)")
    ap.add_argument("--decode", choices=["auto", "streamcnn", "inline"], default="auto")
    args = ap.parse_args()

    # Inference's imports log and warn on stdout: keep the real stdout for the JSON line only.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    import cv2
    import onnxruntime as ort
    from inference import InferencePipeline
    from inference.core.interfaces.camera.video_source import BufferConsumptionStrategy, BufferFillingStrategy
    from inference.core.version import __version__ as inference_version

    decode = args.decode
    if decode == "inline":
        prep, post = inline_decoder()
    else:
        try:
            prep, post = streamcnn_decoder()
            decode = "streamcnn.ops"
        except ImportError as e:
            if decode == "streamcnn":
                raise
            print(f"streamcnn.ops not importable here ({e}): inline decode", file=sys.stderr)
            prep, post = inline_decoder()
            decode = "inline"
    if decode == "inline":
        decode = "inline numpy + cv2.dnn.NMSBoxesBatched"

    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    state = {"frames": 0, "detections": 0, "sunk": 0, "t_first": None, "last_id": None}
    stop = threading.Event()

    def on_video_frame(video_frames):  # this version hands a list (one per source) and wants a list back
        results = []
        for vf in video_frames:
            if stop.is_set():
                results.append(None)
                continue
            blob, meta = prep(vf.image)
            raw = sess.run(None, {input_name: blob})[0][0]
            n = post(raw, meta)
            state["frames"] += 1
            state["detections"] += n
            state["last_id"] = vf.frame_id
            if state["t_first"] is None:
                state["t_first"] = time.perf_counter()
            if args.frames and state["frames"] >= args.frames:
                stop.set()
            results.append({"detections": n})
        return results

    def sink(prediction, video_frame):
        if prediction is not None:
            state["sunk"] += 1

    pipeline = InferencePipeline.init_with_custom_logic(
        video_reference=args.video,
        on_video_frame=on_video_frame,
        on_prediction=sink,
        max_fps=None,
        source_buffer_filling_strategy=BufferFillingStrategy.WAIT,
        source_buffer_consumption_strategy=BufferConsumptionStrategy.LAZY,
    )
    t_start = time.perf_counter()
    pipeline.start(use_main_thread=False)
    if args.frames:
        stop.wait()
        pipeline.terminate()
    pipeline.join()
    t_end = time.perf_counter()

    frames = state["frames"]
    seconds = t_end - state["t_first"] if state["t_first"] is not None else 0.0
    total = t_end - t_start
    sys.stdout.flush()
    print(json.dumps({
        "tool": "roboflow-inference",
        "version": inference_version,
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "frames": frames,
        "timed_frames": max(frames - 1, 0),
        "seconds": round(seconds, 3),
        "fps": round((frames - 1) / seconds, 3) if seconds > 0 else None,
        "seconds_total": round(total, 3),
        "fps_total": round(frames / total, 3) if total > 0 else None,
        "detections": state["detections"],
        "sink_calls": state["sunk"],
        "last_frame_id": state["last_id"],
        "decode": decode,
        "conf": CONF, "iou": IOU,
        "threads": {"cv2": cv2.getNumThreads(), "ort_intra_op": sess.get_session_options().intra_op_num_threads,
                    "python_threads_at_end": threading.active_count()},
    }), file=out, flush=True)


if __name__ == "__main__":
    main()
