"""The dashboard in a real headless Chromium (Debian's package): the pipelines are listed by its
script, and its live image is the pipeline's current frame; live views encode once per frame."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import wait_until, write

pytest.importorskip("starlette", reason="the control server needs starlette and uvicorn (pip install -e .)")
from streamcnn.metrics import Metrics  # noqa: E402
from streamcnn.server import ControlServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=90)


@pytest.fixture
def served(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          lobby:
            source: {uri: pattern, size: 320x240, fps: 10, frames: null, realtime: true}
          garage:
            source: {uri: pattern, size: 320x240, fps: 5, frames: null, realtime: true}
            stages: [{edges: {kernel: sobel}}]
        """)
    engine = Engine(load_config(cfg))
    metrics = Metrics()
    metrics.attach(engine.runs)
    server = ControlServer(lambda: engine.runs, metrics, "127.0.0.1", 0).start()
    engine.start()
    assert wait_until(lambda: all(r.stats.frames >= 3 for r in engine.runs), 30)
    yield engine, server
    engine.stop()
    engine.wait()
    server.stop()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (apt-get install chromium; .ci/run installs it)")
def test_the_dashboard_lists_the_pipelines_and_shows_their_current_frames(served, tmp_path):
    engine, server = served
    dom = _chromium("--timeout=3000", "--dump-dom", f"{server.url}/")
    assert "<td>lobby</td>" in dom.stdout and "<td>garage</td>" in dom.stdout, dom.stdout[-2000:]  # by its script
    assert '<td class="running">running</td>' in dom.stdout
    # the frames each pipeline produces while Chromium loads the page and takes the screenshot
    samples: dict[str, list[np.ndarray]] = {r.name: [] for r in engine.runs}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            for name, frames in samples.items():
                with urllib.request.urlopen(f"{server.url}/api/pipelines/{name}/frame.jpg", timeout=10) as resp:
                    frames.append(cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR))
            sampling.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    shot = tmp_path / "dashboard.png"
    r = _chromium("--timeout=3000", "--window-size=1100,700", f"--screenshot={shot}", f"{server.url}/")
    sampling.set()
    sampler.join(10)
    assert shot.is_file(), r.stderr[-2000:]
    page = cv2.imread(str(shot))
    cv2.imwrite(str(Path(tempfile.gettempdir()) / "streamcnn-dashboard-test.png"), page)  # to look at
    for name, frames in samples.items():
        assert len(frames) >= 10
        # where the page shows the pipeline's frame (320 px wide, 1:1), and which of its frames it is
        best, at = -1.0, None
        for frame in frames:
            score = cv2.matchTemplate(page, frame, cv2.TM_CCOEFF_NORMED)
            _, value, _, loc = cv2.minMaxLoc(score)
            if value > best:
                best, at = value, (loc, frame)
        (x, y), frame = at
        crop = page[y:y + frame.shape[0], x:x + frame.shape[1]]
        assert best > 0.95, (name, best)  # one of the frames it produced meanwhile, to the pixel nearly
        assert crop.std() > 20  # not a blank box
        assert np.abs(crop.astype(int) - frame.astype(int)).mean() < 6, name


def test_live_views_encode_each_frame_once_whatever_the_viewers(served):
    engine, server = served
    lobby = engine.find("lobby")
    got = [0, 0, 0]
    stop = threading.Event()

    def watch(k: int) -> None:
        try:
            with urllib.request.urlopen(f"{server.url}/api/pipelines/lobby/live.mjpg", timeout=10) as resp:
                while not stop.is_set():
                    line = resp.readline()
                    if line.startswith(b"Content-Length:"):
                        resp.read(int(line.split()[1]) + 4)
                        got[k] += 1
        except (OSError, http.client.HTTPException):  # the server went away at the end of the test
            pass

    threads = [threading.Thread(target=watch, args=(k,), daemon=True) for k in range(3)]
    start = lobby.frame_seq
    for t in threads:
        t.start()
    assert wait_until(lambda: min(got) >= 8, 30), got
    stop.set()
    seen = lobby.frame_seq - start
    view = server.app.state.view
    # three viewers, one JPEG per frame (+1: the frame current when they connected)
    assert view.encoded <= seen + 2, (view.encoded, seen, got)
    assert engine.find("garage").stats.frames > 0
    for t in threads:
        t.join(15)
