"""The control plane (issue 13, first part): Prometheus metrics read from the pipelines' own counters,
health and readiness, the read-only pipelines API, the token for other addresses — over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from streamcnn.config import load_config
from streamcnn.engine import Engine
from streamcnn.errors import StreamcnnError

from .conftest import run_cli, wait_until, write

pytest.importorskip("starlette", reason="the control server needs starlette and uvicorn (pip install -e .)")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from streamcnn.metrics import Metrics  # noqa: E402
from streamcnn.server import ControlServer, load_token, parse_address  # noqa: E402


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _samples(text: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _serve(cfg, **kw):
    engine = Engine(load_config(cfg))
    metrics = Metrics()
    metrics.attach(engine.runs)
    for r in engine.runs:
        r.metrics = metrics
    server = ControlServer(lambda: engine.runs, metrics, "127.0.0.1", 0, **kw).start()
    return engine, server


def test_metrics_move_during_the_run_and_agree_with_its_summary_at_the_end(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam:
            source: {uri: pattern, size: 64x48, fps: 50, frames: 150, realtime: true}
            stages: [{edges: {kernel: sobel}}]
            sinks: [{jsonl: {path: out.jsonl}}]
        """)
    engine, server = _serve(cfg)
    try:
        engine.start()
        assert wait_until(lambda: engine.runs[0].stats.frames >= 20, 30)
        status, body = _get(f"{server.url}/metrics")
        assert status == 200
        mid = _samples(body)
        assert 20 <= mid[("streamcnn_frames_processed_total", (("pipeline", "cam"),))] < 150
        assert mid[("streamcnn_source_up", (("pipeline", "cam"),))] == 1.0
        assert mid[("streamcnn_fps", (("pipeline", "cam"),))] == pytest.approx(50, rel=0.3)  # realtime: 50 fps
        status, ready = _get(f"{server.url}/readyz")
        assert status == 200 and json.loads(ready) == {"ready": True, "pipelines": {"cam": "running"}}
        engine.wait()
        stats = engine.runs[0].stats
        end = _samples(_get(f"{server.url}/metrics")[1])
        cam = (("pipeline", "cam"),)
        assert end[("streamcnn_frames_processed_total", cam)] == stats.frames == 150
        assert end[("streamcnn_frames_read_total", cam)] == 150
        assert end[("streamcnn_frames_dropped_total", cam)] == stats.dropped
        assert end[("streamcnn_frames_skipped_total", cam)] == stats.skipped == 0
        assert end[("streamcnn_reconnects_total", cam)] == stats.reconnects == 0
        assert end[("streamcnn_stage_duration_seconds_count", (("pipeline", "cam"), ("stage", "edges")))] == 150
        assert end[("streamcnn_frame_age_seconds_count", cam)] == 150
        assert end[("streamcnn_model_info", (("pipeline", "cam"), ("provider", "CPUExecutionProvider"),
                                             ("stage", "edges")))] == 1.0
        assert end[("streamcnn_source_up", cam)] == 0.0  # stopped
        status, ready = _get(f"{server.url}/readyz")
        assert status == 200 and json.loads(ready) == {"ready": True, "pipelines": {"cam": "stopped"}}  # ended by itself
        status, body = _get(f"{server.url}/api/pipelines")
        (snap,) = json.loads(body)
        assert (snap["name"], snap["state"], snap["source"], snap["frames_processed"], snap["error"]) == (
            "cam", "stopped", "pattern", 150, None)
        assert snap["providers"] == {"edges": "CPUExecutionProvider"}
    finally:
        engine.stop()
        server.stop()


