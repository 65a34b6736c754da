"""Sinks: browser preview (MJPEG), display without a GUI, and the ONNX Runtime install check."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from streamcnn import Context, Frame
from streamcnn.config import load_config
from streamcnn_plugins.preview import PreviewSink
from streamcnn_plugins.sinks import DisplaySink, gui_problem


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
        single = urllib.request.urlopen(base + "/frame.jpg", timeout=5).read()
        assert cv2.imdecode(np.frombuffer(single, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
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
    with pytest.raises(Exception) as info:
        load_config(cfg, check=True)
    msg = str(info.value)
    assert msg.startswith(f"{cfg}:5:13: pipelines.cam.sinks[0]: the 'display' sink needs OpenCV with GUI support")
    assert "pip uninstall -y opencv-python-headless && pip install opencv-python" in msg
    assert "{preview: {port: 8090}}" in msg
    with pytest.raises(Exception, match="no display"):
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
    ([], "streamcnn needs ONNX Runtime, and none is installed. Run: pip install 'streamcnn[cpu]'"),
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
