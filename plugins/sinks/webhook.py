"""Built-in sink ``webhook``: every event of the pipeline POSTed as JSON to a URL, from a worker
thread, with retries; the standard library only (``urllib.request``)."""

from __future__ import annotations

import base64
import collections
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from streamcnn import Context, Event, EventSink, Field, Params, redact

_LOG_EVERY = 100  # a dropped or failed event is logged the first time, then every 100th
_RETRIED_STATUS = frozenset({429})  # and every 5xx


class _Refused(Exception):
    """The server answered with a status that is not retried (a 4xx other than 429)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class WebhookSink(EventSink):
    """Each event POSTed as JSON to a URL, from a worker thread, with retries.

    One request per event (optionally only some ``types``), in the order they were emitted: the body
    is `streamcnn.Event.to_dict` as JSON (the envelope ``type``, ``pipeline``, ``source``, ``time``,
    ``epoch``, ``pts``, ``frame_index`` and the type's fields), ``Content-Type: application/json``.

    Never blocks the pipeline: ``event`` only puts the event in a bounded queue (``queue`` events,
    the one being sent included); a worker thread (``streamcnn-webhook-PIPELINE``) sends them. When
    the queue is full the event is dropped and counted. A request that fails with a connection
    error, a timeout (``timeout`` s), a 5xx or a 429 answer is retried ``retries`` times, waiting
    ``retry_delay`` seconds doubling between attempts; a 4xx answer other than 429 is not retried (the
    request itself is refused). Any 2xx/3xx answer counts as delivered.

    Credentials: ``token_env`` names an environment variable holding a bearer token (sent as
    ``Authorization: Bearer ...``; a variable that is not set is a validation error); ``user:pass@``
    in the URL is sent as HTTP basic authentication and never sent nor logged as part of the URL.
    Neither appears in a log line or error message (URLs are logged with `streamcnn.redact`), nor do
    the ``headers``' values. Proxies come from the usual environment variables (``https_proxy`` ...).

    ``close`` waits up to ``flush_timeout`` seconds for the queue to drain (retries included; a
    request still running then is abandoned), then logs how many events were not delivered.

    Logged (logger ``streamcnn.PIPELINE.webhook``): INFO ``posting events to URL`` at start; WARNING
    once per outage when the server cannot be reached or answers 5xx/429 (with the reason), INFO when
    it answers again; WARNING once per status for a refused (4xx) request; WARNING for the first
    dropped (queue full) and the first failed event (retries used up or refused) and every 100th,
    with the totals; at close INFO with the totals, WARNING when events were dropped, failed or not
    delivered.

    Raises (``check``, at validate time): ValueError for a URL that is not ``http(s)://host...``,
    an unset ``token_env`` variable, or two sources of an ``Authorization`` header.
    """

    class Params(Params):
        url: str = Field(description="http:// or https:// URL to POST each event to (user:pass@ = basic auth)")
        headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers of every request")
        token_env: str | None = Field(None, description="environment variable holding a bearer token "
                                      "(sent as Authorization: Bearer ...)")
        types: list[str] | None = Field(None, description="only these event types (default: all)")
        timeout: float = Field(5.0, gt=0, description="seconds one request may take (connect and answer)")
        retries: int = Field(3, ge=0, description="retries of a request that failed (connection error, "
                             "timeout, 5xx, 429)")
        retry_delay: float = Field(0.5, ge=0, description="seconds before the first retry (doubling)")
        queue: int = Field(1000, ge=1, description="most events waiting to be sent; beyond: dropped")
        flush_timeout: float = Field(5.0, ge=0, description="seconds close waits for the queue to drain")

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        super().check(params, ctx)
        cls.split_url(params.url)
        cls.token(params)
        auth_headers = [k for k in params.headers if k.lower() == "authorization"]
        user, _ = cls.split_url(params.url)[1:]
        sources = len(auth_headers) + (params.token_env is not None) + (user is not None)
        if sources > 1:
            raise ValueError("an Authorization header comes from more than one of: headers, token_env, user:pass@ "
                             "in the url; give one")

    @staticmethod
    def split_url(url: str) -> tuple[str, str | None, str | None]:
        """(the URL without ``user:pass@``, user, password). Raises ValueError (the URL redacted)
        when it is not ``http(s)://host...``."""
        try:
            parts = urllib.parse.urlsplit(url.strip())
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as exc:
            raise ValueError(f"url {redact(url)!r} is not a URL: {redact(str(exc))}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {redact(url)!r} is not an http:// or https:// URL with a host")
        user = password = None
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, netloc = netloc.rsplit("@", 1)
            user, _, password = userinfo.partition(":")
            user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), user, password

    @staticmethod
    def token(params: Params) -> str | None:
        """The bearer token from ``token_env``; ValueError naming the variable (never its value) when unset."""
        if params.token_env is None:
            return None
        if params.token_env not in os.environ:
            raise ValueError(f"token_env: the environment variable {params.token_env} is not set")
        return os.environ[params.token_env]

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.check(params, ctx)
        self.url, user, password = self.split_url(params.url)
        self.shown = redact(params.url)  # the URL as logged
        headers = {"Content-Type": "application/json", "User-Agent": "streamcnn-webhook", **params.headers}
        token = self.token(params)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif user is not None:
            basic = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {basic}"
        self._headers = headers
        self.types = None if params.types is None else frozenset(params.types)
        self.delivered = self.dropped = self.failed = 0
        self._queue: collections.deque[tuple[bytes, str]] = collections.deque()
        self._outstanding = 0  # events accepted and not finished (queued or being sent), at most `queue`
        self._cond = threading.Condition()
        self._closing = False  # no more events come: the worker drains the queue, then ends
        self._abort = threading.Event()  # flush_timeout is over: stop now
        self._down = False  # in an outage (logged once)
        self._refused_logged: set[int] = set()
        self._opener = urllib.request.build_opener()
        ctx.log.info("webhook sink: posting events to %s", self.shown)
        self._worker = threading.Thread(target=self._run, name=f"streamcnn-webhook-{ctx.pipeline}", daemon=True)
        self._worker.start()

    def __repr__(self) -> str:
        return f"<WebhookSink {self.shown}>"

    # -- the pipeline thread ------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """``delivered``, ``failed`` (given up after the retries, or refused) and ``dropped`` (queue full)."""
        return {"delivered": self.delivered, "failed": self.failed, "dropped": self.dropped}

    def event(self, event: Event) -> None:
        if self.types is not None and event.type not in self.types:
            return
        what = f"the event {event.type!r} of frame {event.frame_index}"
        with self._cond:
            if self._outstanding >= self.params.queue:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._outstanding += 1
                self._queue.append((json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
                                    .encode("utf-8"), what))
                self._cond.notify()
                return
        if dropped == 1 or dropped % _LOG_EVERY == 0:
            self.ctx.log.warning("webhook sink: dropped %s: %d events are already waiting for %s (queue); %d "
                                 "dropped so far", what, self.params.queue, self.shown, dropped)

    def close(self) -> None:
        """Wait up to ``flush_timeout`` s for the queued events to be sent, stop the worker, log the totals."""
        deadline = time.monotonic() + self.params.flush_timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        self._abort.set()  # a retry wait ends now; a request still running is abandoned
        self._worker.join(0.05)
        with self._cond:
            undelivered = self._outstanding
        level = self.ctx.log.warning if (undelivered or self.dropped or self.failed) else self.ctx.log.info
        level("webhook sink: %d events delivered to %s, %d failed, %d dropped (queue full), %d not delivered "
              "within flush_timeout (%g s)", self.delivered, self.shown, self.failed, self.dropped, undelivered,
              self.params.flush_timeout)

    # -- the worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._abort.is_set():
                    return
                body, what = self._queue[0]
            try:
                ok = self._send(body, what)
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop the worker for good
                self.ctx.log.error("webhook sink: %s not sent: %s", what, redact(f"{type(exc).__name__}: {exc}"))
                ok = False
            if self._abort.is_set() and not ok:
                return  # close gave up on it: it counts as not delivered
            with self._cond:
                self._queue.popleft()
                self._outstanding -= 1
                if ok:
                    self.delivered += 1
                else:
                    self.failed += 1
                failed = self.failed
            if not ok and (failed == 1 or failed % _LOG_EVERY == 0):
                self.ctx.log.warning("webhook sink: gave up on %s; %d events failed so far", what, failed)

    def _send(self, body: bytes, what: str) -> bool:
        """POST one event, retrying; True when delivered."""
        delay = self.params.retry_delay
        attempt = 0
        while True:
            attempt += 1
            try:
                self._post(body)
            except _Refused as exc:
                if exc.status not in self._refused_logged:
                    self._refused_logged.add(exc.status)
                    self.ctx.log.warning("webhook sink: %s answered %s to %s; not retried (the request is refused; "
                                         "further %d answers are only counted)", self.shown, exc, what, exc.status)
                return False
            except (OSError, http.client.HTTPException) as exc:
                reason = redact(_reason(exc))
                if not self._down:
                    self._down = True
                    self.ctx.log.warning("webhook sink: %s: %s; retrying each event %d times (%g s doubling)",
                                         self.shown, reason, self.params.retries, self.params.retry_delay)
                if attempt > self.params.retries or self._abort.wait(delay):
                    return False
                delay *= 2
                continue
            if self._down:
                self._down = False
                self.ctx.log.info("webhook sink: %s answers again", self.shown)
            return True

    def _post(self, body: bytes) -> None:
        """One request. Raises `_Refused` for a 4xx other than 429, OSError/HTTPException to retry."""
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.params.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if 400 <= exc.code < 500 and exc.code not in _RETRIED_STATUS:
                raise _Refused(exc.code, exc.reason or "") from None
            if exc.code < 400:  # a redirect urllib does not follow for a POST: the server took it
                return
            raise


def _reason(exc: BaseException) -> str:
    """A short reason for a failed request: ``HTTP 503 Service Unavailable``, ``timed out``,
    ``[Errno 111] Connection refused``."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason or ''}".strip()
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__


__all__ = ["WebhookSink"]
