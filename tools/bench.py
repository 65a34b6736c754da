"""One command, one table: streamcnn side by side with what a user would write or pick instead.

Every row runs its variants in this one process, interleaved (variant A, B, C, A, B, C, ...), and
reports the median of ``--repeat`` runs (≥ 5 by default) and the ratio to the row's reference, on
the real models and media in ``STREAMCNN_ASSETS``:

1. engine overhead: Sobel edges on vtest.avi → mp4, streamcnn vs the bare loop;
2. detection end to end: YOLOX-nano + boxes drawn + mp4 on vtest.avi, streamcnn vs the bare serial
   loop (read → letterbox → ``ort.run`` → decode → NMS → draw → write, the same functions) vs the
   same loop on OpenCV DNN (``cv2.dnn.readNet`` on the same ONNX); YOLOv8n
   (``yolov8n_coco_640_int8.onnx``) streamcnn vs Ultralytics' own predictor on that file, when
   ``--ultralytics-python`` names a Python that has ``ultralytics`` (a separate venv; see
   ``tools/peers/ultralytics_predict.py``);
3. the engine vs Roboflow Inference's ``InferencePipeline`` running the same ONNX model and decode,
   when ``--inference-python`` names a Python that has ``inference`` (``tools/peers/inference_pipeline.py``);
4. post-processing: decode + NMS of a YOLOX 8400×85 head, ours vs the same decode +
   ``cv2.dnn.NMSBoxesBatched``;
5. faces: detect → landmarks → recognise on Megamind.avi, streamcnn vs the bare loop;
6. 1/2/4/8 file pipelines of YOLOX-nano in one process: aggregate and per-pipeline frames/s at the
   thread budget (`streamcnn.budget`), at ONNX Runtime's defaults (one frame in flight, ORT's
   thread pool) and with batching across pipelines (a dynamic-batch copy of the model,
   ``streamcnn.batchaxis``);
7. RSS over a long soak (``--soak`` frames of the test pattern through YOLOX-nano), and the frame
   age at the sink under ``policy: latest`` with a slow stage on a real-time source.

It prints a Markdown table and writes it, with the machine, the versions and the date, to
``BENCHMARKS.md`` (``--out``). ``--smoke`` runs every row on a few frames (the test suite does, to
keep the tool working; its figures mean nothing).

Usage: ``python tools/bench.py [--repeat 5] [--frames 400] [--rows 1,2,4] [--ultralytics-python
/work/venv-ultralytics/bin/python] [--inference-python /work/venv-inference/bin/python]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import guarded  # noqa: E402

import streamcnn  # noqa: E402
from streamcnn.budget import available_cores  # noqa: E402
from streamcnn.config import load_config  # noqa: E402
from streamcnn.engine import Engine  # noqa: E402
from streamcnn.ops import letterbox  # noqa: E402
from streamcnn.ops.yolo import decode_yolox, make_grid, select  # noqa: E402
from streamcnn.registry import resolve_asset  # noqa: E402

HERE = Path(__file__).resolve().parent
CV2_THREADS = cv2.getNumThreads()  # OpenCV's default here, restored before every reference loop


@dataclass
class Row:
    """One line of the table: a name, the variants' per-run frames/s (or ms), the reference."""

    section: str
    name: str
    unit: str = "frames/s"
    runs: list[float] = field(default_factory=list)
    ref: str | None = None  # the row of the same section its ratio is against
    note: str = ""
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")


# -- helpers ------------------------------------------------------------------------------------
def engine_run(yaml_text: str, tmp: Path, frames: int | None) -> tuple[list, float]:
    """Run a pipelines YAML through the real Engine, each pipeline stopped after ``frames`` frames:
    (per-pipeline `PipelineStats`, wall seconds from start to the last sink closed)."""
    cfg = tmp / "bench.yaml"
    cfg.write_text(textwrap.dedent(yaml_text))
    config = load_config(cfg)
    engine = Engine(config, max_frames=frames)
    t0 = time.perf_counter()
    stats = engine.run()
    seconds = time.perf_counter() - t0
    for st in stats:
        if st.error:
            raise SystemExit(f"pipeline failed: {st.error}")
    return stats, seconds


