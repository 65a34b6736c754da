"""Peak memory of every built-in stage on one 48-megapixel (8000×6000) frame.

Each stage runs in a fresh Python process, built from a pipelines YAML with its default options
(the way ``streamcnn run`` builds it; models from ``STREAMCNN_ASSETS``). The frame is
``obama_and_biden.jpg`` scaled up to 8000×6000, so the face stages have two large faces to work
on. Stages that need detections (``landmarks``, ``face_recognize``, ``annotate``) get them from
``face_detect`` (and ``yolo`` for ``annotate``) first, outside the measurement.

Per stage the script reports, in MiB:

* **before**: the process's resident set (VmRSS) after the stages were built and the frame (137 MiB
  of pixels) was made and the prerequisite stages ran;
* **peak**: the highest resident set while the measured stage processes the frame (VmHWM, reset
  just before through ``/proc/self/clear_refs``; where that is not possible, the process's peak
  since start, ``ru_maxrss``);
* **extra**: peak − before, what the stage itself needs on top of the frame;

plus the seconds the stage took. ``face_recognize`` uses a database enrolled from ``obama.jpg`` and
``biden.jpg`` into a temporary folder first.

Usage: ``python tools/bench_memory.py [--stages edges,yolo,...] [--width 8000 --height 6000]``
(about 1 min on 2 cores). Linux only (reads ``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("STREAMCNN_ASSETS", str(ROOT.parent / "shared"))

#: measured stage → (the stages of the pipeline in order, YAML flow mappings); the last one is measured
CHAINS: dict[str, list[str]] = {
    "edges": ["edges"],
    "yolo": ["{yolo: {model: yolox_nano_coco_416}}"],
    "face_detect": ["face_detect"],
    "landmarks": ["face_detect", "landmarks"],
    "face_recognize": ["face_detect", "{face_recognize: {database: DB}}"],
    "style": ["style"],
    "annotate": ["{yolo: {model: yolox_nano_coco_416}}", "face_detect", "annotate"],
}


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in MiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    raise KeyError(key)


def _reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(stage: str, width: int, height: int, database: str) -> dict:
    """In this process: build the chain for ``stage``, run it on one ``width``×``height`` frame and
    return the figures (MiB, seconds)."""
    import cv2

    from streamcnn import Frame
    from streamcnn.config import load_config

    assets = Path(os.environ["STREAMCNN_ASSETS"])
    chain = [s.replace("DB", database) for s in CHAINS[stage]]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(textwrap.dedent(f"""
            pipelines:
              p:
                source: pattern
                stages: [{", ".join(chain)}]
                sinks: [null]
            """))
        config = load_config(cfg)
        comps = config.pipelines["p"].stages
        built = [c.build() for c in comps]
    photo = cv2.imread(str(assets / "media" / "obama_and_biden.jpg"))
    image = cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR)
    del photo
    frame = Frame(image, 0, 0.0)
    for s in built[:-1]:
        frame = s.process(frame)
    before = _status("VmRSS")
    exact = _reset_peak()
    t0 = time.perf_counter()
    frame = built[-1].process(frame)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    for s in built:
        s.close()
    return {"stage": stage, "chain": " → ".join(c.type_name for c in comps), "before": before, "peak": peak,
            "extra": peak - before, "seconds": round(seconds, 2), "exact": exact,
            "detections": len(frame.detections)}


def _enroll(tmp: Path) -> Path:
    """A face database of obama.jpg and biden.jpg, made with ``streamcnn faces enroll``."""
    assets = Path(os.environ["STREAMCNN_ASSETS"])
    for person in ("obama", "biden"):
        folder = tmp / "people" / person
        folder.mkdir(parents=True)
        (folder / f"{person}.jpg").write_bytes((assets / "media" / f"{person}.jpg").read_bytes())
    out = tmp / "faces.npz"
    res = subprocess.run([sys.executable, "-m", "streamcnn", "-q", "faces", "enroll", str(tmp / "people"),
                          "--out", str(out)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"enrolling the test faces failed: {res.stderr.strip()}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default=",".join(CHAINS), help="comma-separated stage names (default: all)")
    ap.add_argument("--width", type=int, default=8000)
    ap.add_argument("--height", type=int, default=6000)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: measure this stage, print JSON
    ap.add_argument("--database", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.width, args.height, args.database or "")))
        return
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in CHAINS]
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(CHAINS)}")
    print(f"peak memory per stage on one {args.width}×{args.height} frame "
          f"({args.width * args.height * 3 / 2**20:.0f} MiB of pixels), MiB:")
    print(f"  {'stage':<15} {'before':>7} {'peak':>7} {'extra':>7} {'seconds':>8} {'dets':>5}  chain")
    with tempfile.TemporaryDirectory() as tmp:
        database = str(_enroll(Path(tmp))) if "face_recognize" in stages else ""
        for stage in stages:
            res = subprocess.run([sys.executable, __file__, "--one", stage, "--width", str(args.width),
                                  "--height", str(args.height), "--database", database],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                tail = (res.stderr.strip().splitlines() or ["?"])[-1]
                print(f"  {stage:<15} failed: {tail}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            mark = "" if r["exact"] else " (peak since start: clear_refs refused)"
            print(f"  {stage:<15} {r['before']:>7} {r['peak']:>7} {r['extra']:>7} {r['seconds']:>8.2f} "
                  f"{r['detections']:>5}  {r['chain']}{mark}")


if __name__ == "__main__":
    main()
