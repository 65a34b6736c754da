"""Throughput of the same pipelines in one process, on one Ray actor and on two (issue 14).

    python tools/bench_cluster.py [--frames 200] [--model yolox_nano_coco_416]

Two pipelines, each a 640x480 test pattern through YOLOX-nano (``--model``; ``edges`` when the
model cannot be had) into a ``jsonl`` sink, run three ways on this machine:

- ``local``: ``streamcnn run`` as always, one process, both pipelines (the obvious alternative);
- ``ray, 1 actor``: both pipelines in one ``group:`` on one Ray actor (one process, 2 CPUs):
  the same work as ``local`` plus what Ray adds per frame (nothing crosses the object store per
  frame: the driver polls a snapshot 4 times a second);
- ``ray, 2 actors``: one actor (process) per pipeline, 1 CPU each: a stand-in for two nodes;
- ``ray, 1 actor, 1 pipeline``: one of those alone (what one such node does).

Frames/s is each run's frames over its pipelines' own running time (start-up of Ray and of the
actors excluded, and reported apart). Ray is started here (``ray.init``, local) once.

For the sizing in docs/scale.md it also measures what a camera costs before any model: decoding
H.264 (PyAV, one thread) at 720p and 1080p, on frames of vtest.avi (``--media``) scaled up and
encoded with libx264 veryfast in memory first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamcnn.config import load_config  # noqa: E402
from streamcnn.engine import Engine  # noqa: E402
from streamcnn.registry import find_local  # noqa: E402
from tools._bench import guarded  # noqa: E402


def _yaml(stage: str, frames: int, group: bool, pipelines: int = 2) -> str:
    text = "pipelines:\n"
    for i in range(pipelines):
        text += (f"  p{i}:\n"
                 f"    source: {{uri: pattern, size: 640x480, fps: 25, frames: {frames}}}\n"
                 f"    stages: [{stage}]\n"
                 f"    sinks: [{{jsonl: {{path: out/p{i}.jsonl}}}}]\n"
                 f"    resources: {{cpus: 1}}\n" + ("    group: all\n" if group else ""))
    return text


def run_local(text: str) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(text)
        stats = Engine(load_config(cfg)).run()
    return sum(s.frames for s in stats), max(s.seconds for s in stats)


def run_ray(text: str, engine_cls, connected: list) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(text)
        engine = engine_cls(load_config(cfg), "local")
        if connected:
            engine.ray = connected[0]
        else:
            engine.connect()
            connected.append(engine.ray)
        t0 = time.perf_counter()
        engine.start()
        engine.wait()
        wall = time.perf_counter() - t0
        frames = sum(r.stats.frames for r in engine.runs)
        inside = max(float(r.snap["stats"]["seconds"]) for r in engine.runs)
        for r in engine.runs:
            if r.stats.error:
                raise SystemExit(f"pipeline {r.name} failed: {r.stats.error}")
    return frames, inside, wall - inside


def decode_ms(media: Path, width: int, height: int, frames: int = 100) -> float:
    """Milliseconds per frame to decode H.264 at width×height with PyAV (one decoder thread)."""
    import io

    import av
    import cv2

    cap = cv2.VideoCapture(str(media))
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            ok, img = cap.read()
            if not ok:
                break
            frame = av.VideoFrame.from_ndarray(cv2.resize(img, (width, height)), format="bgr24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cap.release()
    buf.seek(0)
    with av.open(buf) as f:
        f.streams.video[0].thread_type = "SLICE"
        f.streams.video[0].thread_count = 1
        t0 = time.perf_counter()
        n = sum(1 for fr in f.decode(video=0) if fr.to_ndarray(format="bgr24") is not None)
        seconds = time.perf_counter() - t0
    return seconds / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per pipeline")
    ap.add_argument("--model", default="yolox_nano_coco_416")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--media", type=Path, default=Path(os.environ.get("STREAMCNN_ASSETS", "../shared")) / "media"
                    / "vtest.avi")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from streamcnn.cluster.driver import ClusterEngine

    stage = f"{{yolo: {{model: {args.model}}}}}" if find_local(args.model)[0] else "{edges: {}}"
    print(f"2 pipelines × {args.frames} frames, 640x480 pattern → {stage} → jsonl; {os.cpu_count()} cores")
    connected: list = []
    rows = []
    variants = (  # local first: before Ray's own processes run on this machine
        ("local (one process)", 2, lambda: run_local(_yaml(stage, args.frames, False)) + (0.0,)),
        ("ray, 1 actor (group)", 2, lambda: run_ray(_yaml(stage, args.frames, True), ClusterEngine, connected)),
        ("ray, 2 actors", 2, lambda: run_ray(_yaml(stage, args.frames, False), ClusterEngine, connected)),
        ("ray, 1 actor, 1 pipeline", 1, lambda: run_ray(_yaml(stage, args.frames, False, 1), ClusterEngine,
                                                        connected)),
    )
    for name, pipelines, fn in variants:
        best = None
        for _ in range(args.repeat):
            frames, seconds, startup = fn()
            fps = frames / seconds
            if best is None or fps > best[0]:
                best = (fps, seconds / frames * 1e3 * pipelines, startup)
        rows.append((name, *best))
    base = rows[0][1]
    print(f"  {'':<22} {'frames/s':>9} {'ms/frame/pipeline':>18} {'vs local':>9} {'actor start-up':>15}")
    for name, fps, ms, startup in rows:
        print(f"  {name:<22} {fps:9.1f} {ms:18.2f} {fps / base:8.2f}× {startup:14.2f} s")
    if connected:
        connected[0].shutdown()
    if args.media.is_file():
        for w, h in ((1280, 720), (1920, 1080)):
            print(f"  H.264 decode {w}x{h} (PyAV, 1 thread, to BGR): {decode_ms(args.media, w, h):.2f} ms/frame")


if __name__ == "__main__":
    guarded(main)
