"""Style-transfer speed at 640×480: streamcnn (the real Engine) vs a bare loop doing the same calls.

For each network — ``style_multistyle26`` (style 19) and the arbitrary pair (Starry Night) — at
``size`` 256, 384 and 512 (longer side in pixels the network sees; 640×480 → 256×192, 384×288,
512×384), each with ``every: 1`` and ``every: 2``:

* **streamcnn**: a pipelines YAML in a temp dir (pattern source 640×480, ``policy: all`` → ``style``
  → ``null`` sink) run by `streamcnn.engine.Engine`; frame times are taken in a
  ``streamcnn_frame_done`` hook, so model loading and the style-vector prediction at start-up are
  not counted (the bare loop does not count its set-up either).
* **bare loop**: the same per-frame calls written out by hand with ``onnxruntime`` — render the
  pattern frame, resize, reflect-pad (or fit into the transform's fixed 384×384 input), NCHW/NHWC
  float blob, ``InferenceSession.run``, crop, clip, uint8 BGR, resize back; with ``every: 2`` the
  network runs on even frames only and odd frames copy the last result.

frames/s = (N − 1) / (time of frame N−1 done − time of frame 0 done), the best of ``--repeat``
alternating runs (on a shared 2-core machine the best run is the least disturbed one). The ratio
streamcnn / bare is the target figure (≥ 0.97). The first frame of each run is also compared:
both paths must give byte-identical output.

Models and Starry Night come from ``STREAMCNN_ASSETS`` (default: ``../shared`` next to the repository).
Usage: ``python tools/bench_style.py [--quick] [--frames N] [--repeat R]``; ``--quick`` does
size 256 only with 12 frames and 1 repeat (about 5 s on 2 cores; the full run about 1 min).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from streamcnn import hookimpl
from streamcnn.api import Context
from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.registry import resolve_asset
from streamcnn_plugins.sources import PatternSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import guarded  # noqa: E402

W, H = 640, 480
# models and media: STREAMCNN_ASSETS, else ../shared next to the repository (as the tests do)
os.environ.setdefault("STREAMCNN_ASSETS", str(Path(__file__).resolve().parents[2] / "shared"))


# -- the bare loop --------------------------------------------------------------------------------
class Bare:
    """The per-frame work of the style stage, written out with cv2/numpy/onnxruntime only."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind, self.size = kind, size
        if kind == "multistyle":
            path = str(resolve_asset("style_multistyle26"))
            self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.extra = {"style_weights": np.eye(26, dtype=np.float32)[19]}
            self.box = None
            return
        pred = ort.InferenceSession(str(resolve_asset("style_arbitrary_predict")), providers=["CPUExecutionProvider"])
        style = cv2.imread(str(resolve_asset("starry_night.jpg")))
        h, w = style.shape[:2]
        s = min(h, w)
        sq = style[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        x = cv2.resize(sq, (256, 256), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32) / 255
        vec = pred.run(None, {"style_image": x[None]})[0]
        path = str(resolve_asset("style_arbitrary_transform"))
        if size == 384:  # the model's declared input: fit the frame into 384×384, reflect-pad the rest
            model: str | bytes = path
            self.box = 384
        else:  # another size: declare H, W dynamic (as the stage does)
            m = onnx.load(path)
            for vi in list(m.graph.input[:1]) + list(m.graph.output):
                vi.type.tensor_type.shape.dim[1].dim_param = "height"
                vi.type.tensor_type.shape.dim[2].dim_param = "width"
            del m.graph.value_info[:]
            model, self.box = m.SerializeToString(), None
        self.sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.extra = {"mobilenet_conv/Conv/BiasAdd": vec}

    def stylise(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        r = self.size / max(w, h)
        ww, wh = max(1, round(w * r)), max(1, round(h * r))
        small = cv2.resize(img, (ww, wh), interpolation=cv2.INTER_AREA if ww * wh < w * h else cv2.INTER_LINEAR)
        ph = self.box if self.box else -(-wh // 4) * 4
        pw = self.box if self.box else -(-ww // 4) * 4
        padded = cv2.copyMakeBorder(small, 0, ph - wh, 0, pw - ww, cv2.BORDER_REFLECT_101)
        if self.kind == "multistyle":
            y = self.sess.run(None, {"image": cv2.dnn.blobFromImage(padded, 1 / 255, swapRB=True), **self.extra})[0]
            chw = (np.clip(y[0, :, :wh, :ww], 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
            out = cv2.merge((chw[2], chw[1], chw[0]))
        else:
            x = (cv2.cvtColor(padded, cv2.COLOR_BGR2RGB).astype(np.float32) * np.float32(1 / 255))[None]
            y = self.sess.run(None, {"content_image": x, **self.extra})[0]
            hwc = (np.clip(y[0, :wh, :ww], 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
            out = cv2.cvtColor(hwc, cv2.COLOR_RGB2BGR)
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)

    def run(self, frames: int, every: int) -> tuple[float, np.ndarray]:
        pattern = PatternSource(PatternSource.Params(uri="pattern", size=f"{W}x{H}"), Context("source", "bench"))
        times, first, last = [], None, None
        for i in range(frames):
            img = pattern.render(i)
            if i % every == 0:
                last = self.stylise(img)
                out = last
            else:
                out = last.copy()
            if first is None:
                first = out
            times.append(time.perf_counter())
        return (frames - 1) / (times[-1] - times[0]), first


# -- streamcnn --------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.first: np.ndarray | None = None

    @hookimpl
    def streamcnn_frame_done(self, pipeline: str, frame) -> None:
        self.times.append(time.perf_counter())
        if self.first is None:
            self.first = frame.image.copy()


def run_streamcnn(stage: str, frames: int) -> tuple[float, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(textwrap.dedent(f"""
            pipelines:
              bench:
                source: {{uri: pattern, size: {W}x{H}, frames: {frames}, policy: all}}
                stages: [{{style: {stage}}}]
                sinks: [null]
                on_error: stop
        """))
        config = load_config(cfg)
        clock = _Clock()
        config.plugins.pm.register(clock)
        stats = Engine(config).run()[0]
    if stats.error or len(clock.times) != frames:
        raise SystemExit(f"pipeline failed: {stats.error} ({len(clock.times)} of {frames} frames)")
    return (frames - 1) / (clock.times[-1] - clock.times[0]), clock.first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="size 256 only, 12 frames, 1 repeat")
    ap.add_argument("--frames", type=int, default=None, help="frames per run (default 24; 12 with --quick)")
    ap.add_argument("--repeat", type=int, default=None, help="alternating runs per variant (default 3)")
    args = ap.parse_args()
    frames = args.frames or (12 if args.quick else 24)
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = [256] if args.quick else [256, 384, 512]
    nets = {"multistyle": "{style: 19", "arbitrary": "{style_image: starry_night.jpg"}
    print(f"style stage at {W}x{H}, {frames} frames per run, best of {repeat}, onnxruntime {ort.__version__} CPU")
    print(f"  {'network':<11} {'size':>4} {'every':>5} {'bare f/s':>9} {'streamcnn f/s':>14} {'ratio':>6}  same output")
    ratios = []
    for kind, head in nets.items():
        for size in sizes:
            bare = Bare(kind, size)
            for every in (1, 2):
                stage = f"{head}, size: {size}, every: {every}}}"
                b_best = s_best = 0.0
                for _ in range(repeat):
                    b, b_first = bare.run(frames, every)
                    s, s_first = run_streamcnn(stage, frames)
                    b_best, s_best = max(b_best, b), max(s_best, s)
                same = "yes" if np.array_equal(b_first, s_first) else (
                    f"NO (max diff {np.abs(b_first.astype(int) - s_first).max()})")
                ratio = s_best / b_best
                ratios.append(ratio)
                print(f"  {kind:<11} {size:>4} {every:>5} {b_best:>9.1f} {s_best:>14.1f} {ratio:>6.3f}  {same}")
    print(f"ratio streamcnn / bare: min {min(ratios):.3f}, median {float(np.median(ratios)):.3f} (target ≥ 0.97)")


if __name__ == "__main__":
    guarded(main)
