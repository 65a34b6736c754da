"""Built-in sink ``preview``: a live view in the browser (MJPEG over HTTP).

Works with the headless OpenCV wheel and on servers: open ``http://HOST:PORT/`` in a browser.
``/stream.mjpg`` is a ``multipart/x-mixed-replace`` stream of JPEG frames; ``/frame.jpg`` is the
next processed frame (or, when none arrives within 1 s, the last one encoded). Frames are
JPEG-encoded only while at least one client is watching, so an unwatched preview costs nothing
per frame. Served by the standard library's ``ThreadingHTTPServer`` with one thread per client,
at most ``max_clients`` at once (more get ``503 Service Unavailable`` at once and are closed), and
a socket timeout of ``client_timeout`` seconds per connection (an idle or stalled client is
dropped). A client that goes away mid-response is logged at DEBUG only (``-v``), never with a
traceback.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from streamcnn import Context, Field, Frame, Output, Params, Sink, StreamcnnError, hookimpl

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}img{{max-width:100vw;max-height:95vh;
display:block;margin:auto}}</style></head><body><div>streamcnn · {title}</div><img src="/stream.mjpg"></body></html>"""


class _Latest:
    """The newest JPEG and a condition to wait for the next one."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.clients = 0
        self.closed = False


#: what a client that went away looks like: BrokenPipe, ConnectionReset, ConnectionAborted, a timeout
_GONE = (ConnectionError, TimeoutError)


class _Server(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a bound on concurrent connections and quiet client errors.

    Each accepted connection gets its own thread while fewer than ``max_clients`` are open; beyond
    that the new client is answered ``503`` at once on the accepting thread and closed. Errors of
    clients that went away (`_GONE`) are logged at DEBUG; any other error of a request is one
    WARNING line (the traceback at DEBUG). ``close_clients`` cuts every open connection, so that
    ``server_close`` never waits for a slow client.
    """

    daemon_threads = True
    block_on_close = False  # `close_clients` ends the handler threads instead
    request_queue_size = 64  # a burst of connects waits in the kernel's backlog, not in SYN retries

    def __init__(self, address: tuple[str, int], handler: type, max_clients: int, log: logging.Logger) -> None:
        self.max_clients = max_clients
        self.log = log
        self.active: set[socket.socket] = set()
        self.active_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        with self.active_lock:
            full = len(self.active) >= self.max_clients
            if not full:
                self.active.add(request)
        if full:
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError as exc:  # no thread could be started
            self.log.warning("preview: cannot serve %s: %s", _peer(client_address), exc)
            with self.active_lock:
                self.active.discard(request)
            self.shutdown_request(request)

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.active_lock:
                self.active.discard(request)

    def _refuse(self, request: socket.socket, client_address: tuple) -> None:
        """Answer 503 and close, without blocking the accepting thread for long."""
        body = (f"busy: {self.max_clients} clients are connected to this preview already "
                "(its max_clients); try again later\n").encode()
        head = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n").encode()
        try:
            request.settimeout(1.0)
            request.sendall(head + body)
            request.shutdown(socket.SHUT_WR)
            request.setblocking(False)
            try:
                request.recv(65536)  # what the client sent already: closing over unread data would reset
            except OSError:
                pass
        except OSError as exc:
            self.log.debug("preview: refusing %s: %s", _peer(client_address), exc)
        finally:
            request.close()
        self.log.debug("preview: %d clients already; refused %s with 503", self.max_clients, _peer(client_address))

    def handle_error(self, request: socket.socket, client_address: tuple) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, _GONE):
            self.log.debug("preview: client %s went away: %s", _peer(client_address), exc)
        else:
            self.log.warning("preview: request from %s failed: %s: %s (-v shows the traceback)",
                             _peer(client_address), type(exc).__name__, exc)
            self.log.debug("preview: traceback of the failed request", exc_info=exc)

    def close_clients(self) -> None:
        """Shut every open client connection down (its handler thread then ends at once)."""
        with self.active_lock:
            active = list(self.active)
        for request in active:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _peer(client_address: tuple) -> str:
    return f"{client_address[0]}:{client_address[1]}" if len(client_address) >= 2 else str(client_address)


