"""The control plane of a run: one HTTP server per process (Starlette on uvicorn, in a thread).

Routes (JSON unless said otherwise):

* ``GET /`` — the dashboard (`streamcnn.dashboard`); ``GET /api/pipelines/{name}/live.mjpg`` — the
  pipeline's live view (MJPEG), ``…/frame.jpg`` — its latest frame;
* ``GET /healthz`` — the process is up (never needs the token: for liveness probes);
* ``GET /readyz`` — 200 when every pipeline is running (or ended by itself), else 503 (connecting,
  reconnecting, failed) with each one's state;
* ``GET /metrics`` — Prometheus' text format (`streamcnn.metrics`);
* ``GET /api/pipelines`` — every pipeline: name, state (``connecting``, ``running``,
  ``reconnecting``, ``stopped``, ``failed``), source id without credentials, fps, counters, events
  by type, execution providers, sink counters, last error; ``GET /api/pipelines/{name}`` — one;
* ``POST /api/pipelines`` — YAML or JSON of the file's shape (``pipelines: {NAME: {...}}``),
  validated exactly like the file (422 with the messages and key paths of ``streamcnn validate``),
  then started beside the others (409 when one of that name runs); ``DELETE /api/pipelines/{name}``
  — stops it gracefully (sinks flushed and closed), with its final counters;
  ``POST /api/pipelines/{name}/restart``;
* ``GET /openapi.json`` — the OpenAPI schema of these routes.

It binds 127.0.0.1 by default. Binding any other address needs a token (``STREAMCNN_TOKEN``, or a
file): every route but ``/healthz`` then wants ``Authorization: Bearer TOKEN`` (or the cookie that
opening ``/?token=TOKEN`` once sets, for the dashboard's images), compared in constant time
(`hmac.compare_digest`).

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
COOKIE = "streamcnn_token"  # the dashboard's login (``/?token=TOKEN`` sets it): <img> sends no header


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


class EngineControl:
    """What the write routes do to a running `streamcnn.engine.Engine`, validating like the file.

    Args:
        engine: the running engine.
        config: the file's `Config` (its folder and plugins are those of posted definitions).
    """

    def __init__(self, engine: Any, config: Any) -> None:
        self.engine, self.config = engine, config

    def runs(self) -> list[Any]:
        return list(self.engine.runs)

    def add(self, text: str) -> list[str]:
        """Validate ``text`` (YAML or JSON of the file's shape, ``pipelines: {NAME: {...}}``) exactly
        like the file, then start each pipeline in it. Returns their names.

        Raises:
            ConfigError / ConfigErrors: the definition is wrong (messages as ``streamcnn validate``;
                lines and columns within the body, file ``<request>``).
            ValueError: a pipeline of one of those names is running.
        """
        from .config import load_config_text
        from .errors import ConfigError
        from .yamlpos import load_yaml

        data, positions = load_yaml(text, "<request>")
        for key in ("plugins", "runtime"):
            if isinstance(data, dict) and key in data:
                line, col = positions.find((key,))
                raise ConfigError(f"{key}: applies to the whole run: give it in {self.config.file} (a posted "
                                  "definition has only pipelines:)", "<request>", line, col, key)
        config = load_config_text(text, "<request>", self.config.config_dir, self.config.plugins, check=True)
        running = [n for n in config.pipelines if self._running(n)]
        if running:
            raise ValueError(f"a pipeline named {running[0]!r} is running; DELETE /api/pipelines/{running[0]} first "
                             "to start this definition")
        for cfg in config.pipelines.values():
            self.engine.add(cfg)
            log.info("pipeline '%s' added through the API", cfg.name)
        return list(config.pipelines)

    def _running(self, name: str) -> bool:
        run = self.engine.find(name)
        return run is not None and run.alive

    def remove(self, name: str) -> dict[str, Any]:
        """Stop ``name`` gracefully (sinks flushed and closed); its final counters. KeyError: none such."""
        run = self.engine.remove(name)
        log.info("pipeline '%s' deleted through the API", name)
        return run.snapshot()

    def restart(self, name: str) -> dict[str, Any]:
        """Stop ``name`` gracefully and start it again from its definition: ``{"stopped": the old
        run's final counters, "started": the new run's}``. KeyError: none such."""
        old = self.engine.remove(name)
        new = self.engine.add(old.cfg)
        log.info("pipeline '%s' restarted through the API", name)
        return {"stopped": old.snapshot(), "started": new.snapshot()}


def _config_errors(exc: Any) -> list[dict[str, Any]]:
    errors = exc.errors if hasattr(exc, "errors") else [exc]
    return [{"message": e.message, "path": e.path, "line": e.line, "column": e.column, "text": e.format()}
            for e in errors]


def make_app(runs: Callable[[], list[Any]], metrics: Metrics, token: str | None = None,
             control: EngineControl | None = None) -> Any:
    """The Starlette app of the routes above over ``runs()`` (the `PipelineRun` objects of the run);
    with ``control``, also the write routes (add, delete, restart pipelines)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
    from starlette.routing import Route
    from starlette.schemas import SchemaGenerator

    from .dashboard import LiveView, page

    view = LiveView()

    def find(name: str) -> Any:
        for r in runs():
            if r.name == name:
                return r
        return None

    def missing(name: str) -> JSONResponse:
        return JSONResponse({"error": f"no pipeline named {name!r}", "pipelines": [r.name for r in runs()]},
                            status_code=404)

    async def dashboard(request: Request) -> Response:
        """
        responses:
          200:
            description: the dashboard (HTML).
        """
        given = request.query_params.get("token")
        if token is not None and given is not None:  # log in once: the token goes to a cookie
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "wrong token"}, status_code=401)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        return HTMLResponse(page([r.name for r in runs()]))

    async def frame_jpg(request: Request) -> Response:
        """
        parameters:
          - {name: name, in: path, required: true, schema: {type: string}}
        responses:
          200:
            description: the pipeline's latest frame as JPEG.
          404:
            description: no such pipeline, or no frame yet.
        """
        name = request.path_params["name"]
        run = find(name)
        if run is None:
            return missing(name)
        got = await run_in_threadpool(view.jpeg, run)
        if got is None:
            return JSONResponse({"error": f"pipeline {name!r} has no frame yet"}, status_code=404)
        return Response(got[1], media_type="image/jpeg", headers={"X-Frame-Seq": str(got[0])})

    async def live(request: Request) -> Response:
        """
        parameters:
          - {name: name, in: path, required: true, schema: {type: string}}
        responses:
          200:
            description: MJPEG (multipart/x-mixed-replace) of the pipeline's frames; a slow viewer skips frames.
          404:
            description: no pipeline of that name.
        """
        name = request.path_params["name"]
        if find(name) is None:
            return missing(name)

        async def parts():
            last = -1  # frame_seq of the last JPEG sent
            while True:
                run = find(name)
                if run is None:
                    return  # deleted: the stream ends
                if run.frame_seq != last:  # a new frame: its JPEG (encoded once, whoever asks first)
                    got = await run_in_threadpool(view.jpeg, run)
                    if got is not None and got[0] != last:
                        last = got[0]
                        yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                               + str(len(got[1])).encode() + b"\r\n\r\n" + got[1] + b"\r\n")
                await asyncio.sleep(view.min_interval)  # a slow viewer's send above took longer: it skips frames

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

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
            description: every pipeline is running (or has ended by itself, e.g. a file).
          503:
            description: some pipeline is connecting, reconnecting or failed; the states are given.
        """
        states = {r.name: r.state for r in runs()}
        ready = bool(states) and all(s in ("running", "stopped") for s in states.values())
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

    async def add(request: Request) -> JSONResponse:
        """
        requestBody:
          description: "YAML or JSON with the file's shape: pipelines: {NAME: {source, stages, sinks}}"
          content: {application/yaml: {}, application/json: {}}
        responses:
          201:
            description: validated and started; the pipelines' names.
          409:
            description: a pipeline of that name is running.
          422:
            description: the definition is wrong; errors as streamcnn validate gives them.
        """
        from starlette.concurrency import run_in_threadpool

        from .errors import ConfigError

        assert control is not None
        text = (await request.body()).decode("utf-8", "replace")
        try:
            names = await run_in_threadpool(control.add, text)
        except ConfigError as exc:
            return JSONResponse({"errors": _config_errors(exc)}, status_code=422)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"added": names}, status_code=201)

    async def delete(request: Request) -> JSONResponse:
        """
        parameters:
          - {name: name, in: path, required: true, schema: {type: string}}
        responses:
          200:
            description: stopped, its sinks flushed and closed; its final counters.
          404:
            description: no pipeline of that name.
        """
        return await _act(request, "remove")

    async def restart(request: Request) -> JSONResponse:
        """
        parameters:
          - {name: name, in: path, required: true, schema: {type: string}}
        responses:
          200:
            description: stopped gracefully and started again.
          404:
            description: no pipeline of that name.
        """
        return await _act(request, "restart")

    async def _act(request: Request, what: str) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        assert control is not None
        name = request.path_params["name"]
        try:
            return JSONResponse(await run_in_threadpool(getattr(control, what), name))
        except KeyError:
            return JSONResponse({"error": f"no pipeline named {name!r}", "pipelines": [r.name for r in runs()]},
                                status_code=404)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(schemas.get_schema(routes=request.app.routes))

    routes = [
        Route("/", dashboard), Route("/api/pipelines/{name}/live.mjpg", live),
        Route("/api/pipelines/{name}/frame.jpg", frame_jpg),
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_route),
        Route("/api/pipelines", pipelines, methods=["GET"]), Route("/api/pipelines/{name}", pipeline, methods=["GET"]),
        Route("/openapi.json", openapi, include_in_schema=False),
    ]
    if control is not None:
        routes += [Route("/api/pipelines", add, methods=["POST"]),
                   Route("/api/pipelines/{name}", delete, methods=["DELETE"]),
                   Route("/api/pipelines/{name}/restart", restart, methods=["POST"])]
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        code = getattr(exc, "status_code", 404)
        return JSONResponse({"error": f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'not found')}"},
                            status_code=code)

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.view = view  # the live views' encoder (its ``encoded`` count: once per frame)
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
                elif key == b"cookie" and not given:
                    for part in value.split(b";"):
                        k, _, v = part.strip().partition(b"=")
                        if k == COOKIE.encode():
                            given = v
            login = scope.get("path") == "/" and b"token=" in scope.get("query_string", b"")
            if not login and not hmac.compare_digest(given, self.token):
                from starlette.responses import JSONResponse

                response = JSONResponse({"error": "send the token: Authorization: Bearer TOKEN (in a browser: open "
                                                  "/?token=TOKEN once)"}, status_code=401,
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
        control: the write routes' `EngineControl` (None: read-only).
    """

    def __init__(self, runs: Callable[[], list[Any]], metrics: Metrics, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, control: EngineControl | None = None) -> None:
        import uvicorn

        self.host, self.port = host, port
        self.app = make_app(runs, metrics, token, control)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
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


__all__ = ["TOKEN_ENV", "ControlServer", "EngineControl", "ServeError", "is_loopback", "load_token", "make_app",
           "parse_address"]
