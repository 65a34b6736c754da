"""End to end against a real RTSP server (tools/rtsp_loop.py on GstRtspServer, loopback only):
reading, the camera dying and coming back on the same port, and a dead camera next to a live one.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from streamcnn import Context
from streamcnn.engine.reader import SourceReader
from streamcnn_plugins.sources import NetworkStreamSource

from .conftest import take_frames, wait_until

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = ROOT / "tools" / "rtsp_loop.py"


def _gst_rtsp_available() -> str | None:
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer','1.0')"],
        capture_output=True, text=True, timeout=30,
    )
    if probe.returncode != 0:
        return ("GstRtspServer not available to /usr/bin/python3 (apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad,ugly}): "
                + probe.stderr.strip()[-200:])
    return None


_why = _gst_rtsp_available()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")


class RtspServer:
    """tools/rtsp_loop.py in a subprocess; ``start(port)`` retries briefly while the port is busy."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.port = 0

    def start(self, port: int = 0, retry_for: float = 5.0) -> str:
        deadline = time.monotonic() + retry_for
        while True:
            proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(SERVER), str(port), "cam", "testsrc"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            line = proc.stdout.readline()  # "serving rtsp://127.0.0.1:PORT/cam", or "" if it exited
            if line.startswith("serving "):
                self.proc, self.url = proc, line.split()[-1]
                self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
                return self.url
            proc.kill()
            _, err = proc.communicate(timeout=5)
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start on port {port}: {err.strip()[-300:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate(timeout=5)
            self.proc = None


@pytest.fixture
def server():
    srv = RtspServer()
    yield srv
    srv.kill()


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, detail: dict) -> None:
        with self.lock:
            self.items.append((event, detail))

    def names(self) -> list[str]:
        with self.lock:
            return [e for e, _ in self.items]




def stream_reader(url: str, events: Events, pipeline: str) -> SourceReader:
    params = NetworkStreamSource.Params(
        uri=url, stall_timeout=2.0, backoff_initial=0.2, backoff_max=1.0, open_timeout=3.0, read_timeout=0.5
    )
    src = NetworkStreamSource(params, Context("stream", pipeline))
    return SourceReader(src, "latest", 1, pipeline, on_event=events).start()


def increasing(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:], strict=False))


def test_rtsp_read_disconnect_and_reconnect_on_same_port(server):
    url = server.start(0)
    events = Events()
    reader = stream_reader(url, events, "cam")
    try:
        before = take_frames(reader, 10, 15.0)
        assert before[0].image.shape == (240, 320, 3)
        assert reader.fps and reader.fps > 0
        assert [f.index for f in before] == sorted({f.index for f in before})  # never the same frame twice
        assert increasing([f.pts for f in before])

        port = server.port
        server.kill()  # the camera dies
        assert wait_until(lambda: "disconnected" in events.names(), 10), events.names()
        reason = events.items[0][1]["reason"]
        assert reason == "stream ended" or reason.startswith("no new frame for"), reason
        time.sleep(1.0)  # a few failed reconnect tries: still exactly one disconnected event
        assert events.names() == ["disconnected"]

        server.start(port)  # the camera comes back on the same port
        assert wait_until(lambda: "reconnected" in events.names(), 15), events.names()
        after = take_frames(reader, 10, 15.0)
        assert events.names() == ["disconnected", "reconnected"]
        assert reader.reconnects == 1
        assert after[0].index > before[-1].index  # index continues, never reset
        assert increasing([f.pts for f in before + after])
        assert increasing([f.index for f in before + after])
    finally:
        reader.stop()
        assert reader.join(5)


