"""Built-in sink ``preview``: a live view in the browser (MJPEG over HTTP).

Works with the headless OpenCV wheel and on servers: open ``http://HOST:PORT/`` in a browser.
``/stream.mjpg`` is a ``multipart/x-mixed-replace`` stream of JPEG frames; ``/frame.jpg`` is the
next processed frame (or, when none arrives within 1 s, the last one encoded). Frames are
JPEG-encoded only while at least one client is watching, so an unwatched preview costs nothing
per frame. Served by the standard library's ``ThreadingHTTPServer``.
"""

from __future__ import annotations

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


class PreviewSink(Sink):
    """Serve the processed frames as an MJPEG stream at ``http://host:port/``.

    Raises (at start-up): StreamcnnError when the port cannot be bound.
    """

    class Params(Params):
        host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 for all interfaces)")
        port: int = Field(8090, ge=0, le=65535, description="TCP port (0 = any free port)")
        quality: int = Field(80, ge=1, le=100, description="JPEG quality")

    @classmethod
    def outputs(cls, params: Params, ctx: Context) -> list[Output]:
        return [Output.port(params.host, params.port)] if params.port else []

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.latest = _Latest()
        latest, title = self.latest, ctx.pipeline

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:  # keep the console quiet
                return

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
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with latest.cond:
                        latest.clients -= 1

        try:
            self.server = ThreadingHTTPServer((params.host, params.port), Handler)
        except OSError as exc:
            raise StreamcnnError(f"preview sink: cannot listen on {params.host}:{params.port}: {exc}") from None
        self.server.daemon_threads = True
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
        self.server.server_close()


@hookimpl
def streamcnn_sink_types() -> dict[str, type[Sink]]:
    return {"preview": PreviewSink}
