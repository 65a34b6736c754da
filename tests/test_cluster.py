"""``streamcnn run --ray``: pipelines as actors on a real local Ray cluster (``ray start --head``).

The cluster is started once for this module (3 CPUs, no dashboard) and stopped after it. Marked
``ray``: ``pytest -m ray`` runs these alone, ``-m 'not ray'`` leaves them out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import cv2
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


@contextlib.contextmanager
def _serving(cwd: Path, port: int):
    """``streamcnn run p.yaml --serve 127.0.0.1:PORT`` in ``cwd``; killed on the way out if it still runs."""
    proc = _run(["p.yaml", "--serve", f"127.0.0.1:{port}"], cwd)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _terminate(proc: subprocess.Popen) -> str:
    """SIGTERM to the driver; its stderr once it has ended."""
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=120)[1]


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
    with _serving(tmp_path, port) as proc:
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
        err = _terminate(proc)
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


GROUPED = """
  c:
    source: {uri: pattern, size: 160x120, fps: 10, frames: null, realtime: true}
    sinks: [{jsonl: {path: out/c.jsonl}}]
    group: g
    resources: {cpus: 0.25}
  d:
    source: {uri: pattern, size: 160x120, fps: 10, frames: null, realtime: true}
    sinks: [{jsonl: {path: out/d.jsonl}}]
    group: g
    resources: {cpus: 0.25}
"""


def _request(port: int, method: str, path: str, body: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=body.encode() if body is not None else None,
                                 headers={"Content-Type": "application/yaml"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_a_pipeline_that_keeps_dying_fails_after_max_restarts_and_the_others_go_on(cluster, tmp_path):
    """max_restarts: 1 and two kills: the pipeline is failed (exit code 1, the message names the
    restarts); the others run on. Through the API: one pipeline of a group is deleted while the
    other goes on in the same actor, a posted pipeline gets an actor of its own, and the dashboard's
    frame of a pipeline comes from its actor."""
    write(tmp_path / "p.yaml", ENDLESS.format(address=cluster, restarts=1, b_frames=200) + GROUPED)
    port = _free_port()
    with _serving(tmp_path, port) as proc:
        snap = _wait_for(port, lambda s: all((p.get("last_index") or 0) > 5 for p in s.values()))
        assert snap["c"]["pid"] == snap["d"]["pid"] != snap["a"]["pid"]  # one actor for the group
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/pipelines/b/frame.jpg", timeout=30) as r:
            jpeg = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert jpeg.shape == (240, 320, 3)
        status, body = _request(port, "DELETE", "/api/pipelines/c")
        assert status == 200 and body["state"] == "stopped", body
        d_then = _api(port)["d"]["last_index"]
        status, body = _request(port, "POST", "/api/pipelines",
                                "pipelines:\n  e: {source: {uri: pattern, frames: 20}, sinks: [{jsonl: {path: out/e.jsonl}}]}\n")
        assert status in (200, 201), body
        for restarts in (0, 1):
            snap = _wait_for(port, lambda s, k=restarts: s["a"]["restarts"] == k and s["a"]["state"] == "running"
                             and s["a"]["pid"])
            os.kill(snap["a"]["pid"], signal.SIGKILL)
        snap = _wait_for(port, lambda s: s["a"]["state"] == "failed" and s["b"]["state"] == "stopped"
                         and s["e"]["state"] == "stopped")
        assert "Ray gave up after 1 restart(s) (cluster.max_restarts: 1)" in snap["a"]["error"]
        assert snap["b"]["frames_processed"] == 200 and snap["e"]["frames_processed"] == 20
        assert "c" not in snap and snap["d"]["state"] == "running" and snap["d"]["last_index"] > d_then
        assert snap["e"]["pid"] not in (snap["d"]["pid"], snap["b"]["pid"])
        err = _terminate(proc)
    assert proc.returncode == 1, err[-3000:]
    assert "pipeline 'a': its actor died and Ray gave up after 1 restart(s)" in err
    assert len(_lines(tmp_path / "out/b.jsonl")) == 200 and len(_lines(tmp_path / "out/e.jsonl")) == 20
    c, d = _lines(tmp_path / "out/c.jsonl"), _lines(tmp_path / "out/d.jsonl")
    assert [r["index"] for r in c] == list(range(len(c))) and len(d) > len(c)  # c closed whole; d went on
    assert _actors(cluster) == []


def test_ray_address_that_does_not_answer_is_a_clear_error(tmp_path):
    write(tmp_path / "p.yaml", "pipelines:\n  a: {source: {uri: pattern, frames: 5}}\n")
    port = _free_port()
    proc = _run(["p.yaml", "--ray", f"127.0.0.1:{port}"], tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert f"--ray 127.0.0.1:{port}: cannot connect to the Ray cluster: nothing answers at" in err
    assert "Traceback" not in err


def test_a_lost_node_s_pipelines_are_restarted_on_another_node(tmp_path, monkeypatch):
    """A real two-node cluster on this machine (Ray's ``cluster_utils.Cluster``: a head without
    CPUs, one worker node): the worker node is removed (its raylet and worker processes die, as
    when a machine is lost) and a new node joins; Ray restarts both actors there and both
    pipelines go on from the next frame."""
    from ray.cluster_utils import Cluster

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    ray_cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        first = ray_cluster.add_node(num_cpus=2)
        write(tmp_path / "p.yaml", ENDLESS.format(address=ray_cluster.address, restarts=2, b_frames="null"))
        port = _free_port()
        with _serving(tmp_path, port) as proc:
            snap = _wait_for(port, lambda s: all((p.get("last_index") or 0) >= 25 for p in s.values()))
            lost = snap["a"]["ray_node"]
            assert lost == snap["b"]["ray_node"] == first.node_id
            ray_cluster.remove_node(first)  # the node is lost: its processes are killed
            _wait_for(port, lambda s: all(p["state"] == "restarting" for p in s.values()), 60)
            second = ray_cluster.add_node(num_cpus=2)
            snap = _wait_for(port, lambda s: all(p["restarts"] == 1 and p["state"] == "running"
                                                 and (p["last_index"] or 0) > 40 for p in s.values()))
            assert snap["a"]["ray_node"] == snap["b"]["ray_node"] == second.node_id != lost
            err = _terminate(proc)
        assert proc.returncode == 0, err[-3000:]
        for name in ("a", "b"):
            rows = _lines(tmp_path / f"out/{name}.jsonl")
            assert [r["index"] for r in rows] == list(range(len(rows)))
            assert _increasing(rows, "pts")
        assert _actors(ray_cluster.address) == []
    finally:
        ray_cluster.shutdown()
