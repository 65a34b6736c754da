"""Face pipeline speed (issue 4).

1. Per-face cost on real photos: detect (YuNet, per image and per face), align (ArcFace 5-point
   similarity warp) and embed (MobileFaceNet, one batched call), PFLD-68 landmarks; median ms.
2. Frames/s of the face pipeline on Megamind.avi (face_detect → landmarks → face_recognize → null
   sink) through streamcnn's Engine vs a bare loop making the same calls (read → the same three
   stage objects' ``process``), side by side with the ratio (target ≥ 0.97).

Usage: ``STREAMCNN_ASSETS=DIR python tools/bench_faces.py [--repeat 3] [--iters 30]``, DIR holding the
registry's models and media.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import guarded, median_ms, report, run_engine  # noqa: E402

from streamcnn import Context, Frame  # noqa: E402
from streamcnn.facedb import FaceDB, FaceEmbedder  # noqa: E402
from streamcnn.ops.align import arcface_align  # noqa: E402
from streamcnn.ops.faces import FaceDetector  # noqa: E402
from streamcnn.registry import resolve_asset  # noqa: E402
from streamcnn_plugins.faces import FaceDetectStage, FaceRecognizeStage, LandmarksStage  # noqa: E402


def make_db(path: Path, det: FaceDetector, emb: FaceEmbedder) -> None:
    db = FaceDB(model_sha256=emb.sha256, model_name=emb.path.name)
    for name in ("obama", "biden"):
        img = cv2.imread(str(resolve_asset(f"{name}.jpg")))
        r = det.detect(img)
        db.set_person(name, emb.embed(img, r.landmarks[:1]))
    db.save(path)


def per_face(det: FaceDetector, emb: FaceEmbedder, lm: LandmarksStage, iters: int) -> None:
    print("1. per-face cost (median ms, 2-core CPU figures are rough)")
    print(f"  {'photo':<22}{'faces':>6}{'detect':>9}{'det/face':>10}{'align/face':>12}{'embed/face':>12}"
          f"{'pfld68/face':>13}{'total/face':>12}")
    for name in ("obama.jpg", "obama_and_biden.jpg", "zidane.jpg"):
        img = cv2.imread(str(resolve_asset(name)))
        r = det.detect(img)
        n = len(r)
        faces, _ = arcface_align(img, r.landmarks)
        t_det = median_ms(lambda: det.detect(img), iters)  # noqa: B023
        t_align = median_ms(lambda: arcface_align(img, r.landmarks), iters) / n  # noqa: B023
        t_emb = median_ms(lambda: emb.embed_aligned(faces), iters) / n  # noqa: B023
        t_lm = median_ms(lambda: lm.points(img, r.xyxy), iters) / n  # noqa: B023
        total = t_det / n + t_align + t_emb
        print(f"  {name:<22}{n:>6}{t_det:>9.2f}{t_det / n:>10.2f}{t_align:>12.3f}{t_emb:>12.2f}{t_lm:>13.2f}"
              f"{total:>12.2f}")
    print("  total/face = detect/face + align + embed (recognition path; landmarks are optional)")


def bare_loop(video: Path, stages: list, frames: int | None = None) -> tuple[int, float]:
    """Read → each stage's ``process``, serially, for at most ``frames`` frames: (frames, seconds)."""
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    n = 0
    while frames is None or n < frames:
        ok, img = cap.read()
        if not ok:
            break
        frame = Frame(img, n, 0.0)
        for s in stages:
            frame = s.process(frame)
        n += 1
    cap.release()
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--iters", type=int, default=30)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    video = resolve_asset("Megamind.avi")
    det = FaceDetector("yunet_n_dynamic")
    emb = FaceEmbedder("mobilefacenet_128d")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        db_path = tmp_dir / "faces.npz"
        make_db(db_path, det, emb)

        def ctx(name: str) -> Context:
            return Context(name, "bench", tmp_dir, logging.getLogger(f"streamcnn.bench.{name}"))

        lm = LandmarksStage(LandmarksStage.Params(model="pfld68_112"), ctx("landmarks"))
        per_face(det, emb, lm, args.iters)

        stages = [
            FaceDetectStage(FaceDetectStage.Params(model="yunet_n_dynamic"), ctx("face_detect")),
            lm,
            FaceRecognizeStage(FaceRecognizeStage.Params(database=str(db_path)), ctx("face_recognize")),
        ]
        print("2. face pipeline on Megamind.avi (720x528, 270 frames): detect → pfld68 → recognise, CPU")
        bare, ours = [], []
        for _ in range(args.repeat):
            n, s = bare_loop(video, stages)
            bare.append(n / s)
            m, s2 = run_engine(f"""
                pipelines:
                  bench:
                    source: {video}
                    stages:
                      - face_detect: {{model: yunet_n_dynamic}}
                      - landmarks: {{model: pfld68_112}}
                      - face_recognize: {{database: {db_path}}}
                    sinks: [null]
                """)
            if m != n:
                raise SystemExit(f"engine processed {m} frames, bare loop {n}")
            ours.append(m / s2)
    report([("bare loop (read → same 3 stages' process)", bare), ("streamcnn Engine", ours)])
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"  ratio streamcnn / bare loop: {ratio:.3f} (target ≥ 0.97)")


if __name__ == "__main__":
    guarded(main)
