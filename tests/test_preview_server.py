"""The preview sink's HTTP server under misbehaving clients, with real sockets against a real
`streamcnn -q run`: clients that leave mid-response leave nothing on stderr, idle connections are
bounded (more get 503 at once) and time out, and a normal client still gets frames throughout."""

from __future__ import annotations

import select
import signal
import socket
import struct
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.conftest import wait_until, write

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")

MAX_CLIENTS = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _frames(port: int, n: int) -> list[np.ndarray]:
    """``n`` JPEG frames from /stream.mjpg, decoded."""
    with _connect(port) as s:
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"no response: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.0 200 OK\r\n"), data[:200]
        frames: list[np.ndarray] = []
        while len(frames) < n:
            chunk = s.recv(65536)
            assert chunk, f"stream ended after {len(frames)} frames: {data[:200]!r}"
            data += chunk
            while True:
                start = data.find(b"\xff\xd8")
                head = data.rfind(b"Content-Length: ", 0, start if start >= 0 else None)
                if start < 0 or head < 0:
                    break
                length = int(data[head + 16:data.index(b"\r\n", head)])
                if len(data) < start + length:
                    break
                frames.append(cv2.imdecode(np.frombuffer(data[start:start + length], np.uint8), cv2.IMREAD_COLOR))
                data = data[start + length:]
        return frames


def _reset(s: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the server's next write or read fails with ECONNRESET."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@pytest.fixture
def preview_run(tmp_path):
    port = _free_port()
    cfg = write(tmp_path / "p.yaml", f"""
        pipelines:
          cam:
            source: {{uri: pattern, size: 160x120, fps: 25, frames: null, realtime: true}}
            sinks: [{{preview: {{port: {port}, max_clients: {MAX_CLIENTS}, client_timeout: 15}}}}]
        """)
    proc = subprocess.Popen([sys.executable, "-m", "streamcnn", "-q", "run", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def listening() -> bool:
        try:
            _connect(port).close()
            return True
        except OSError:
            return False

    try:
        assert wait_until(listening, 60), "the preview never listened"
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)  # a guard against hanging, not a speed limit
    return proc.returncode, err


def _assert_quiet(rc: int, err: str) -> None:
    lines = err.splitlines()
    assert rc == 0, err
    assert "Traceback" not in err and "Error" not in err, err
    assert len(lines) == 2, err  # -q: the SIGTERM warning and the summary, nothing from the clients
    assert lines[0].endswith("WARNING streamcnn: SIGTERM received: stopping (flushing sinks; again to skip queued "
                             "frames)")
    assert lines[1].startswith("cam: ") and " frames in " in lines[1]


def test_clients_leaving_mid_response_print_nothing(preview_run) -> None:
    proc, port = preview_run
    assert _frames(port, 2)[0].shape == (120, 160, 3)
    # 1. left the stream after the headers and part of a frame, with a normal close and with a reset
    for close in (socket.socket.close, _reset):
        s = _connect(port)
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 200")
        close(s)
    # 2. gone before the single frame or the page is written
    for path in (b"/frame.jpg", b"/", b"/stream.mjpg"):
        s = _connect(port)
        s.sendall(b"GET " + path + b" HTTP/1.1\r\n\r\n")
        _reset(s)
    # 3. half a request line, then a reset; a request line only, then a normal close
    s = _connect(port)
    s.sendall(b"GET /str")
    _reset(s)
    s = _connect(port)
    s.sendall(b"GET / HTTP/1.1\r\n")
    s.close()
    time.sleep(1.0)  # let the server meet every one of those closed sockets
    assert _frames(port, 3)[2].shape == (120, 160, 3)  # a normal client still gets frames
    _assert_quiet(*_stop(proc))


def test_idle_connections_are_bounded_and_time_out(preview_run) -> None:
    proc, port = preview_run
    _frames(port, 2)  # warm up: OpenCV and the encoder start their worker threads lazily
    time.sleep(0.5)
    base = _threads(proc.pid)
    idle = [_connect(port) for _ in range(200)]  # connected, never sending a request
    refused: dict[socket.socket, bytes] = {}

    def answered() -> bool:  # the clients beyond the bound get a 503 and EOF at once
        ready, _, _ = select.select([s for s in idle if s not in refused], [], [], 0.1)
        for s in ready:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            refused[s] = data
        return len(busy()) >= 200 - MAX_CLIENTS

    def busy() -> dict[socket.socket, bytes]:  # a served one silent past client_timeout reads b"" instead
        return {s: d for s, d in refused.items() if d.startswith(b"HTTP/1.0 503")}

    assert wait_until(answered, 30)
    assert len(busy()) == 200 - MAX_CLIENTS
    assert _threads(proc.pid) <= base + MAX_CLIENTS + 2
    assert all(d in (b"", next(iter(busy().values()))) for d in refused.values())
    reply = next(iter(busy().values())).decode()
    assert reply.startswith("HTTP/1.0 503 Service Unavailable\r\n")
    assert reply.endswith(f"\r\n\r\nbusy: {MAX_CLIENTS} clients are connected to this preview already (its "
                          "max_clients); try again later\n")
    # the 32 served ones are dropped by the server after client_timeout (15 s) of silence
    served = [s for s in idle if s not in busy()]
    assert len(served) == MAX_CLIENTS

    def all_closed() -> bool:
        ready, _, _ = select.select(served, [], [], 0.1)
        for s in ready:
            assert s.recv(4096) == b""
            served.remove(s)
        return not served

    assert wait_until(all_closed, 30)
    assert wait_until(lambda: _threads(proc.pid) <= base + 2, 30)  # back to what it was (± worker threads)
    for s in idle:
        s.close()
    assert _frames(port, 2)[1].shape == (120, 160, 3)
    _assert_quiet(*_stop(proc))
