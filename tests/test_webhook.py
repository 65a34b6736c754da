"""The ``webhook`` event sink against a real HTTP server (``http.server`` in the test): exact
payloads, retries (5xx, 429, timeouts) and refusals (4xx), a server that is down (bounded queue,
close within flush_timeout, exact counts), credentials that never show."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streamcnn.config import load_config
from streamcnn.engine import Engine

from .conftest import run_cli, write
from .mqtt_broker import EMIT, free_port


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """A ThreadingHTTPServer on 127.0.0.1 recording every POST; answers ``script``'s statuses in
    turn (then 200); the status 0 means: sleep ``slow`` s, then answer 200."""

    script: list[int] = field(default_factory=list)
    slow: float = 0.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    server.requests.append(Request(self.path, dict(self.headers.items()), body))
                    status = server.script.pop(0) if server.script else 200
                if status == 0:
                    time.sleep(server.slow)
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str = "/hook") -> list[bytes]:
        return [r.body for r in self.requests if r.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def _config(tmp_path, emit: str, sinks: str, frames: int = 8):
    write(tmp_path / "emit_plugin.py", EMIT)
    return write(tmp_path / "p.yaml", f"""
        plugins: [./emit_plugin.py]
        pipelines:
          cam:
            source: {{uri: pattern, size: 32x24, frames: {frames}, fps: 10}}
            stages: [{{emit: {emit}}}]
            sinks: {sinks}
        """)


def _run(cfg, caplog):
    with caplog.at_level(logging.INFO, logger="streamcnn"):
        stats = Engine(load_config(cfg)).run()[0]
    assert stats.error is None
    return stats


def _messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_every_event_arrives_once_with_the_exact_payload(tmp_path, server, caplog):
    cfg = _config(tmp_path, "{script: true}", f"""
              - events_jsonl: {{path: events.jsonl}}
              - webhook: {{url: "{server.url()}", headers: {{X-Site: lobby}}}}
              - webhook: {{url: "{server.url('/crossed')}", types: [crossed]}}""")
    stats = _run(cfg, caplog)
    assert stats.frames == 8
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert len(lines) == 5
    assert server.bodies() == lines  # each event once, in order, byte for byte to_dict's JSON
    assert server.bodies("/crossed") == [lines[1], lines[4]]
    assert json.loads(server.bodies()[1]) == {**json.loads(lines[1]), "type": "crossed", "pipeline": "cam",
                                              "source": "pattern", "frame_index": 2, "pts": 0.2, "zone": "door",
                                              "track_id": 7, "class_name": "person", "direction": "in",
                                              "counts": {"inside": 1, "in": 1, "out": 0}}
    first = next(r.headers for r in server.requests if r.path == "/hook")
    assert first["Content-Type"] == "application/json" and first["X-Site"] == "lobby"
    assert "Authorization" not in first
    assert _messages(caplog, "events delivered") == [
        f"webhook sink: 5 events delivered to {server.url()}, 0 failed, 0 dropped (queue full), 0 not delivered "
        "within flush_timeout (5 s)",
        f"webhook sink: 2 events delivered to {server.url('/crossed')}, 0 failed, 0 dropped (queue full), 0 not "
        "delivered within flush_timeout (5 s)"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("answers", [[503, 503], [429]])
def test_5xx_and_429_are_retried_until_delivered_once(tmp_path, server, caplog, answers):
    server.script[:] = answers
    cfg = _config(tmp_path, "{burst: 1}", f'[{{webhook: {{url: "{server.url()}", retry_delay: 0.05}}}}]')
    _run(cfg, caplog)
    assert len(server.requests) == len(answers) + 1  # 503, 503, 200: three requests for one event
    assert len(set(server.bodies())) == 1
    reason = {503: "HTTP 503 Service Unavailable", 429: "HTTP 429 Too Many Requests"}[answers[0]]
    assert _messages(caplog, "retrying") == [
        f"webhook sink: {server.url()}: {reason}; retrying each event 3 times (0.05 s doubling)"]
    assert _messages(caplog, "answers again") == [f"webhook sink: {server.url()} answers again"]
    assert _messages(caplog, "events delivered")[0].startswith(f"webhook sink: 1 events delivered to {server.url()}, "
                                                               "0 failed,")


def test_a_timeout_is_retried(tmp_path, server, caplog):
    server.script[:], server.slow = [0], 2.0  # the first request hangs for 2 s
    cfg = _config(tmp_path, "{burst: 1}", f'[{{webhook: {{url: "{server.url()}", timeout: 0.3, retry_delay: 0.05}}}}]')
    _run(cfg, caplog)
    assert len(server.requests) == 2
    assert _messages(caplog, "retrying") == [
        f"webhook sink: {server.url()}: timed out; retrying each event 3 times (0.05 s doubling)"]
    assert "webhook sink: 1 events delivered" in caplog.text


def test_a_4xx_is_not_retried_and_logged_once_per_status(tmp_path, server, caplog):
    server.script[:] = [404, 404, 400]
    cfg = _config(tmp_path, "{burst: 4}", f'[{{webhook: {{url: "{server.url()}", retry_delay: 0.05}}}}]')
    _run(cfg, caplog)
    assert len(server.requests) == 4  # 404, 404, 400 (none retried), then 200
    assert _messages(caplog, "not retried") == [
        f"webhook sink: {server.url()} answered HTTP {code} to the event 'tick' of frame 0; not retried (the "
        f"request is refused; further {code.split()[0]} answers are only counted)"
        for code in ("404 Not Found", "400 Bad Request")]
    assert _messages(caplog, "gave up") == ["webhook sink: gave up on the event 'tick' of frame 0; 1 events failed "
                                            "so far"]
    assert _messages(caplog, "events delivered") == [
        f"webhook sink: 1 events delivered to {server.url()}, 3 failed, 0 dropped (queue full), 0 not delivered "
        "within flush_timeout (5 s)"]


def test_a_server_that_is_down_never_holds_up_the_pipeline(tmp_path, caplog):
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    cfg = _config(tmp_path, "{burst: 20}", f'[{{webhook: {{url: "{url}", queue: 5, retry_delay: 1, '
                  'flush_timeout: 0.5}}]', frames=30)
    t0 = time.monotonic()
    stats = _run(cfg, caplog)
    took = time.monotonic() - t0
    assert stats.frames == 30  # every frame went through
    assert took < 0.5 + 3.0  # close gave up after flush_timeout (the retries of the first event were still going)
    # 20 events at frame 0: 5 fit the queue (the one being sent included), 15 dropped; none delivered
    assert _messages(caplog, "dropped the event") == [
        f"webhook sink: dropped the event 'tick' of frame 0: 5 events are already waiting for {url} (queue); "
        "1 dropped so far"]
    assert _messages(caplog, "retrying") == [
        f"webhook sink: {url}: [Errno 111] Connection refused; retrying each event 3 times (1 s doubling)"]
    assert _messages(caplog, "events delivered") == [
        f"webhook sink: 0 events delivered to {url}, 0 failed, 15 dropped (queue full), 5 not delivered within "
        "flush_timeout (0.5 s)"]


def test_drops_are_logged_first_and_every_100th(tmp_path, caplog):
    url = f"http://127.0.0.1:{free_port()}/hook"
    cfg = _config(tmp_path, "{burst: 251}", f'[{{webhook: {{url: "{url}", queue: 1, retry_delay: 1, '
                  'flush_timeout: 0}}]', frames=1)
    _run(cfg, caplog)
    assert [m.rsplit("; ", 1)[1] for m in _messages(caplog, "dropped the event")] == [
        "1 dropped so far", "100 dropped so far", "200 dropped so far"]
    assert "0 failed, 250 dropped (queue full), 1 not delivered within flush_timeout (0 s)" in caplog.text


def test_the_bearer_token_and_url_credentials_are_sent_and_never_shown(tmp_path, server):
    server.script[:] = [500, 500]  # the failure messages must not show them either
    url = server.url("/basic").replace("http://", "http://hook-user:hook-PASS-987@")
    cfg = _config(tmp_path, "{script: true}", f"""
              - webhook: {{url: "{server.url()}", token_env: HOOK_TOKEN, retry_delay: 0.05}}
              - webhook: {{url: "{url}", retry_delay: 0.05}}""")
    res = run_cli("run", "-v", str(cfg), env={"HOOK_TOKEN": "tok-SECRET-123"})
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "tok-SECRET-123" not in out and "hook-PASS-987" not in out and "hook-user" not in out
    assert f"posting events to http://***@127.0.0.1:{server.port}/basic" in res.stderr
    assert "HTTP 500 Internal Server Error; retrying" in res.stderr
    token = {r.headers["Authorization"] for r in server.requests if r.path == "/hook"}
    assert token == {"Bearer tok-SECRET-123"}
    basic = {r.headers["Authorization"] for r in server.requests if r.path == "/basic"}
    assert basic == {"Basic " + base64.b64encode(b"hook-user:hook-PASS-987").decode()}
    assert len(set(server.bodies())) == 5 and len(set(server.bodies("/basic"))) == 5

    # a token variable that is not set: a validation error naming it (exit code 2)
    env = {k: v for k, v in os.environ.items() if k != "HOOK_TOKEN"}
    res = subprocess.run([sys.executable, "-m", "streamcnn", "validate", str(cfg)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert "token_env: the environment variable HOOK_TOKEN is not set" in res.stderr
    assert "hook-PASS-987" not in res.stdout + res.stderr