def port_problem(host: str, port: int) -> str | None:
    """Why the preview cannot listen on ``host:port`` (tried by binding a socket the way the server
    does, then closing it), or None. Port 0 (any free port) always works."""
    if port == 0:
        return None
    probe = socket.socket(_Server.address_family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server: TIME_WAIT is no conflict
        probe.bind((host, port))
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: unknown host {host!r} ({exc.strerror}); use 127.0.0.1 or 0.0.0.0"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"port {port} on {host} is already in use (by another program or another pipeline of this "
                    "file); pick another port")
        if exc.errno == errno.EACCES:
            return f"cannot listen on port {port} on {host}: permission denied (ports below 1024 need root)"
        if exc.errno == errno.EADDRNOTAVAIL:
            return (f"cannot listen on {host}:{port}: {host} is not an address of this machine; use 127.0.0.1 "
                    "(this machine only) or 0.0.0.0 (every interface)")
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    finally:
        probe.close()
    return None


class PreviewSink(Sink):
    """Serve the processed frames as an MJPEG stream at ``http://host:port/``.

    ``check`` (validate) binds the port once, so a port in use is a configuration error; two
    preview sinks of one file on one port are one too (their declared `outputs`).

    Raises (at start-up): StreamcnnError when the port cannot be bound.
    """

    class Params(Params):
        host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 for all interfaces)")
        port: int = Field(8090, ge=0, le=65535, description="TCP port (0 = any free port)")
        quality: int = Field(80, ge=1, le=100, description="JPEG quality")
        max_clients: int = Field(32, ge=1, description="connections served at once; more get 503 at once")
        client_timeout: float = Field(10.0, gt=0, description="seconds a connection may stay idle or stalled")

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """ValueError when ``host:port`` cannot be listened on now (in use, not an address here ...)."""
        problem = port_problem(params.host, params.port)
        if problem:
            raise ValueError(problem)

    @classmethod
    def outputs(cls, params: Params, ctx: Context) -> list[Output]:
        return [Output.port(params.host, params.port)] if params.port else []

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.latest = _Latest()
        latest, title = self.latest, ctx.pipeline

        log = ctx.log

        class Handler(BaseHTTPRequestHandler):
            timeout = params.client_timeout  # socket timeout of each connection (StreamRequestHandler)

            def log_message(self, fmt: str, *args: object) -> None:  # requests and timeouts: -v only
                log.debug("preview: %s: %s", self.address_string(), fmt % args)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path in ("/", "/index.html"):
                    body = PAGE.format(title=title).encode()
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path.startswith("/stream.mjpg"):
                    self._stream()
                elif self.path.startswith("/frame.jpg"):
                    self._single()
                else:
                    self.send_error(HTTPStatus.NOT_FOUND)

            def _next(self, seq: int, timeout: float = 5.0) -> tuple[bytes | None, int]:
                with latest.cond:
                    latest.cond.wait_for(lambda: latest.closed or latest.seq != seq, timeout)
                    return latest.jpeg, latest.seq

            def _single(self) -> None:
                with latest.cond:
                    latest.clients += 1  # makes write() encode the next frame
                    seq = latest.seq
                try:
                    # the next frame while frames flow; the last encoded one if none comes within 1 s
                    jpeg, _ = self._next(seq, timeout=1.0)
                finally:
                    with latest.cond:
                        latest.clients -= 1
                if jpeg is None:
                    self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(jpeg)))
                self.end_headers()
                self.wfile.write(jpeg)

            def _stream(self) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache, private")
                self.end_headers()
                with latest.cond:
                    latest.clients += 1
                seq = -1
                try:
                    while not latest.closed:
                        jpeg, new_seq = self._next(seq)
                        if jpeg is None or new_seq == seq:
                            continue
                        seq = new_seq
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except _GONE as exc:
                    log.debug("preview: client %s left the stream: %s", self.address_string(), exc)
                finally:
                    with latest.cond:
                        latest.clients -= 1

        try:
            self.server = _Server((params.host, params.port), Handler, params.max_clients, ctx.log)
        except OSError as exc:
            raise StreamcnnError(f"preview sink: cannot listen on {params.host}:{params.port}: {exc}") from None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"preview-{ctx.pipeline}", daemon=True)
        self.thread.start()
        ctx.log.info("live preview of pipeline '%s' at http://%s:%d/", ctx.pipeline, params.host, self.port)

    def write(self, frame: Frame) -> None:
        latest = self.latest
        if latest.clients == 0 and latest.jpeg is not None:
            return  # nobody watching: skip the JPEG encode (the first frame is kept for /frame.jpg)
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.params.quality])
        if not ok:
            return
        with latest.cond:
            latest.jpeg = buf.tobytes()
            latest.seq += 1
            latest.cond.notify_all()

    def close(self) -> None:
        with self.latest.cond:
            self.latest.closed = True
            self.latest.cond.notify_all()
        self.server.shutdown()
        self.server.close_clients()
        self.server.server_close()


@hookimpl
def streamcnn_sink_types() -> dict[str, type[Sink]]:
    return {"preview": PreviewSink}