def test_dead_camera_does_not_stall_a_working_one(server, caplog):
    caplog.set_level(logging.DEBUG)
    url = server.start(0)
    dead_events, live_events = Events(), Events()
    dead = stream_reader("rtsp://user:pw@127.0.0.1:1/x", dead_events, "dead")
    live = stream_reader(url, live_events, "live")
    try:
        frames = take_frames(live, 25, 15.0)
        assert increasing([f.index for f in frames])
        assert wait_until(lambda: dead_events.names() == ["disconnected"], 10), dead_events.names()
        assert live_events.names() == []
        assert dead.frames == 0
        detail = dead_events.items[0][1]
        assert detail["source"] == "rtsp://***@127.0.0.1:1/x"
        assert detail["first_connect"] is True
        # refused at once: said so, no "within N s"
        assert "(connection refused: nothing listens on that host and port)" in detail["reason"] and "within" not in detail["reason"]
        assert "cannot connect to rtsp://***@127.0.0.1:1/x" in caplog.text
        assert "will keep retrying with backoff" in caplog.text
    finally:
        dead.stop()
        live.stop()
        assert dead.join(5) and live.join(5)
    assert dead_events.names() == ["disconnected"]  # retrying quietly, one event per outage
    text = caplog.text + repr(dead_events.items)
    assert "user:pw" not in text


def test_stop_of_a_live_stream_is_quiet_and_releases_the_capture(server, caplog):
    """SIGTERM / --max-frames: no false outage, no reconnect, and join() returns once released."""
    caplog.set_level(logging.DEBUG, logger="streamcnn")
    url = server.start(0)
    for _ in range(2):
        events = Events()
        reader = stream_reader(url, events, "cam")
        take_frames(reader, 5, 15.0)
        t = time.monotonic()
        reader.stop()
        assert time.monotonic() - t < 0.5  # stop() never blocks
        assert reader.join(5)
        time.sleep(0.3)  # anything late (an event, a reconnect attempt) would show up now
        assert events.names() == []
        assert reader.error is None and reader.reconnects == 0
    for word in ("disconnected", "reconnecting", "retrying", "cannot connect", "stream ended"):
        assert word not in caplog.text, caplog.text


EXIT_SCRIPT = """
import sys, time
from streamcnn import Context
from streamcnn.engine.buffer import BufferEmpty
from streamcnn.engine.reader import SourceReader
from streamcnn_plugins.sources import NetworkStreamSource

params = NetworkStreamSource.Params(uri=sys.argv[1], stall_timeout=2.0, open_timeout=3.0, read_timeout=0.5)
readers = [SourceReader(NetworkStreamSource(params, Context("stream", f"p{i}")), "latest", 1, f"p{i}").start()
           for i in range(2)]
for reader in readers:
    got, deadline = 0, time.monotonic() + 15
    while got < 5 and time.monotonic() < deadline:
        try:
            reader.get(timeout=0.2)
            got += 1
        except BufferEmpty:
            pass
    assert got == 5, reader.error
for reader in readers:
    reader.stop()  # like --max-frames: stop, then a normal interpreter exit
print("joined", all(reader.join(5) for reader in readers), flush=True)
"""


def test_process_exits_cleanly_after_stop_and_join(server):
    """A capture thread still inside FFmpeg at interpreter exit aborts the process (rc 134,
    "FATAL: exception not rethrown"); after stop() + join() none is left."""
    import sys

    url = server.start(0)
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, url], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "joined True" in proc.stdout
    assert "FATAL" not in proc.stderr


def test_ctrl_c_stops_a_pipeline_whose_camera_hangs(server, tmp_path):
    """The camera freezes (server SIGSTOPped, socket open); Ctrl-C still ends `streamcnn run`
    with exit 0, a playable mp4 and a complete last JSONL line; credentials never printed."""
    import json
    import signal
    import sys

    import cv2

    url = server.start(0).replace("rtsp://", "rtsp://admin:s3cret@")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "pipelines:\n  door:\n"
        f"    source: {{uri: '{url}', stall_timeout: 2, backoff_initial: 0.2}}\n"
        "    sinks: [{video: {path: out.mp4}}, {jsonl: {path: out.jsonl}}]\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "streamcnn", "run", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = tmp_path / "out.jsonl"
    assert wait_until(lambda: jsonl.exists() and len(jsonl.read_text().splitlines()) >= 10, 30)
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)  # a guard against hanging, not a speed limit
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert proc.returncode == 0, err
    assert "s3cret" not in err and "SIGINT received: stopping" in err
    text = jsonl.read_text()
    assert text.endswith("\n")
    n = len([json.loads(x) for x in text.splitlines()])
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == n >= 10
