"""Live sources under faults, against a real RTSP server (tools/rtsp_loop.py) and real TCP "black
holes" (servers that accept a connection and never answer) on 127.0.0.1: hung cameras never hold
up another camera, stop is quick whatever the cameras do, lag is measured and reported, and pts
come from the stream.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from streamcnn import Context
from streamcnn.engine.reader import SourceReader
from streamcnn_plugins.sources import NetworkStreamSource

from .conftest import take_frames, wait_until, write
from .test_rtsp import RtspServer, _why

pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)

    def url(self, path: str = "x") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def server():
    srv = RtspServer()
    yield srv
    srv.kill()


@pytest.fixture
def black_hole():
    bh = BlackHole()
    yield bh
    bh.close()


def reader_for(url: str, pipeline: str, policy: str = "all", **opts) -> SourceReader:
    params = NetworkStreamSource.Params(uri=url, **{"stall_timeout": 2.0, "open_timeout": 3.0,
                                                    "backoff_initial": 0.2, "backoff_max": 0.5, **opts})
    return SourceReader(NetworkStreamSource(params, Context("stream", pipeline)), policy, 1000, pipeline)


def first_frame_after(reader: SourceReader) -> float:
    t0 = time.monotonic()
    reader.start()
    reader.get(timeout=20)
    return time.monotonic() - t0


def streamcnn_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("streamcnn-"))


def test_three_hung_cameras_never_hold_up_a_healthy_one(server, black_hole):
    url = server.start(0)
    alone = reader_for(url, "alone")
    try:
        connect = first_frame_after(alone)  # the normal connect time of this camera
    finally:
        alone.stop()
        alone.join(5)
    base_threads = streamcnn_threads()
    hung = [reader_for(black_hole.url(f"cam{i}"), f"hung{i}", open_timeout=1.0, stall_timeout=1.0) for i in range(3)]
    healthy = reader_for(url, "healthy")
    try:
        for r in hung:
            r.start()
        time.sleep(0.3)  # their opens are in flight now
        took = first_frame_after(healthy)
        assert took <= connect + 1.0, (took, connect)
        # full rate: the server sends 25 frames/s; count 4 s of frames after the first
        n, t_end = 0, time.monotonic() + 4.0
        while time.monotonic() < t_end:
            healthy.get(timeout=5)
            n += 1
        assert n >= 0.9 * 25 * 4, n
        # the hung cameras keep retrying for 2 minutes: threads stay bounded (per reader: its own
        # thread, the current attempt and at most one abandoned attempt)
        counts = []
        t_end = time.monotonic() + 120.0
        while time.monotonic() < t_end:
            counts.append(streamcnn_threads() - base_threads)
            while True:  # keep the healthy camera drained
                try:
                    healthy.get(timeout=0.01)
                except Exception:  # noqa: BLE001 - BufferEmpty
                    break
            time.sleep(1.0)
        assert max(counts) <= 4 * 3, counts
        assert all(r.frames == 0 and r.last_error for r in hung)
        assert len(black_hole.conns) >= 3 * 10  # they did keep retrying
        assert healthy.error is None and healthy.reconnects == 0
    finally:
        for r in hung + [healthy]:
            r.stop()


def run_streamcnn(cfg: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamcnn", "run", str(cfg), *args], cwd=cfg.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_closes_sinks_within_2_s_while_a_camera_open_hangs(tmp_path, black_hole, sig):
    cfg = write(tmp_path / "p.yaml", f"""
        pipelines:
          cam:
            source: {{uri: "{black_hole.url()}", stall_timeout: 20, open_timeout: 20}}
            sinks: [{{jsonl: {{path: cam.jsonl}}}}]
          pat:
            source: {{uri: pattern, size: 64x48, frames: null, realtime: true}}
            sinks: [{{video: {{path: pat.mp4}}}}, {{jsonl: {{path: pat.jsonl}}}}]
        """)
    proc = run_streamcnn(cfg)
    try:
        assert wait_until(lambda: len(lines(tmp_path / "pat.jsonl")) >= 10, 30)
        assert black_hole.conns  # the camera's open is hanging now
        t = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        proc.kill()
    assert took < 2.0, (took, err)
    assert "Traceback" not in err
    # the camera never delivered a frame: the run says so and fails
    assert proc.returncode == 1, err
    assert f"pipeline 'cam': source {black_hole.url()} never delivered a frame" in err
    records = [json.loads(line) for line in lines(tmp_path / "pat.jsonl")]  # every line complete
    cap = cv2.VideoCapture(str(tmp_path / "pat.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(records) >= 10


SLOW_STAGE = """
    import time
    import streamcnn

    class Slow(streamcnn.Stage):
        '''Sleeps 200 ms per frame: a model too heavy for the camera's frame rate.'''

        def process(self, frame):
            time.sleep(0.2)
            return frame

    @streamcnn.hookimpl
    def streamcnn_stage_types():
        return {"slow": Slow}
    """


def test_policy_all_on_a_live_camera_reports_its_true_lag_and_warns_once(tmp_path, server):
    url = server.start(0)
    write(tmp_path / "slow.py", SLOW_STAGE)
    cfg = write(tmp_path / "p.yaml", f"""
        plugins: [./slow.py]
        pipelines:
          cam:
            source: {{uri: "{url}", policy: all, lag_warning: 2}}
            stages: [slow]
            sinks: [{{jsonl: {{path: cam.jsonl}}}}]
        """)
    proc = run_streamcnn(cfg, "-n", "40")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    warnings = [line for line in err.splitlines() if "behind" in line]
    assert len(warnings) == 1, err
    assert re.search(rf"live source {re.escape(url)} is [2-9]\.\d s behind \(\d+ frames queued\) under policy: all:",
                     warnings[0]), warnings[0]
    assert "use policy: latest (always the newest frame), a lighter model, or every: N" in warnings[0]
    records = [json.loads(line) for line in lines(tmp_path / "cam.jsonl")]
    assert len(records) == 40
    # 40 frames at 5 frames/s took about 8 s of wall time but cover 1.6 s of the camera's stream:
    # the last frame was about 6 s old when it was processed, and its capture time says so
    stats = eval(re.search(r"pipeline 'cam' stopped: (\{.*\})", err)[1])  # noqa: S307 - our own dict repr
    wall = records[-1]["capture_time"] - records[0]["capture_time"]
    stream = records[-1]["pts"] - records[0]["pts"]
    # capture times advance with the stream (1.6 s), not with the reading (8 s); the first second comes
    # as one burst, so the earliest capture times can only be placed up to that burst late
    assert stream - 0.6 <= wall <= stream + 0.05, (wall, stream)
    assert stats["lag_max"] >= 5.0, stats
    assert stats["queued_max"] >= 1 and stats["pts_discontinuities"] == 0


def test_stream_pts_are_the_streams_own_timestamps(server):
    url = server.start(0)
    for mode, exact in (("stream", True), ("arrival", False)):
        reader = reader_for(url, f"pts-{mode}", pts=mode)
        try:
            frames = take_frames(reader.start(), 40, 15.0)
        finally:
            reader.stop()
            reader.join(5)
        steps = [b.pts - a.pts for a, b in zip(frames, frames[1:], strict=False)]
        assert all(s > 0 for s in steps)
        if exact:  # the server stamps 25 frames/s: exactly 40 ms apart whatever the network did
            assert steps == pytest.approx([0.04] * len(steps), abs=1e-4)
        else:  # the reader's clock: the first second arrives as one burst
            assert min(steps) < 0.02, steps


def test_a_frozen_camera_is_reported_with_the_time_since_its_last_frame(server):
    url = server.start(0)
    events: list[tuple[float, str, dict]] = []
    params = NetworkStreamSource.Params(uri=url, stall_timeout=3.0, open_timeout=3.0, backoff_initial=5.0)
    src = NetworkStreamSource(params, Context("stream", "frozen"))
    reader = SourceReader(src, "latest", 1, "frozen", on_event=lambda e, d: events.append((time.monotonic(), e, d)))
    try:
        take_frames(reader.start(), 10, 15.0)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)  # frozen: the socket stays open, nothing comes
        frozen_at = time.monotonic()
        assert wait_until(lambda: events, 20)
        when, event, detail = events[0]
        said = float(re.match(r"no new frame for (\d+(?:\.\d+)?) s", detail["reason"])[1])
        assert event == "disconnected"
        assert said >= 3.0 and said >= (when - frozen_at) - 0.5, (said, when - frozen_at, detail)
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        reader.stop()


def test_a_dead_camera_without_reconnect_is_reported_once(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam:
            source: {uri: "rtsp://admin:pw@127.0.0.1:1/x", reconnect: false}
            sinks: [{jsonl: {path: cam.jsonl}}]
        """)
    proc = run_streamcnn(cfg)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    said = ("could not open stream rtsp://***@127.0.0.1:1/x (connection refused: nothing listens on that host "
            "and port) (reconnect: false)")
    log_lines = [line for line in err.splitlines() if said in line and " ERROR " in line]
    assert len(log_lines) == 1, err  # logged once (plus the one-line summary at the end)
    assert err.count(said) == 2 and err.rstrip().splitlines()[-2].endswith(said)