def test_events_and_sink_counters_are_metrics_and_credentials_never_show(tmp_path):
    write(tmp_path / "emit.py", '''
import streamcnn

class Emit(streamcnn.Stage):
    def process(self, frame):
        if frame.index % 5 == 0:
            self.ctx.emit("crossed", frame, zone="door")
        return frame

@streamcnn.hookimpl
def streamcnn_stage_types():
    return {"emit": Emit}
''')
    cfg = write(tmp_path / "p.yaml", """
        plugins: [./emit.py]
        pipelines:
          cam:
            source: {uri: pattern, size: 32x24, frames: 20}
            stages: [emit]
            sinks: [{mqtt: {port: 9, qos: 0, flush_timeout: 0}}]
          dead:
            source: {uri: "rtsp://admin:s3cret@127.0.0.1:9/stream", backoff_initial: 5, open_timeout: 1}
        """)
    engine, server = _serve(cfg)
    try:
        engine.start()
        assert wait_until(lambda: engine.runs[0].state == "stopped", 30)
        text = _get(f"{server.url}/metrics")[1]
        samples = _samples(text)
        assert samples[("streamcnn_events_total", (("pipeline", "cam"), ("type", "crossed")))] == 4
        assert samples[("streamcnn_sink_dropped_total", (("pipeline", "cam"), ("sink", "mqtt")))] == 4  # no broker
        assert samples[("streamcnn_sink_published_total", (("pipeline", "cam"), ("sink", "mqtt")))] == 0
        status, body = _get(f"{server.url}/api/pipelines/dead")
        snap = json.loads(body)
        assert status == 200 and snap["state"] == "connecting" and snap["source"] == "rtsp://***@127.0.0.1:9/stream"
        everything = text + _get(f"{server.url}/api/pipelines")[1]
        assert b"s3cret" not in everything and b"admin" not in everything
        status, body = _get(f"{server.url}/api/pipelines/nope")
        assert status == 404 and json.loads(body) == {"error": "no pipeline named 'nope'", "pipelines": ["cam", "dead"]}
        schema = json.loads(_get(f"{server.url}/openapi.json")[1])
        assert {"/healthz", "/readyz", "/metrics", "/api/pipelines", "/api/pipelines/{name}"} <= set(schema["paths"])
    finally:
        engine.stop()
        engine.wait()
        server.stop()


