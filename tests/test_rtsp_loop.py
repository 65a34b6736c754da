"""Issue 9 item 23: tools/rtsp_loop.py loops an H.264 file seamlessly (as is and with ``--reencode``) and,
started with an interpreter without PyGObject, says which Python to use and exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from .test_rtsp import SERVER, SYSTEM_PYTHON, _gst_rtsp_available

FRAMES = 25  # one second at 25 fps per pass


def test_other_python_is_told_to_use_debians(tmp_path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import gi"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{sys.executable} has PyGObject: the message is for interpreters without it")
    r = subprocess.run([sys.executable, str(SERVER), "0", "cam", "testsrc"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("tools/rtsp_loop.py: run me with /usr/bin/python3 (needs python3-gi and "
                               "GStreamer's RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "), r.stderr
    assert r.stderr.rstrip().endswith(f"{sys.executable} cannot load it: No module named 'gi'"), r.stderr


def _h264_clip(path: Path) -> Path:
    """A 1 s 320x240 H.264 .mp4 (a bar moving right), written with PyAV's libx264."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"g": "25", "bf": "0"}
        for i in range(FRAMES):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, i * 12:i * 12 + 12] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("reencode", [False, True], ids=["as-is", "reencode"])
def test_h264_file_loops_seamlessly(tmp_path, reencode: bool) -> None:
    why = _gst_rtsp_available()
    if why:
        pytest.skip(why)
    clip = _h264_clip(tmp_path / "clip.mp4")
    proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "0", "cam", str(clip), *(["--reencode"] if reencode else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving rtsp://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else line
        url = line.split()[-1]
        want = 2 * FRAMES + 10  # more than two passes
        pts: list[int] = []
        with av.open(url, options={"rtsp_transport": "tcp", "timeout": "10000000"}) as cap:
            for frame in cap.decode(cap.streams.video[0]):
                pts.append(frame.pts)
                if len(pts) >= want:
                    break
        assert len(pts) == want, f"the stream ended after {len(pts)} frames"
        assert None not in pts[1:], pts  # FFmpeg's RTSP reader gives the very first frame no pts
        pts = pts[1:] if pts[0] is None else pts
        steps = np.diff(pts)
        assert (steps > 0).all(), f"timestamps do not increase at frames {np.flatnonzero(steps <= 0).tolist()}: {pts}"
        assert np.median(steps) == 3600  # 1/25 s in RTP's 90 kHz clock, across the loop too
    finally:
        proc.kill()
        proc.communicate(timeout=10)
