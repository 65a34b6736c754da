"""``streamcnn run --ray``: pipelines as actors on a real local Ray cluster (``ray start --head``).

The cluster is started once for this module (3 CPUs, no dashboard) and stopped after it. Marked
``ray``: ``pytest -m ray`` runs these alone, ``-m 'not ray'`` leaves them out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest

from .conftest import wait_until, write
from .test_rtsp import RtspServer, _gst_rtsp_available

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

pytestmark = pytest.mark.ray
RAY = Path(sys.executable).with_name("ray")
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster on 127.0.0.1 (head node, 3 CPUs); its address."""
    port = _free_port()
    env = {**os.environ, **ENV}
    temp = tmp_path_factory.mktemp("ray")
    start = subprocess.run(
        [str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=3",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)


def _run(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamcnn", "run", *args], cwd=cwd, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as f:
        return [fr.to_ndarray(format="bgr24") for fr in f.decode(video=0)]


def _api(port: int) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/pipelines", timeout=5) as r:
        return {p["name"]: p for p in json.load(r)}


def _actors(address: str) -> list[dict]:
    """The named actors alive on the cluster (asked from a fresh driver process)."""
    code = (f"import json, ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(json.dumps(ray.util.list_named_actors(all_namespaces=True)))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **ENV}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


PATTERNS = """
pipelines:
  bars:
    source: {uri: pattern, size: 320x240, fps: 25, frames: 40}
    stages: [{edges: {}}]
    sinks: [{video: {path: out/bars.mp4}}, {jsonl: {path: out/bars.jsonl}}]
  small:
    source: {uri: pattern, size: 160x120, fps: 10, frames: 30}
    stages: [{edges: {}}]
    sinks: [{video: {path: "out/{node}/small.mp4"}}, {jsonl: {path: out/small.jsonl}}]
    group: shared
    resources: {cpus: 0.5}
"""


def _three(tmp: Path, url: str) -> Path:
    return write(tmp / "p.yaml", PATTERNS + f"""
  cam:
    source: {{uri: "{url}", policy: all}}
    stages: [{{edges: {{}}}}]
    sinks: [{{jsonl: {{path: out/cam.jsonl}}}}, {{video: {{path: out/cam.mp4}}}}]
    group: shared
    resources: {{cpus: 0.5}}
""")


@pytest.fixture
def rtsp():
    why = _gst_rtsp_available()
    if why:
        pytest.skip(why)
    srv = RtspServer()
    srv.start()
    yield srv
    srv.kill()


def test_three_pipelines_on_ray_match_a_run_without_it(cluster, rtsp, tmp_path):
    """Two pattern pipelines and an RTSP camera, two actors (one a group of two): every output is
    complete and equal to the same file run without Ray (pattern frames to the pixel, the camera's
    frame count and indices; its pictures are live)."""
    local, remote = tmp_path / "local", tmp_path / "ray"
    for folder in (local, remote):
        folder.mkdir()
        _three(folder, rtsp.url)
    base = _run(["p.yaml", "-n", "30"], local)
    out, err = base.communicate(timeout=300)
    assert base.returncode == 0, err[-3000:]
    proc = _run(["p.yaml", "-n", "30", "--ray", cluster], remote)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "2 actor(s)" in err and "3 pipeline(s)" in err
    node = socket.gethostname()
    for name, frames in (("bars", 30), ("small", 30), ("cam", 30)):
        mine, theirs = _lines(remote / "out" / f"{name}.jsonl"), _lines(local / "out" / f"{name}.jsonl")
        assert [r["index"] for r in mine] == list(range(frames)) == [r["index"] for r in theirs]
        if name != "cam":  # the camera's pts and capture times are its own each run
            drop = ("capture_time",)
            assert [{k: v for k, v in r.items() if k not in drop} for r in mine] == \
                   [{k: v for k, v in r.items() if k not in drop} for r in theirs]
    small = f"out/{node}/small.mp4"  # {node}: the node's host name
    for video in ("out/bars.mp4", small):
        a, b = _frames(remote / video), _frames(local / video)
        assert len(a) == len(b) == 30
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len(_frames(remote / "out/cam.mp4")) == 30
    assert "cam: 30 frames" in err and "bars: 30 frames" in err
    assert _actors(cluster) == []


ENDLESS = """
cluster: {{ray: "{address}", max_restarts: {restarts}}}
pipelines:
  a:
    source: {{uri: pattern, size: 320x240, fps: 25, frames: null, realtime: true}}
    stages: [{{edges: {{}}}}]
    sinks: [{{video: {{path: out/a.mp4, fragmented: true, fragment: 0.2}}}}, {{jsonl: {{path: out/a.jsonl}}}}]
  b:
    source: {{uri: pattern, size: 320x240, fps: 25, frames: {b_frames}, realtime: true}}
    stages: [{{edges: {{}}}}]
    sinks: [{{jsonl: {{path: out/b.jsonl}}}}]
"""


def _wait_for(port: int, pred, timeout: float = 120.0) -> dict[str, dict]:
    got: dict[str, dict] = {}

    def check() -> bool:
        nonlocal got
        try:
            got = _api(port)
        except OSError:
            return False
        return pred(got)

    assert wait_until(check, timeout, 0.2), got
    return got


def _increasing(rows: list[dict], key: str) -> bool:
    return all(b[key] > a[key] for a, b in zip(rows, rows[1:], strict=False))


def test_a_killed_actor_is_restarted_and_goes_on_and_sigterm_closes_everything(cluster, tmp_path):
    """kill -9 of one pipeline's worker process: Ray restarts it, the pipeline goes on from the
    next frame (indices and pts keep increasing, no frame twice), the other pipeline is not
    disturbed; then SIGTERM on the driver closes every sink (the mp4s play, every JSONL line is
    whole) and leaves no actor on the cluster."""
    write(tmp_path / "p.yaml", ENDLESS.format(address=cluster, restarts=2, b_frames="null"))
    port = _free_port()
    proc = _run(["p.yaml", "--serve", f"127.0.0.1:{port}"], tmp_path)
    try:
        snap = _wait_for(port, lambda s: all((p.get("last_index") or 0) >= 30 for p in s.values()))
        assert snap["a"]["node"] == snap["b"]["node"] == socket.gethostname()
        assert snap["a"]["pid"] != snap["b"]["pid"]  # one actor (process) each
        victim, other = snap["a"]["pid"], snap["b"]["pid"]
        b_before = snap["b"]["frames_processed"]
        time.sleep(0.5)  # a fragment or two on disk
        os.kill(victim, signal.SIGKILL)
        snap = _wait_for(port, lambda s: s["a"]["restarts"] == 1 and s["a"]["state"] == "running"
                         and s["a"]["pid"] != victim and (s["a"]["last_index"] or 0) > 60)
        assert snap["b"]["pid"] == other and snap["b"]["restarts"] == 0 and snap["b"]["state"] == "running"
        assert snap["b"]["frames_processed"] > b_before
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'streamcnn_restarts_total{pipeline="a"} 1.0' in metrics
        assert 'streamcnn_restarts_total{pipeline="b"} 0.0' in metrics
        assert f'streamcnn_pipeline_info{{node="{socket.gethostname()}",pipeline="a"}} 1.0' in metrics
        processed = re.search(r'streamcnn_frames_processed_total\{pipeline="a"\} (\d+)', metrics)
        assert int(float(processed.group(1))) >= snap["a"]["last_index"]  # counted across the restart
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "restarted by Ray" in err and "restart 1 of 2" in err
    a, b = _lines(tmp_path / "out/a.jsonl"), _lines(tmp_path / "out/b.jsonl")
    assert [r["index"] for r in a] == list(range(len(a)))  # went on from the next frame: none lost, none twice
    assert _increasing(a, "pts") and _increasing(b, "pts")
    assert [r["index"] for r in b] == list(range(len(b)))
    assert f"a: {len(a)} frames" in err and f"b: {len(b)} frames" in err  # counted across the restart, exactly
    first, second = _frames(tmp_path / "out/a.mp4"), _frames(tmp_path / "out/a-1.mp4")  # before / after the kill
    resumed = int(re.search(r"pipeline 'a': restarted on node \S+ \(attempt 1\), going on from frame (\d+)",
                            err).group(1))
    assert len(second) == len(a) - resumed  # every frame after the restart, closed gracefully
    assert 5 <= len(first) <= resumed  # the killed file plays up to its last fragment
    assert _actors(cluster) == []
    assert not _pid_alive(victim) and not _pid_alive(other)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_pipeline_that_keeps_dying_fails_after_max_restarts_and_the_others_go_on(cluster, tmp_path):
    """max_restarts: 1 and two kills: the pipeline is failed (exit code 1, the message names the
    restarts); the other one runs to its end."""
    yaml = ENDLESS.format(address=cluster, restarts=1, b_frames=200)
    write(tmp_path / "p.yaml", yaml)
    port = _free_port()
    proc = _run(["p.yaml", "--serve", f"127.0.0.1:{port}"], tmp_path)
    try:
        for restarts in (0, 1):
            snap = _wait_for(port, lambda s, k=restarts: s["a"]["restarts"] == k and s["a"]["state"] == "running"
                             and s["a"]["pid"])
            os.kill(snap["a"]["pid"], signal.SIGKILL)
        snap = _wait_for(port, lambda s: s["a"]["state"] == "failed" and s["b"]["state"] == "stopped")
        assert "Ray gave up after 1 restart(s) (cluster.max_restarts: 1)" in snap["a"]["error"]
        assert snap["b"]["frames_processed"] == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert "pipeline 'a': its actor died and Ray gave up after 1 restart(s)" in err
    assert len(_lines(tmp_path / "out/b.jsonl")) == 200
    assert _actors(cluster) == []


def test_ray_address_that_does_not_answer_is_a_clear_error(tmp_path):
    write(tmp_path / "p.yaml", "pipelines:\n  a: {source: {uri: pattern, frames: 5}}\n")
    port = _free_port()
    proc = _run(["p.yaml", "--ray", f"127.0.0.1:{port}"], tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert f"--ray 127.0.0.1:{port}: cannot connect to the Ray cluster: nothing answers at" in err
    assert "Traceback" not in err
