"""Real videos from STREAMCNN_ASSETS (default ../shared) end to end through `streamcnn run`."""

from __future__ import annotations

import json
import textwrap

import cv2
import pytest

from .conftest import media, need, run_cli


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


def test_default_street_pipeline_runs_over_the_whole_video(assets, default_pipelines):
    out_dir = default_pipelines.parent / "out"

    need(assets / "models" / "yolox_nano_coco_416.onnx")
    media(assets, "vtest.avi")
    res = run_cli("run", str(default_pipelines), "--pipeline", "street")
    assert res.returncode == 0, res.stderr
    assert "street: 795 frames" in res.stderr
    records = [json.loads(x) for x in (out_dir / "street.jsonl").read_text().splitlines()]
    assert len(records) == 795 == count_frames(out_dir / "street.mp4")
    persons = [sum(d["class_name"] == "person" and d["conf"] > 0.5 for d in r["detections"]) for r in records]
    assert sorted(persons)[len(persons) // 2] >= 5  # median persons per frame (MEDIA.md: 7 with YOLOX)
    for r in records:
        for d in r["detections"]:
            x1, y1, x2, y2 = d["xyxy"]
            assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576


def test_default_faces_pipeline_runs_over_the_whole_clip(assets, default_pipelines):
    out_dir = default_pipelines.parent / "out"

    for m in ("yunet_n_dynamic", "pfld68_112", "mobilefacenet_128d"):
        need(assets / "models" / f"{m}.onnx")
    media(assets, "Megamind.avi")
    res = run_cli("run", str(default_pipelines), "--pipeline", "faces")
    assert res.returncode == 0, res.stderr
    assert "faces: 270 frames" in res.stderr and "0 skipped" in res.stderr
    records = [json.loads(x) for x in (out_dir / "faces.jsonl").read_text().splitlines()]
    assert len(records) == 270 == count_frames(out_dir / "faces.mp4")
    with_faces = [r for r in records if r["detections"]]
    assert len(with_faces) >= 0.9 * 270  # MEDIA.md: 1-2 faces in 26 of 27 sampled frames
    assert all(d["class_name"] == "face" and len(d["landmarks"]) == 68 and d["identity"] == "unknown"
               for r in with_faces for d in r["detections"])
    assert len(records[30]["detections"]) == 2


def test_default_starry_pipeline_styles_the_street_video(assets, default_pipelines):
    out_dir = default_pipelines.parent / "out"

    for m in ("style_arbitrary_predict", "style_arbitrary_transform"):
        need(assets / "models" / f"{m}.onnx")
    video = media(assets, "vtest.avi")
    res = run_cli("run", str(default_pipelines), "--pipeline", "starry", "--max-frames", "6")
    assert res.returncode == 0, res.stderr
    out = cv2.VideoCapture(str(out_dir / "starry_vtest.mp4"))
    src = cv2.VideoCapture(str(video))
    frames = 0
    while True:
        ok, styled = out.read()
        if not ok:
            break
        original = src.read()[1]
        assert styled.shape == original.shape == (576, 768, 3)
        assert abs(styled.astype(float) - original).mean() / 255 > 0.1  # clearly restyled
        frames += 1
    assert frames == 6
