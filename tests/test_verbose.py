"""Issue 9 item 7: ``-v`` works with every command, on the OpenCV the venv has (5.x) and on the lowest
one pyproject allows (4.10, `.ci/run`'s second venv runs the tests marked ``lowest``), and real models
decode real media end to end (YOLO, faces, edges into the jsonl, images and video sinks).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import cv2
import pytest

from .conftest import media, run_cli, write

pytestmark = pytest.mark.lowest


def _opencv_logging():
    """OpenCV's log-level module: ``cv2.utils.logging`` (OpenCV 5, also 4.x), else ``cv2`` (older 4.x)."""
    mod = getattr(getattr(cv2, "utils", None), "logging", None)
    return mod if mod is not None and hasattr(mod, "getLogLevel") else cv2


def test_verbose_turns_on_opencv_warnings_on_this_opencv(monkeypatch) -> None:
    from streamcnn import cli

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, _opencv_logging().getLogLevel())
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        cli._setup_logging(1, False)
        assert _opencv_logging().getLogLevel() == 3  # LOG_LEVEL_WARNING
        assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "24"
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:], level, cv_level = saved
        root.setLevel(level)
        _opencv_logging().setLogLevel(cv_level)


@pytest.fixture
def pipelines(tmp_path, assets):
    (tmp_path / "photos").mkdir()
    shutil.copy(media(assets, "bus.jpg"), tmp_path / "photos")
    (tmp_path / "faces").mkdir()
    shutil.copy(media(assets, "obama_and_biden.jpg"), tmp_path / "faces")
    return write(tmp_path / "p.yaml", """
        pipelines:
          street:
            source: photos
            stages: [{yolo: {model: yolox_nano_coco_416, conf: 0.5}}]
            sinks: [{jsonl: {path: out/street.jsonl}}]
          faces:
            source: faces
            stages: [face_detect]
            sinks: [{jsonl: {path: out/faces.jsonl}}, {images: {path: "out/faces/{index:03d}.jpg"}}]
          demo:
            source: {uri: pattern, size: 96x64, frames: 3}
            stages: [{edges: {kernel: sobel}}]
            sinks: [{video: {path: out/demo.mp4}}, {jsonl: {path: out/demo.jsonl}}]
        """)


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_run_decodes_real_media_into_every_sink(pipelines, where: str) -> None:
    args = ["-v", "run", pipelines.name] if where == "before" else ["run", pipelines.name, "-v"]
    r = run_cli(*args, cwd=pipelines.parent)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    summary = [ln.split(" in ")[0] for ln in r.stderr.splitlines() if " frames in " in ln]
    assert summary == ["street: 1 frames", "faces: 1 frames", "demo: 3 frames"], r.stderr
    out = pipelines.parent / "out"
    (street,) = _records(out / "street.jsonl")
    got = [(d["class_name"], round(d["conf"], 2)) for d in street["detections"]]
    assert [c for c, _ in got] == ["bus", "person", "person", "person"], got  # MEDIA.md: bus 0.90 and 3 persons
    assert [conf for _, conf in got] == pytest.approx([0.90, 0.86, 0.81, 0.70], abs=0.02), got
    (faces,) = _records(out / "faces.jsonl")
    boxes = sorted((d["xyxy"] for d in faces["detections"]), key=lambda b: b[0])
    assert [d["class_name"] for d in faces["detections"]] == ["face"] * 3  # MEDIA.md: Biden, Obama, a child
    assert [v for b in boxes for v in b] == pytest.approx([761.7, 396.5, 934.7, 639.0, 1137.9, 364.9, 1321.7, 608.6,
                                                           1626.7, 1044.6, 1777.6, 1232.7], abs=4)
    assert all(len(d["landmarks"]) == 5 for d in faces["detections"])
    image = cv2.imread(str(out / "faces" / "000.jpg"))
    assert image.shape == (1428, 2000, 3)
    demo = _records(out / "demo.jsonl")
    assert [(d["index"], d["pts"], d["width"], d["height"]) for d in demo] == [
        (0, 0.0, 96, 64), (1, 0.04, 96, 64), (2, 0.08, 96, 64)]
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert (frames, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (3, 96, 64)


@pytest.mark.parametrize("command", [("validate", "p.yaml"), ("models",), ("plugins", "-c", "p.yaml"),
                                     ("plugins", "-o", "yolo")])
def test_verbose_gives_the_same_answer_as_without(pipelines, command) -> None:
    plain = run_cli(*command, cwd=pipelines.parent)
    verbose = run_cli("-v", *command, cwd=pipelines.parent)
    assert (plain.returncode, verbose.returncode) == (0, 0), verbose.stderr
    assert "Traceback" not in verbose.stderr
    assert verbose.stdout == plain.stdout
    assert verbose.stdout.strip()


def test_verbose_validate_shows_a_plugin_traceback_at_debug_level(tmp_path) -> None:
    write(tmp_path / "bad.py", """
        import streamcnn


        class Bad(streamcnn.Stage):
            def __init__(self, params, ctx):
                super().__init__(params, ctx)
                raise LookupError("no such lens")


        @streamcnn.hookimpl
        def streamcnn_stage_types():
            return {"bad": Bad}
        """)
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./bad.py]
        pipelines:
          p:
            source: pattern
            stages: [bad]
            sinks: [null]
        """)
    quiet, verbose = run_cli("validate", cfg.name, cwd=tmp_path), run_cli("-v", "validate", cfg.name, cwd=tmp_path)
    message = (f"p.yaml:5:14: pipelines.p.stages[0]: stage 'bad' of plugin '{tmp_path / 'bad.py'}' failed to start: "
               f"LookupError: no such lens at {tmp_path / 'bad.py'}:7 (-v shows the traceback)")
    assert (quiet.returncode, quiet.stderr.splitlines()) == (2, [message])
    assert verbose.returncode == 2
    assert " DEBUG   streamcnn.config: stage 'bad' (pipelines.p.stages[0]) failed to start; traceback:" in verbose.stderr
    assert f'File "{tmp_path / "bad.py"}", line 7, in __init__' in verbose.stderr
    assert verbose.stderr.splitlines()[-1] == message