def test_a_token_guards_every_route_but_healthz(tmp_path):
    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam: {source: {uri: pattern, size: 32x24, frames: 5}}
        """)
    engine, server = _serve(cfg, token="t0ken-4711")
    try:
        assert _get(f"{server.url}/healthz")[0] == 200
        status, body = _get(f"{server.url}/api/pipelines")
        assert status == 401 and json.loads(body) == {
            "error": "send the token: Authorization: Bearer TOKEN (in a browser: open /?token=TOKEN once)"}
        assert _get(f"{server.url}/metrics", "wrong")[0] == 401
        assert _get(f"{server.url}/metrics", "t0ken-4711")[0] == 200
    finally:
        server.stop()


def test_addresses_and_tokens(tmp_path, monkeypatch):
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(StreamcnnError, match=r"^--serve 'x': expected PORT or HOST:PORT \(e.g. 8080, "):
        parse_address("x")
    monkeypatch.delenv("STREAMCNN_TOKEN", raising=False)
    assert load_token("127.0.0.1") is None
    with pytest.raises(StreamcnnError) as info:
        load_token("0.0.0.0")
    assert str(info.value) == (
        "--serve on 0.0.0.0: the control server answers other machines there, so it needs a token: set "
        "STREAMCNN_TOKEN or give --token-file FILE (clients then send 'Authorization: Bearer TOKEN'), or serve on "
        "127.0.0.1")
    monkeypatch.setenv("STREAMCNN_TOKEN", " abc ")
    assert load_token("0.0.0.0") == "abc"
    (tmp_path / "tok").write_text("from-file\n")
    assert load_token("0.0.0.0", str(tmp_path / "tok")) == "from-file"


def test_the_cli_serves_until_ctrl_c_and_refuses_an_open_address_without_a_token(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys

    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          cam: {source: {uri: pattern, size: 32x24, frames: 5}, sinks: [{jsonl: {path: cam.jsonl}}]}
        """)
    proc = subprocess.Popen([sys.executable, "-m", "streamcnn", "run", str(cfg), "--serve", "127.0.0.1:0"],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            m = re.search(r"control server on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "no control server line"
        # the pipeline ends, the server stays up for more
        assert wait_until(lambda: json.loads(_get(f"{url}/api/pipelines")[1])[0]["state"] == "stopped", 30)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0, out
        assert "cam: 5 frames" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
    r = run_cli("run", str(cfg), "--serve", "0.0.0.0:0", cwd=tmp_path, env={"STREAMCNN_TOKEN": ""})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--serve on 0.0.0.0: the control server answers other machines there, so it needs a token" in r.stderr
    assert not os.path.exists(tmp_path / "never")


def _post(url: str, body: str, method: str = "POST") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body.encode(), method=method, headers={"Content-Type": "application/yaml"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_pipelines_are_added_deleted_and_restarted_through_the_api_without_touching_the_others(tmp_path):
    from streamcnn.server import EngineControl

    cfg = write(tmp_path / "p.yaml", """
        pipelines:
          one:
            source: {uri: pattern, size: 32x24, fps: 50, frames: null, realtime: true}
            sinks: [{jsonl: {path: out/one.jsonl}}]
        """)
    config = load_config(cfg)
    engine = Engine(config)
    metrics = Metrics()
    metrics.attach(engine.runs)
    engine.metrics = metrics
    control = EngineControl(engine, config)
    server = ControlServer(control.runs, metrics, "127.0.0.1", 0, control=control).start()
    api = f"{server.url}/api/pipelines"
    try:
        engine.start()
        one = engine.find("one")
        assert wait_until(lambda: one.stats.frames >= 10, 30)
        two = """
pipelines:
  two:
    source: {uri: pattern, size: 32x24, fps: 50, frames: null, realtime: true}
    stages: [{edges: {kernel: sobel}}]
    sinks: [{jsonl: {path: out/two.jsonl}}]
"""
        assert _post(api, two) == (201, {"added": ["two"]})
        assert wait_until(lambda: (engine.find("two") is not None and engine.find("two").stats.frames >= 10), 30)
        states = {p["name"]: p["state"] for p in json.loads(_get(api)[1])}
        assert states == {"one": "running", "two": "running"}
        assert _post(api, two) == (409, {"error": "a pipeline named 'two' is running; DELETE /api/pipelines/two "
                                             "first to start this definition"})
        # a file another running pipeline writes; a name the API cannot address; a run-wide section
        clash = two.replace("two:", "three:")
        assert _post(api, clash) == (409, {"error": f"its jsonl sink writes {tmp_path / 'out' / 'two.jsonl'}, which "
                                                    "the jsonl of the running pipeline 'two' writes too; give it its own"})
        status, body = _post(api, two.replace("two:", '"x/y":'))
        assert status == 422 and body["errors"][0]["message"].startswith("pipeline name 'x/y': a name cannot be")
        status, body = _post(api, "plugins: [./evil.py]\n" + two.replace("two:", "four:"))
        assert status == 422 and body["errors"][0]["text"] == (
            f"<request>:1:1: plugins: plugins: applies to the whole run: give it in {cfg} (a posted definition has "
            "only pipelines:)")
        assert _get(f"{server.url}/api/nothing")[0] == 404 and json.loads(_get(f"{server.url}/api/nothing")[1]) == {
            "error": "GET /api/nothing: Not Found"}
        # an invalid definition: 422 with exactly the messages `streamcnn validate` gives for it
        bad = two.replace("two:", "bad:").replace("kernel: sobel", "kernl: sobel")
        status, body = _post(api, bad)
        assert status == 422
        (tmp_path / "bad.yaml").write_text(bad)
        with pytest.raises(Exception) as info:
            load_config(tmp_path / "bad.yaml", check=True)
        assert [e["text"] for e in body["errors"]] == [str(info.value).replace(str(tmp_path / "bad.yaml"), "<request>")]
        assert body["errors"][0]["path"] == "pipelines.bad.stages[0].edges.kernl" and body["errors"][0]["line"] == 5
        # delete: stopped gracefully, its file complete; the first pipeline never stopped
        before = one.stats.frames
        status, final = _post(f"{api}/two", "", method="DELETE")
        assert status == 200 and final["state"] == "stopped" and final["error"] is None
        lines = (tmp_path / "out" / "two.jsonl").read_text().splitlines()
        assert len(lines) == final["frames_processed"] >= 10 and [json.loads(x)["index"] for x in lines] == \
            list(range(len(lines)))
        assert engine.find("two") is None and {p["name"] for p in json.loads(_get(api)[1])} == {"one"}
        assert one.stats.frames >= before and one.state == "running" and engine.find("one") is one
        assert _post(f"{api}/two", "", method="DELETE")[0] == 404
        # restart: a new run of `one` (its counters start again), nothing else changes
        status, snap = _post(f"{api}/one/restart", "")
        assert status == 200 and snap["stopped"]["name"] == snap["started"]["name"] == "one"
        assert snap["stopped"]["state"] == "stopped" and snap["stopped"]["frames_processed"] >= 10
        assert engine.find("one") is not one and one.state == "stopped"
        assert wait_until(lambda: engine.find("one").stats.frames >= 5, 30)
    finally:
        engine.stop()
        engine.wait()
        server.stop()


def test_editing_the_watched_file_applies_the_difference_and_an_invalid_edit_is_ignored(tmp_path, caplog):
    import logging

    from streamcnn.watch import ConfigWatcher

    one = """
          one:
            source: {uri: pattern, size: 32x24, fps: 50, frames: null, realtime: true}
            sinks: [{jsonl: {path: out/one.jsonl}}]
"""
    cfg = tmp_path / "p.yaml"
    cfg.write_text("pipelines:" + one)
    config = load_config(cfg)
    engine = Engine(config)
    watcher = ConfigWatcher(cfg, engine, config, interval=0.1)
    try:
        engine.start()
        first = engine.find("one")
        assert wait_until(lambda: first.stats.frames >= 10, 30)
        # add `two`, leave `one` as it was
        cfg.write_text("pipelines:" + one + one.replace("one", "two"))
        with caplog.at_level(logging.INFO, logger="streamcnn.watch"):
            assert watcher.check()
        assert engine.find("one") is first and first.state == "running"  # undisturbed: same run
        two = engine.find("two")
        assert two is not None and wait_until(lambda: two.stats.frames >= 5, 30)
        # an invalid edit: reported, nothing changes
        frames = first.stats.frames
        cfg.write_text("pipelines:" + one + one.replace("one", "two").replace("fps: 50", "fps: -5"))
        with caplog.at_level(logging.INFO, logger="streamcnn.watch"):
            assert not watcher.check()
        assert watcher.rejected == 1 and engine.find("two") is two and two.state == "running"
        assert "p.yaml changed but is not valid; nothing was applied, the pipelines keep running:" in caplog.text
        assert "pipelines.two.source.fps: expected a number > 0, got -5" in caplog.text
        # change `two`, remove nothing: `two` restarts, `one` goes on counting
        cfg.write_text("pipelines:" + one + one.replace("one", "two").replace("32x24", "64x48"))
        assert watcher.check()
        assert engine.find("two") is not two and two.state == "stopped"
        assert engine.find("one") is first and first.stats.frames >= frames
        assert wait_until(lambda: engine.find("two").stats.frames >= 5, 30)
        # remove `two`: stopped, its file complete
        cfg.write_text("pipelines:" + one)
        assert watcher.check()
        assert engine.find("two") is None and engine.find("one") is first
        lines = (tmp_path / "out" / "two.jsonl").read_text().splitlines()
        assert lines and all(json.loads(x)["width"] == 64 for x in lines)
        assert "pipeline 'two' added to" in caplog.text
    finally:
        engine.stop()
        engine.wait()


def test_the_cli_applies_edits_of_the_watched_file(tmp_path):
    import re
    import signal
    import subprocess
    import sys

    one = """
  one:
    source: {uri: pattern, size: 32x24, fps: 20, frames: null, realtime: true}
    sinks: [{jsonl: {path: one.jsonl}}]
"""
    cfg = tmp_path / "p.yaml"
    cfg.write_text("pipelines:" + one)
    proc = subprocess.Popen([sys.executable, "-m", "streamcnn", "run", str(cfg), "--serve", "127.0.0.1:0", "--watch"],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            m = re.search(r"control server on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url

        def frames(name):
            snaps = {p["name"]: p for p in json.loads(_get(f"{url}/api/pipelines")[1])}
            return snaps[name]["frames_processed"] if name in snaps else None

        assert wait_until(lambda: (frames("one") or 0) >= 5, 30)
        cfg.write_text("pipelines:" + one + one.replace("one", "two"))
        assert wait_until(lambda: (frames("two") or 0) >= 3, 30)
        before = frames("one")
        assert before >= 5 and frames("one") >= before  # the first one went on, never reset
        cfg.write_text("pipelines:" + one)
        assert wait_until(lambda: frames("two") is None, 30)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0, out
        assert "pipeline 'two' added to" in out and "pipeline 'two' removed from" in out
        lines = (tmp_path / "two.jsonl").read_text().splitlines()
        assert lines and all(json.loads(x) for x in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
