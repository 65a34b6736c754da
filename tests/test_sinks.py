"""Sinks: browser preview (MJPEG), display without a GUI, the ONNX Runtime install check, images, video, jsonl."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from streamcnn import Context, Frame, StreamcnnError
from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.errors import ConfigError
from streamcnn_plugins.preview import PreviewSink
from streamcnn_plugins.sinks import DisplaySink, ImagesSink, JsonlSink, VideoSink, gui_problem, image_pattern_problem

from .conftest import media


def test_preview_serves_mjpeg_of_the_processed_frames():
    sink = PreviewSink(PreviewSink.Params(port=0), Context("preview", "cam"))
    try:
        base = f"http://127.0.0.1:{sink.port}"
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert '<img src="/stream.mjpg">' in page
        resp = urllib.request.urlopen(base + "/stream.mjpg", timeout=5)
        assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        img = np.zeros((48, 64, 3), np.uint8)
        img[:, 32:] = (0, 0, 255)

        def feed():
            for i in range(20):
                sink.write(Frame(img, i, i / 25))
                time.sleep(0.02)

        t = threading.Thread(target=feed)
        t.start()
        assert resp.readline() == b"--frame\r\n"
        assert resp.readline() == b"Content-Type: image/jpeg\r\n"
        length = int(resp.readline().split(b":")[1])
        resp.readline()
        jpeg = resp.read(length)
        t.join()
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (48, 64, 3)
        assert decoded[:, 40:, 2].mean() > 200 and decoded[:, :24].mean() < 20
        resp.close()
        time.sleep(0.2)  # the stream client is gone: nothing is encoded any more
        for level in (40, 200):  # /frame.jpg shows a fresh frame, not the one cached when nobody watched
            stop = threading.Event()

            def feed_level(level=level, stop=stop):
                i = 100
                while not stop.is_set():
                    sink.write(Frame(np.full((48, 64, 3), level, np.uint8), i, i / 25))
                    i += 1
                    time.sleep(0.02)

            t = threading.Thread(target=feed_level)
            t.start()
            single = urllib.request.urlopen(base + "/frame.jpg", timeout=5).read()
            stop.set()
            t.join()
            got = cv2.imdecode(np.frombuffer(single, np.uint8), cv2.IMREAD_COLOR)
            assert got.shape == (48, 64, 3) and abs(float(got.mean()) - level) < 3
    finally:
        sink.close()


def test_display_sink_explains_how_to_get_a_window(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert gui_problem() == "no display (DISPLAY is not set)"
    cfg = tmp_path / "p.yaml"
    cfg.write_text(textwrap.dedent("""
        pipelines:
          cam:
            source: pattern
            sinks: [display]
        """))
    with pytest.raises(ConfigError) as info:
        load_config(cfg, check=True)
    msg = str(info.value)
    assert msg.startswith(f"{cfg}:5:13: pipelines.cam.sinks[0]: the 'display' sink needs OpenCV with GUI support")
    assert "pip uninstall -y opencv-python-headless && pip install opencv-python" in msg
    assert "{preview: {port: 8090}}" in msg
    with pytest.raises(StreamcnnError, match="no display"):
        DisplaySink(DisplaySink.Params(), Context("display", "cam"))


FAKE_METADATA = """
import importlib.metadata as md
real = md.version
present = {present!r}
def version(name):
    if name in ("onnxruntime", "onnxruntime-gpu"):
        if name in present:
            return "1.0"
        raise md.PackageNotFoundError(name)
    return real(name)