def reference_threads() -> None:
    """The settings a hand-written loop runs with: OpenCV's default threads, ORT's defaults."""
    cv2.setNumThreads(CV2_THREADS)


def draw(img: np.ndarray, xyxy: np.ndarray, conf: np.ndarray, class_id: np.ndarray, names: list[str]) -> None:
    """What a hand-written loop draws: a box and a label per detection."""
    for (x1, y1, x2, y2), c, k in zip(xyxy.astype(int), conf, class_id, strict=True):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2)
        cv2.putText(img, f"{names[k]} {c:.2f}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 255, 0), 1, cv2.LINE_AA)


def coco_names() -> list[str]:
    from streamcnn_plugins.yolo import coco80

    return coco80()


def yolox_loop(video: Path, model: Path, out: Path, frames: int, backend: str) -> tuple[int, float]:
    """The bare serial loop: read → letterbox → inference → decode → NMS → draw → write (mp4v)."""
    reference_threads()
    names = coco_names()
    grid = make_grid(416, 416, [8, 16, 32])
    if backend == "ort":
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

        def infer(blob):
            return sess.run(None, {"images": blob})[0][0]
    else:
        net = cv2.dnn.readNet(str(model))

        def infer(blob):
            net.setInput(blob)
            return net.forward()[0]
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    n = 0
    while n < frames:
        ok, img = cap.read()
        if not ok:
            break
        canvas, info = letterbox(img, 416, 416, "top-left")
        raw = infer(cv2.dnn.blobFromImage(canvas, 1.0))
        cxcywh, obj, cls = decode_yolox(raw, grid)
        xyxy, conf, cid = select(cxcywh, obj, cls, info, conf=0.3, iou=0.45)
        draw(img, xyxy, conf, cid, names)
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*"mp4v"), fps,
                                     (img.shape[1], img.shape[0]))
        writer.write(img)
        n += 1
    cap.release()
    if writer is not None:
        writer.release()
    return n, time.perf_counter() - t0


