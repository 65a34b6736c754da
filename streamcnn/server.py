"""The control plane of a run: one HTTP server per process (Starlette on uvicorn, in a thread).

Routes (JSON unless said otherwise):

* ``GET /healthz`` — the process is up (never needs the token: for liveness probes);
* ``GET /readyz`` — 200 when every pipeline is running (frames flow), else 503 with each one's state;
* ``GET /metrics`` — Prometheus' text format (`streamcnn.metrics`);
* ``GET /api/pipelines`` — every pipeline: name, state (``connecting``, ``running``,
  ``reconnecting``, ``stopped``, ``failed``), source id without credentials, fps, counters, events
  by type, execution providers, sink counters, last error; ``GET /api/pipelines/{name}`` — one;
* ``GET /openapi.json`` — the OpenAPI schema of these routes.

It binds 127.0.0.1 by default. Binding any other address needs a token (``STREAMCNN_TOKEN``, or a
file): every route but ``/healthz`` then wants ``Authorization: Bearer TOKEN``, compared in
constant time (`hmac.compare_digest`).

Why Starlette and not FastAPI: the routes are few and hand-written JSON; Starlette is FastAPI's
own core (ASGI routing, responses, schema generation from docstrings) without its pydantic-model
request layer, which the pipeline definitions (validated by streamcnn's own config loader, with
YAML positions) would bypass anyway.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import StreamcnnError
from .metrics import Metrics

log = logging.getLogger("streamcnn.server")

TOKEN_ENV = "STREAMCNN_TOKEN"


class ServeError(StreamcnnError):
    """A ``--serve``/``--token-file`` mistake (the command exits 2, like a configuration error)."""

    exit_code = 2
START_TIMEOUT = 10.0  # seconds the server may take to listen


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` → (host, port); host 127.0.0.1 when not given, ``[::1]:8080`` for IPv6.

    Raises:
        ServeError: not an address (the message shows the forms that work).
    """
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ServeError(f"--serve {text!r}: expected PORT or HOST:PORT (e.g. 8080, 127.0.0.1:8080, "
                             "0.0.0.0:8080), with a port from 0 (any free one) to 65535") from None
    return host, number


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(host: str, token_file: str | None = None) -> str | None:
    """The API token: from ``token_file`` or the environment variable ``STREAMCNN_TOKEN`` (None when
    neither is given, which is only allowed on a loopback address).

    Raises:
        ServeError: the file cannot be read or is empty; or ``host`` is not loopback and no token
            is given (binding another address is explicit and then needs one).
    """
    token = None
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ServeError(f"--token-file {token_file}: cannot read it ({exc.strerror})") from None
        if not token:
            raise ServeError(f"--token-file {token_file}: the file is empty")
    elif os.environ.get(TOKEN_ENV, "").strip():
        token = os.environ[TOKEN_ENV].strip()
    if token is None and not is_loopback(host):
        raise ServeError(
            f"--serve on {host}: the control server answers other machines there, so it needs a token: set "
            f"{TOKEN_ENV} or give --token-file FILE (clients then send 'Authorization: Bearer TOKEN'), or serve "
            "on 127.0.0.1")
    return token


def make_app(runs: Callable[[], list[Any]], metrics: Metrics, token: str | None = None) -> Any:
    """The Starlette app of the routes above over ``runs()`` (the `PipelineRun` objects of the run)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.schemas import SchemaGenerator

    schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "streamcnn", "version": "0.1.0"}})

    async def healthz(request: Request) -> JSONResponse:
        """
        responses:
          200:
            description: the process is up.
        """
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        """
        responses:
          200:
            description: every pipeline is running.
          503:
            description: some pipeline is not running; its state is given.
        """
        states = {r.name: r.state for r in runs()}
        ready = bool(states) and all(s == "running" for s in states.values())
        return JSONResponse({"ready": ready, "pipelines": states}, status_code=200 if ready else 503)

    async def metrics_route(request: Request) -> Response:
        """
        responses:
          200:
            description: Prometheus text exposition format.
        """
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    async def pipelines(request: Request) -> JSONResponse:
        """
        responses:
          200:
            description: every pipeline with its state, source (no credentials), fps and counters.
        """
        return JSONResponse([r.snapshot() for r in runs()])

    async def pipeline(request: Request) -> JSONResponse:
        """
        parameters:
          - {name: name, in: path, required: true, schema: {type: string}}
        responses:
          200:
            description: the pipeline's state, source, fps and counters.
          404:
            description: no pipeline of that name.
        """
        name = request.path_params["name"]
        for r in runs():
            if r.name == name:
                return JSONResponse(r.snapshot())
        names = [r.name for r in runs()]
        return JSONResponse({"error": f"no pipeline named {name!r}", "pipelines": names}, status_code=404)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(schemas.get_schema(routes=request.app.routes))

    routes = [
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_route),
        Route("/api/pipelines", pipelines), Route("/api/pipelines/{name}", pipeline),
        Route("/openapi.json", openapi, include_in_schema=False),
    ]
    app = Starlette(routes=routes)
    if token is not None:
        app.add_middleware(_TokenMiddleware, token=token)
    return app


class _TokenMiddleware:
    """``Authorization: Bearer TOKEN`` on every route but ``/healthz`` (constant-time compare)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") != "/healthz":
            given = b""
            for key, value in scope.get("headers", []):
                if key == b"authorization" and value[:7].lower() == b"bearer ":
                    given = value[7:].strip()
            if not hmac.compare_digest(given, self.token):
                from starlette.responses import JSONResponse

                response = JSONResponse({"error": "send the token: Authorization: Bearer TOKEN"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ControlServer:
    """uvicorn serving `make_app` on its own daemon thread; `start` returns once it listens.

    Args:
        runs: returns the pipeline runs to show.
        metrics: their `Metrics`.
        host, port: where to listen (port 0: any free port; see `port` after `start`).
        token: the bearer token (see `load_token`), or None.
    """

    def __init__(self, runs: Callable[[], list[Any]], metrics: Metrics, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        import uvicorn

        self.host, self.port = host, port
        config = uvicorn.Config(make_app(runs, metrics, token), host=host, port=port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        """Listen (raises ServeError when the address cannot be bound)."""
        self._thread = threading.Thread(target=self._server.run, name="streamcnn-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"--serve {self.host}:{self.port}: the control server could not listen there "
                                     "(is the port in use?)")
            time.sleep(0.01)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("control server on %s (dashboard data: /api/pipelines, metrics: /metrics, health: /healthz)",
                 self.url)
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening (open connections get ``timeout`` s)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["TOKEN_ENV", "ControlServer", "ServeError", "is_loopback", "load_token", "make_app", "parse_address"]
