"""GPU check: run on a machine with an NVIDIA GPU and ``onnxruntime-gpu`` (``pip install -e '.[gpu]'``).

1. the execution provider each model session really uses with ``device: cuda`` (and ``tensorrt``
   when the TensorRT execution provider is in this build);
2. YOLOX-nano and YuNet results on the GPU equal the CPU results within tolerance (same boxes,
   ≤ 0.5 px apart; conf ≤ 1e-3 apart) on 30 frames of vtest.avi / Megamind.avi;
3. frames/s of 1, 4 and 16 pipelines of YOLOX-nano on a 1920×1080 test pattern, with and without
   batching across pipelines (a dynamic-batch copy of the model, `streamcnn.batchaxis`).

Prints one Markdown block to paste into the README's GPU section. Exit code 1 when a check fails,
2 when there is no usable GPU (nothing measured). Usage: ``bash tools/gpu_check.sh``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamcnn import runtime
from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.registry import resolve_asset


def run(yaml_text: str, tmp: Path, frames: int | None = None) -> tuple[list, float]:
    cfg = tmp / "gpu.yaml"
    cfg.write_text(textwrap.dedent(yaml_text))
    engine = Engine(load_config(cfg), max_frames=frames)
    t0 = time.perf_counter()
    stats = engine.run()
    return stats, time.perf_counter() - t0


def boxes(path: Path) -> list[np.ndarray]:
    return [np.array([d["xyxy"] + [d["conf"]] for d in json.loads(x)["detections"]], np.float64).reshape(-1, 5)
            for x in path.read_text().splitlines()]


def main() -> int:
    print(f"onnxruntime {ort.__version__}, providers in this build: {', '.join(ort.get_available_providers())}")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print("no CUDAExecutionProvider in this onnxruntime build: install onnxruntime-gpu; nothing measured")
        return 2
    ok = True
    devices = ["cuda"] + (["tensorrt"] if "TensorrtExecutionProvider" in ort.get_available_providers() else [])
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for stage, model, video in (("yolo", "yolox_nano_coco_416", "vtest.avi"),
                                    ("face_detect", "yunet_n_dynamic", "Megamind.avi")):
            media = resolve_asset(video)
            results = {}
            for device in ["cpu"] + devices:
                try:
                    ms = runtime.get_session(resolve_asset(model), device, stage=stage)
                except Exception as exc:  # noqa: BLE001 - reported, the check goes on
                    print(f"- {model} on {device}: FAILED to start: {exc}")
                    ok = False
                    continue
                print(f"- {model} with device: {device} runs on {ms.provider}")
                stats, _ = run(f"""
                    pipelines:
                      p:
                        source: {media}
                        stages: [{{{stage}: {{model: {model}, device: {device}}}}}]
                        sinks: [{{jsonl: {{path: {tmp}/{device}.jsonl}}}}]
                    """, tmp, 30)
                results[device] = boxes(tmp / f"{device}.jsonl")
            for device in devices:
                if device not in results:
                    continue
                worst = 0.0
                for a, b in zip(results["cpu"], results[device], strict=True):
                    if a.shape != b.shape:
                        print(f"  {model} {device}: {len(b)} boxes vs {len(a)} on the CPU in a frame: MISMATCH")
                        ok = False
                        break
                    if len(a):
                        worst = max(worst, float(np.abs(a[:, :4] - b[:, :4]).max()))
                print(f"  {model} {device} vs cpu: largest box difference {worst:.4f} px over 30 frames"
                      f" ({'ok' if worst <= 0.5 else 'TOO LARGE'})")
                ok &= worst <= 0.5
        from streamcnn.batchaxis import dynamic_batch

        yolox = resolve_asset("yolox_nano_coco_416")
        dyn = tmp / "yolox_dyn.onnx"
        dyn.write_bytes(dynamic_batch(yolox))
        print("\n| pipelines (1920×1080 pattern, YOLOX-nano, cuda) | frames/s aggregate | per pipeline | "
              "with batching (max_batch = pipelines) |\n|---:|---:|---:|---:|")
        for k in (1, 4, 16):
            row = []
            for model, rt in ((yolox, "{}"), (dyn, f"{{max_batch: {k}, batch_timeout_ms: 2}}")):
                pipes = "".join(f"""
                  p{i}:
                    source: {{uri: pattern, size: 1920x1080, frames: 300}}
                    stages: [{{yolo: {{model: {model}, format: yolox, scale: 1, resize: top-left, device: cuda}}}}]
                    sinks: [null]""" for i in range(k))
                stats, s = run(f"runtime: {rt}\npipelines:{textwrap.dedent(pipes)}\n", tmp)
                row.append((sum(st.frames for st in stats) / s, min(st.fps for st in stats)))
                if k == 1:
                    break
            batched = f"{row[1][0]:.0f}" if len(row) > 1 else "—"
            print(f"| {k} | {row[0][0]:.0f} | {row[0][1]:.0f} | {batched} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