def peer(python: str, script: str, args: list[str]) -> dict:
    """Run a peer tool's script under its own venv's Python; its one JSON line."""
    proc = subprocess.run([python, str(HERE / "peers" / script), *args], capture_output=True, text=True,
                          timeout=3600, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{script} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return json.loads(lines[-1])


def interleave(repeat: int, variants: list[tuple[Row, Callable[[], float]]]) -> None:
    """Run each variant once per round, ``repeat`` rounds, appending to its row's runs."""
    for _ in range(repeat):
        for row, fn in variants:
            row.runs.append(fn())


def _fps(result: tuple[int, float]) -> float:
    return result[0] / result[1]


# -- rows ---------------------------------------------------------------------------------------
def row_engine(a, tmp: Path) -> list[Row]:
    video = resolve_asset("vtest.avi")
    sec = "1. engine overhead (vtest.avi, Sobel edges → mp4)"
    bare = Row(sec, "bare loop: read → gray → ort → uint8 → write")
    ours = Row(sec, "streamcnn: edges → video sink", ref=bare.name)
    yaml_text = f"""
        pipelines:
          bench:
            source: {video}
            stages: [{{edges: {{kernel: sobel, padding: same, stride: 1}}}}]
            sinks: [{{video: {{path: {tmp}/edges.mp4, codec: mpeg4}}}}]  # MPEG-4 Part 2 like the loop
        """
    from bench_engine import bare_loop as edges_loop

    def bare_edges() -> float:
        reference_threads()
        return _fps(edges_loop(video, tmp / "bare_edges.mp4", a.frames))

    interleave(a.repeat, [(bare, bare_edges),
                          (ours, lambda: _fps_stats(engine_run(yaml_text, tmp, a.frames)))])
    return [bare, ours]


def row_detection(a, tmp: Path) -> list[Row]:
    video = resolve_asset("vtest.avi")
    yolox = resolve_asset("yolox_nano_coco_416")
    sec = "2. detection end to end (vtest.avi)"
    bare = Row(sec, "YOLOX-nano bare serial loop: read → letterbox → ort → decode → NMS → draw → mp4")
    dnn = Row(sec, "YOLOX-nano same loop on OpenCV DNN (cv2.dnn.readNet)", ref=bare.name)
    ours = Row(sec, "YOLOX-nano streamcnn: yolo → annotate → video sink", ref=bare.name)
    yaml_text = f"""
        pipelines:
          bench:
            source: {video}
            stages: [{{yolo: {{model: {yolox}, conf: 0.3, iou: 0.45}}}}, annotate]
            sinks: [{{video: {{path: {tmp}/yolox.mp4, codec: mpeg4}}}}]  # MPEG-4 Part 2 like the loop
        """
    variants = [(bare, lambda: _fps(yolox_loop(video, yolox, tmp / "bare.mp4", a.frames, "ort"))),
                (dnn, lambda: _fps(yolox_loop(video, yolox, tmp / "dnn.mp4", a.frames, "dnn"))),
                (ours, lambda: _fps_stats(engine_run(yaml_text, tmp, a.frames)))]
    rows = [bare, dnn, ours]
    v8 = resolve_asset("yolov8n_coco_640_int8")
    v8_yaml = f"""
        pipelines:
          bench:
            source: {video}
            stages: [{{yolo: {{model: {v8}, conf: 0.25, iou: 0.45}}}}]
            sinks: [null]
        """
    if a.ultralytics_python:
        ultra = Row(sec, "YOLOv8n int8 Ultralytics predictor (its own pre/post-processing)")
        v8_ours = Row(sec, "YOLOv8n int8 streamcnn: yolo → null sink", ref=ultra.name)
        args = ["--model", str(v8), "--video", str(video), "--frames", str(a.frames)]

        def run_ultra() -> float:
            out = peer(a.ultralytics_python, "ultralytics_predict.py", args)
            ultra.note = f"ultralytics {out.get('version')}, onnxruntime {out.get('onnxruntime')}"
            return float(out["fps"])
        variants += [(ultra, run_ultra), (v8_ours, lambda: _fps_stats(engine_run(v8_yaml, tmp, a.frames)))]
        rows += [ultra, v8_ours]
    interleave(a.repeat, variants)
    return rows


def row_inference(a, tmp: Path) -> list[Row]:
    if not a.inference_python:
        return []
    video = resolve_asset("vtest.avi")
    yolox = resolve_asset("yolox_nano_coco_416")
    sec = "3. pipeline engine vs Roboflow Inference (vtest.avi, YOLOX-nano, same ONNX + decode)"
    rf = Row(sec, "Roboflow InferencePipeline (custom logic: letterbox → ort → decode → NMS)")
    ours = Row(sec, "streamcnn: yolo → null sink", ref=rf.name)
    yaml_text = f"""
        pipelines:
          bench:
            source: {video}
            stages: [{{yolo: {{model: {yolox}, conf: 0.3, iou: 0.45}}}}]
            sinks: [null]
        """
    args = ["--model", str(yolox), "--video", str(video), "--frames", str(a.frames)]

    def run_rf() -> float:
        out = peer(a.inference_python, "inference_pipeline.py", args)
        rf.note = f"inference {out.get('version')}, onnxruntime {out.get('onnxruntime')}"
        return float(out["fps"])
    interleave(a.repeat, [(rf, run_rf), (ours, lambda: _fps_stats(engine_run(yaml_text, tmp, a.frames)))])
    return [rf, ours]


def row_postprocess(a, tmp: Path) -> list[Row]:
    from bench_yolo import synthetic_head

    from streamcnn.ops import letterbox_info
    from streamcnn.ops.yolo import cxcywh_to_xyxy

    raw = synthetic_head(np.random.default_rng(0))
    grid = make_grid(640, 640, [8, 16, 32])
    info = letterbox_info(640, 640, 640, 640, "top-left")
    sec = "4. post-processing (YOLOX 8400×85 head, conf 0.3, iou 0.45)"
    cvr = Row(sec, "decode + cv2.dnn.NMSBoxesBatched", unit="ms", higher_is_better=False)
    ours = Row(sec, "decode + streamcnn select (filter, map, NMS)", unit="ms", ref=cvr.name, higher_is_better=False)

    def ours_fn():
        cxcywh, obj, cls = decode_yolox(raw, grid)
        return select(cxcywh, obj, cls, info, conf=0.3, iou=0.45)

    def cv_fn():
        cxcywh, obj, cls = decode_yolox(raw, grid)
        keep = obj > 0.3
        cxcywh, obj, cls = cxcywh[keep], obj[keep], cls[keep]
        cid = cls.argmax(1)
        score = obj * cls[np.arange(len(cls)), cid]
        m = score > 0.3
        xyxy = info.boxes_to_frame(cxcywh_to_xyxy(cxcywh[m]))
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        return cv2.dnn.NMSBoxesBatched(xywh.tolist(), score[m].tolist(), cid[m].tolist(), 0.3, 0.45)

    iters = 20 if a.smoke else 300

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3
    interleave(a.repeat, [(cvr, lambda: timed(cv_fn)), (ours, lambda: timed(ours_fn))])
    return [cvr, ours]


def row_faces(a, tmp: Path) -> list[Row]:
    import logging

    from bench_faces import bare_loop, make_db

    from streamcnn import Context
    from streamcnn.facedb import FaceEmbedder
    from streamcnn.ops.faces import FaceDetector
    from streamcnn_plugins.faces import FaceDetectStage, FaceRecognizeStage, LandmarksStage

    video = resolve_asset("Megamind.avi")
    db_path = tmp / "faces.npz"
    make_db(db_path, FaceDetector("yunet_n_dynamic"), FaceEmbedder("mobilefacenet_128d"))

    def ctx(name: str) -> Context:
        return Context(name, "bench", tmp, logging.getLogger(f"streamcnn.bench.{name}"))

    def bare() -> float:
        reference_threads()
        stages = [FaceDetectStage(FaceDetectStage.Params(model="yunet_n_dynamic"), ctx("face_detect")),
                  LandmarksStage(LandmarksStage.Params(model="pfld68_112"), ctx("landmarks")),
                  FaceRecognizeStage(FaceRecognizeStage.Params(database=str(db_path)), ctx("face_recognize"))]
        return _fps(bare_loop(video, stages, a.frames))

    sec = "5. faces (Megamind.avi: detect → landmarks → recognise)"
    bare_row = Row(sec, "bare loop: read → the same 3 stages' process()")
    ours = Row(sec, "streamcnn: face_detect → landmarks → face_recognize → null sink", ref=bare_row.name)
    yaml_text = f"""
        pipelines:
          bench:
            source: {video}
            stages:
              - face_detect: {{model: yunet_n_dynamic}}
              - landmarks: {{model: pfld68_112}}
              - face_recognize: {{database: {db_path}}}
            sinks: [null]
        """
    interleave(a.repeat, [(bare_row, bare), (ours, lambda: _fps_stats(engine_run(yaml_text, tmp, a.frames)))])
    return [bare_row, ours]


def row_streams(a, tmp: Path) -> list[Row]:
    from streamcnn.batchaxis import dynamic_batch

    video = resolve_asset("vtest.avi")
    yolox = resolve_asset("yolox_nano_coco_416")
    dyn = tmp / "yolox_nano_dynamic_batch.onnx"
    dyn.write_bytes(dynamic_batch(yolox))
    rows: list[Row] = []
    counts = [1, 2] if a.smoke else [1, 2, 4, 8]
    for k in counts:
        frames = max(20, a.frames * 2 // k) if not a.smoke else a.frames
        sec = f"6. {k} pipeline{'s' if k > 1 else ''} of YOLOX-nano on vtest.avi, one process ({frames} frames each)"
        settings = {
            "budget": ("thread budget (default)", "", yolox),
            "ort": ("ORT defaults: 1 frame in flight, ORT's own thread pool",
                    "runtime: {in_flight: 1, intra_op_threads: 0, spinning: true, "
                    f"opencv_threads: {CV2_THREADS}}}\n", yolox),
            "batch": (f"thread budget + batching across pipelines (max_batch {k}, dynamic-batch model)",
                      f"runtime: {{max_batch: {k}, batch_timeout_ms: 5}}\n", dyn),
        }
        variants = []
        per_rows = {}
        for key, (label, runtime, model) in settings.items():
            if key == "batch" and k == 1:
                continue
            row = Row(sec, f"aggregate, {label}", ref=None if key == "ort" else f"aggregate, {settings['ort'][0]}")
            spread = Row(sec, f"per-pipeline spread (max/min − 1), {label}", unit="%", higher_is_better=False)
            per_rows[key] = (row, spread)
            pipes = "".join(f"""
              p{i}:
                source: {video}
                stages: [{{yolo: {{model: {model}, format: yolox, scale: 1, resize: top-left, conf: 0.3, iou: 0.45}}}}]
                sinks: [null]""" for i in range(k))
            text = runtime + "pipelines:" + pipes + "\n"

            def run(text=text, spread=spread, frames=frames) -> float:
                stats, s = engine_run(text, tmp, frames)
                fps = [st.fps for st in stats]
                spread.runs.append(100 * (max(fps) / min(fps) - 1) if min(fps) > 0 else float("nan"))
                return sum(st.frames for st in stats) / s
            variants.append((row, run))
        interleave(a.repeat, variants)
        for row, spread in per_rows.values():
            rows += [row] + ([spread] if k > 1 else [])
    return rows


def rss_mib() -> float:
    """Resident set size of this process now, in MiB (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


SLOW_PLUGIN = '''
import time
import streamcnn

class Slow(streamcnn.Stage):
    """Sleeps 100 ms per frame (a slow model)."""
    stateless = True

    def process(self, frame):
        time.sleep(0.1)
        return frame

class Age(streamcnn.Sink):
    """Records each frame's age at the sink (now − capture time, seconds) in the file ``path``."""

    class Params(streamcnn.Params):
        path: str

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.ages = []

    def write(self, frame):
        self.ages.append(time.time() - frame.capture_time)

    def close(self):
        with open(self.params.path, "w") as f:
            f.write("\\n".join(map(str, self.ages)))

@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"slow": Slow}

@streamcnn.hookimpl
def streamcnn_sink_types():
    return {"age": Age}
'''


def row_soak(a, tmp: Path) -> list[Row]:
    yolox = resolve_asset("yolox_nano_coco_416")
    frames = 100 if a.smoke else a.soak
    sec = f"7. soak and frame age ({frames} frames of a 640×480 pattern through YOLOX-nano)"
    text = f"""
        pipelines:
          soak:
            source: {{uri: pattern, size: 640x480, frames: {frames}}}
            stages: [{{yolo: {{model: {yolox}}}}}, annotate]
            sinks: [null]
        """
    samples: list[tuple[int, float]] = []
    done = threading.Event()
    cfg = tmp / "soak.yaml"
    cfg.write_text(textwrap.dedent(text))
    engine = Engine(load_config(cfg))

    def sample() -> None:
        while not done.wait(0.5):
            samples.append((engine.runs[0].stats.frames, rss_mib()))
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    engine.run()
    done.set()
    t.join()
    samples.append((engine.runs[0].stats.frames, rss_mib()))
    early = [r for n, r in samples if n >= frames // 10] or [samples[-1][1]]
    start = Row(sec, f"RSS after {frames // 10} frames", unit="MiB", runs=[early[0]], higher_is_better=False)
    end = Row(sec, f"RSS after {samples[-1][0]} frames", unit="MiB", runs=[samples[-1][1]], higher_is_better=False,
              note=f"growth {samples[-1][1] - early[0]:+.1f} MiB; "
                   f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    plugin = tmp / "slow_plugin.py"
    plugin.write_text(SLOW_PLUGIN)
    rows = [start, end]
    for flight in (1, 2):
        age_yaml = f"""
            plugins: [{plugin}]
            runtime: {{in_flight: {flight}}}
            pipelines:
              age:
                source: {{uri: pattern, size: 640x480, fps: 25, frames: {40 if a.smoke else 250}, realtime: true,
                          policy: latest}}
                stages: [slow]
                sinks: [{{age: {{path: {tmp}/ages.txt}}}}]
            """
        engine_run(age_yaml, tmp, None)
        ages = sorted(float(x) for x in (tmp / "ages.txt").read_text().split())
        rows.append(Row("7b. frame age (25 fps real-time pattern, policy latest, a 100 ms stage)",
                        f"frame age at the sink, {flight} frame{'s' if flight > 1 else ''} in flight: median (max)",
                        unit="ms", runs=[1e3 * statistics.median(ages)], higher_is_better=False,
                        note=f"max {1e3 * ages[-1]:.0f} ms over {len(ages)} frames"))
    return rows


def _fps_stats(result: tuple[list, float]) -> float:
    stats, seconds = result
    return sum(st.frames for st in stats) / seconds


ROWS = {1: row_engine, 2: row_detection, 3: row_inference, 4: row_postprocess, 5: row_faces, 6: row_streams,
        7: row_soak}


# -- output -------------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    """The Markdown table: one block per section, ratio against each row's reference."""
    out: list[str] = []
    by_name = {(r.section, r.name): r for r in rows}
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            out += ["", f"**{section}**", "", "| variant | median | runs | ratio |", "|---|---:|---|---:|"]
        ratio = ""
        ref = by_name.get((r.section, r.ref)) if r.ref else None
        if ref is not None and ref.median and r.median:
            x = r.median / ref.median if r.higher_is_better else ref.median / r.median
            ratio = f"**{x:.2f}×**"
        runs = ", ".join(f"{v:.1f}" if r.unit != "ms" or v >= 1 else f"{v:.3f}" for v in r.runs)
        med = f"{r.median:.3f}" if r.unit == "ms" and r.median < 1 else f"{r.median:.1f}"
        note = f" ({r.note})" if r.note else ""
        out.append(f"| {r.name}{note} | {med} {r.unit} | {runs} | {ratio} |")
    return "\n".join(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return (f"{cpu}, {available_cores()} cores available, {mem:.0f} GiB; "
            f"Python {platform.python_version()}, streamcnn {streamcnn.__version__}, onnxruntime {ort.__version__} "
            f"({', '.join(ort.get_available_providers())}), OpenCV {cv2.__version__}, numpy {np.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs per variant (median reported)")
    ap.add_argument("--frames", type=int, default=400, help="frames per run (per pipeline in row 6: scaled)")
    ap.add_argument("--soak", type=int, default=10_000, help="frames of the RSS soak (row 7)")
    ap.add_argument("--rows", default="1,2,3,4,5,6,7", help="which rows, e.g. 2,6")
    ap.add_argument("--ultralytics-python", help="a Python with ultralytics installed (row 2's YOLOv8n line)")
    ap.add_argument("--inference-python", help="a Python with Roboflow inference installed (row 3)")
    ap.add_argument("--out", default=str(HERE.parent / "BENCHMARKS.md"), help="Markdown file to write ('' = none)")
    ap.add_argument("--smoke", action="store_true", help="a few frames per row: checks the tool, not the speed")
    a = ap.parse_args()
    if a.smoke:
        a.repeat, a.frames = 1, 12
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sys.path.insert(0, str(tmp))
        for n in [int(x) for x in a.rows.split(",") if x.strip()]:
            print(f"row {n} ...", file=sys.stderr, flush=True)
            rows += ROWS[n](a, tmp)
    text = table(rows)
    print(text)
    if a.out:
        when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python tools/bench.py " + " ".join(sys.argv[1:])
        Path(a.out).write_text(
            f"# streamcnn benchmarks\n\nMeasured {when} with `{cmd}` (median of {a.repeat} interleaved runs per "
            f"variant; ratio = this row against its reference, higher is better).\n\nMachine: {machine()}.\n"
            f"{text}\n")
        print(f"\nwritten to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    guarded(main)
