"""`tools/bench.py` keeps working: a smoke run of every row (a few frames; its figures mean nothing)."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT


def test_bench_smoke_run_writes_the_table(assets, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "STREAMCNN_ASSETS": str(assets), "STREAMCNN_OFFLINE": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# streamcnn benchmarks\n")
    assert "Machine: " in text and "onnxruntime " in text
    for section in ("**1. engine overhead", "**2. detection end to end", "**4. post-processing",
                    "**5. faces", "**6. 1 pipeline of YOLOX-nano", "**6. 2 pipelines of YOLOX-nano",
                    "**7. soak and frame age", "**7b. frame age"):
        assert section in text, section
    # row 3 (Roboflow) and the Ultralytics line need their own venvs: left out when not given
    assert "Roboflow" not in text and "Ultralytics" not in text
    ratio_rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln.rstrip().endswith("×** |")]
    assert len(ratio_rows) >= 8  # every compared variant has a ratio against its reference
    assert "batching across pipelines (max_batch 2, dynamic-batch model)" in text
    assert res.stdout.strip().endswith(text.strip().splitlines()[-1])  # the same table on stdout
