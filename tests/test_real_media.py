"""Real videos from STREAMCNN_ASSETS (default ../shared) end to end through `streamcnn run`."""

from __future__ import annotations

import json
import textwrap

import cv2
import pytest

from .conftest import media, run_cli


def count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


@pytest.mark.parametrize("name, frames, size", [("vtest.avi", 795, (768, 576)), ("Megamind.avi", 270, (720, 528))])
def test_real_video_end_to_end(assets, tmp_path, name, frames, size):
    video = media(assets, name)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(textwrap.dedent(f"""
        pipelines:
          real:
            source: {video}
            stages: [{{edges: {{kernel: sobel, padding: same}}}}]
            sinks: [{{video: {{path: out.mp4}}}}, {{jsonl: {{path: out.jsonl}}}}]
        """))
    res = run_cli("run", str(cfg))
    assert res.returncode == 0, res.stderr
    assert count_frames(tmp_path / "out.mp4") == frames == count_frames(video)
    out = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert (int(out.get(cv2.CAP_PROP_FRAME_WIDTH)), int(out.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size
    src_fps = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS)
    assert out.get(cv2.CAP_PROP_FPS) == pytest.approx(src_fps, rel=1e-3)
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(frames))
    pts = [r["pts"] for r in records]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[-1] == pytest.approx((frames - 1) / src_fps, abs=0.05)