md.version = version
"""


@pytest.mark.parametrize("present, expected", [
    ([], "streamcnn needs ONNX Runtime, and none is installed. Run: pip install -e '.[cpu]' in the streamcnn checkout"),
    (["onnxruntime", "onnxruntime-gpu"], "both onnxruntime and onnxruntime-gpu are installed; they overwrite each "
                                         "other's files"),
])
def test_import_without_or_with_both_onnxruntime_builds(present, expected):
    code = FAKE_METADATA.format(present=present)
    res = subprocess.run([sys.executable, "-c", code + "\ntry:\n    import streamcnn\nexcept ImportError as e:\n"
                          "    print('ImportError:', e)\n"], capture_output=True, text=True, timeout=60)
    assert f"ImportError: {expected}" in res.stdout
    # the command line shows only the message, never a traceback
    res = subprocess.run([sys.executable, "-c", code + "\nfrom streamcnn.cli import main\nmain()\n"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.startswith(f"streamcnn: {expected}") and "Traceback" not in res.stderr


# -- images, video and jsonl sinks --------------------------------------------------------------
def _pipeline(tmp_path, source: str, sinks: str, stages: str = "[]"):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"pipelines:\n  cam:\n    source: {source}\n    stages: {stages}\n    sinks: {sinks}\n")
    return cfg


def test_images_sink_writes_a_single_image_source_as_000000_jpg(tmp_path, assets):
    bus = media(assets, "bus.jpg")
    cfg = _pipeline(tmp_path, str(bus), "[images]")
    stats = Engine(load_config(cfg, check=True)).run()[0]
    assert stats.error is None and stats.frames == 1
    assert sorted(p.name for p in (tmp_path / "out" / "frames").iterdir()) == ["000000.jpg"]
    out = cv2.imread(str(tmp_path / "out" / "frames" / "000000.jpg"))
    src = cv2.imread(str(bus))
    assert out.shape == src.shape and np.abs(out.astype(int) - src).mean() < 3  # quality 95


def test_images_sink_pattern_with_pipeline_and_png(tmp_path):
    cfg = _pipeline(tmp_path, "{uri: pattern, size: 32x24, frames: 3}",
                    "[{images: {path: 'shots/{pipeline}/f{index:03d}.png'}}]")
    Engine(load_config(cfg, check=True)).run()
    files = sorted((tmp_path / "shots" / "cam").iterdir())
    assert [p.name for p in files] == ["f000.png", "f001.png", "f002.png"]
    assert cv2.imread(str(files[0])).shape == (24, 32, 3)


def test_images_sink_without_index_needs_overwrite(tmp_path):
    cfg = _pipeline(tmp_path, "{uri: pattern, size: 32x24, frames: 3}", "[{images: {path: latest.jpg}}]")
    with pytest.raises(ConfigError) as info:
        load_config(cfg, check=True)
    assert str(info.value) == (
        f"{cfg}:5:13: pipelines.cam.sinks[0].images: path 'latest.jpg' has no {{index}}: every frame would "
        "overwrite the last one. Add {index} (e.g. out/frames/{index:06d}.jpg), or set overwrite: true to keep only "
        "the latest frame (a snapshot)")
    cfg = _pipeline(tmp_path, "{uri: pattern, size: 32x24, frames: 3}",
                    "[{images: {path: latest.jpg, overwrite: true}}]")
    Engine(load_config(cfg, check=True)).run()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".jpg"] == ["latest.jpg"]
    with pytest.raises(StreamcnnError, match="has no {index}"):
        ImagesSink(ImagesSink.Params(path="latest.jpg"), Context("images", "cam", tmp_path))


@pytest.mark.parametrize("path, message", [
    ("out/{idx:06d}.jpg", "path 'out/{idx:06d}.jpg' uses {idx} — did you mean 'index'?; the fields are {index}, "
                          "{pipeline} and {node} (e.g. out/frames/{index:06d}.jpg)"),
    ("out/{index:06d}.xyz", "path 'out/{index:06d}.xyz': OpenCV cannot write .xyz images; use .jpg, .png, .webp or "
                            ".bmp"),
    ("out/{index", "path 'out/{index' is not a valid pattern"),
])
def test_images_sink_pattern_errors(path, message):
    assert message in image_pattern_problem(path)


def test_video_sink_says_a_1x1_frame_is_too_small(tmp_path):
    sink = VideoSink(VideoSink.Params(path="v.mp4"), Context("video", "cam", tmp_path))
    try:
        with pytest.raises(StreamcnnError) as info:
            sink.write(Frame(np.zeros((1, 1, 3), np.uint8), 0, 0.0))
    finally:
        sink.close()
    msg = str(info.value)
    assert msg.startswith("video sink: frame 0 is 1×1 pixels, too small to encode as video v.mp4: encoders need at "
                          "least 2×2 pixels (and even sizes for some codecs).")
    assert "mp4v (.mp4), MJPG (.avi)" not in msg


def test_video_sink_warns_once_when_it_resizes(tmp_path, caplog):
    sink = VideoSink(VideoSink.Params(path="v.avi", codec="mjpeg"), Context("video", "cam", tmp_path))
    with caplog.at_level(logging.WARNING):
        for i, (w, h) in enumerate([(32, 24), (32, 24), (16, 12), (20, 10), (32, 24)]):
            sink.write(Frame(np.zeros((h, w, 3), np.uint8), i, i / 25))
        sink.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("video sink: frame 2 is 16×12, the video is 32×24: resized")
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 32
    cap.release()


def test_jsonl_sink_writes_the_file_an_image_came_from(tmp_path):
    sink = JsonlSink(JsonlSink.Params(path="d.jsonl"), Context("jsonl", "cam", tmp_path))
    sink.write(Frame(np.zeros((4, 4, 3), np.uint8), 0, 0.0, meta={"file": "/data/a.jpg"}))
    sink.write(Frame(np.zeros((4, 4, 3), np.uint8), 1, 0.04, meta={"file": 3}))  # not a path: left out
    sink.write(Frame(np.zeros((4, 4, 3), np.uint8), 2, 0.08))
    sink.close()
    records = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert records[0]["file"] == "/data/a.jpg" and "file" not in records[1] and "file" not in records[2]
