"""The plugin written in the README (a stage, a model stage and a sink) works as printed, using
only the declared API, and its model stage gives exactly what the built-in yolo stage gives."""

from __future__ import annotations

import json
import re

import cv2

from .conftest import ROOT, media, run_cli, write


def _readme_block(lang: str, first_line: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"README has {len(found)} {lang} blocks starting with {first_line!r}"
    return found[0]


def test_the_readme_plugin_runs_as_printed(assets, tmp_path):
    video = media(assets, "vtest.avi")
    write(tmp_path / "my_plugins.py", _readme_block("python", "# my_plugins.py"))
    yaml_text = _readme_block("yaml", "plugins: [./my_plugins.py]\npipelines:\n  count:")
    cfg = write(tmp_path / "pipelines.yaml", yaml_text.replace("source: vtest.avi", f"source: {video}"))
    assert run_cli("validate", str(cfg), cwd=tmp_path).returncode == 0
    res = run_cli("run", str(cfg), "--max-frames", "12", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "out" / "count.csv").read_text().splitlines()
    assert lines[:2] == ["# 768x576 at 10.0 fps", "index,pts,count"]
    rows = [tuple(line.split(",")) for line in lines[2:]]
    assert [int(r[0]) for r in rows] == list(range(12)) and rows[1][1] == "0.100"
    cap = cv2.VideoCapture(str(tmp_path / "out" / "count.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()

    # reference: the built-in yolo stage with the same model, threshold and class
    ref = write(tmp_path / "ref.yaml", f"""
        pipelines:
          ref:
            source: {video}
            stages: [{{yolo: {{model: yolox_nano_coco_416, conf: 0.3, classes: [person]}}}}]
            sinks: [{{jsonl: {{path: ref.jsonl}}}}]
        """)
    assert run_cli("run", str(ref), "--max-frames", "12", cwd=tmp_path).returncode == 0
    expected = [len(json.loads(x)["detections"]) for x in (tmp_path / "ref.jsonl").read_text().splitlines()]
    assert [int(r[2]) for r in rows] == expected
    assert sum(expected) >= 12 * 3  # vtest.avi has several people in every frame