TIME_SOURCE = """
    import numpy as np
    import streamcnn

    class Clocked(streamcnn.Source):
        '''A live camera whose timestamps go back: a stray old frame, then a clock reset.'''

        live = True
        STAMPS = [1000.0, 1000.04, 1000.08, 1000.02, 1000.12, 1000.16, 10.0, 10.04, 10.08]

        def open(self):
            self.i = 0

        def read(self):
            if self.i >= len(self.STAMPS):
                return None
            self.i += 1
            return np.zeros((8, 8, 3), np.uint8), self.STAMPS[self.i - 1]

    @streamcnn.hookimpl
    def streamcnn_source_types():
        return {"clocked": Clocked}
    """


@pytest.mark.parametrize("policy, frames", [("drop", 8), ("restamp", 9)])
def test_timestamps_going_back_are_counted_in_the_stats_and_summary(tmp_path, policy, frames):
    write(tmp_path / "clocked.py", TIME_SOURCE)
    cfg = write(tmp_path / "p.yaml", f"""
        plugins: [./clocked.py]
        pipelines:
          cam:
            source: {{uri: x, type: clocked, policy: all, reconnect: false, pts_policy: {policy}, pts_reset: 5}}
            sinks: [{{jsonl: {{path: cam.jsonl}}}}]
        """)
    proc = run_streamcnn(cfg)
    _, err = proc.communicate(timeout=60)
    records = [json.loads(line) for line in lines(tmp_path / "cam.jsonl")]
    pts = [r["pts"] for r in records]
    # 990 s back (1000.16 -> 10.0) is a clock reset: re-based; 60 ms back (1000.08 -> 1000.02) is a stray frame
    assert len(records) == frames and all(b > a for a, b in zip(pts, pts[1:], strict=False)), pts
    assert f"cam: {frames} frames in" in err and ", 2 pts discontinuities" in err, err
    assert "'pts_discontinuities': 2" in err
