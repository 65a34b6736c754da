"""`SourceReader`: runs a `Source` in a background thread and feeds a `FrameBuffer`.

Non-live sources (files, folders, the test pattern) are read until ``read()`` returns None,
then the buffer is closed. A failure to open or a ``read()`` that raises is kept in ``.error``
(a `SourceError`) and the buffer is closed; the engine reports it.

Live sources (``source.live``) with ``params.reconnect`` are supervised: ``read()`` returning
None (``stream ended``, or ``no frame for … (read timed out)`` when that read waited long) or
raising, a failed ``open()``, or no frame for ``params.stall_timeout`` seconds (a watchdog:
``no frame for N s (stall_timeout)``; the stuck ``read()`` is abandoned, not waited for) count
as an outage. Each outage emits exactly one ``disconnected`` event (logged as ``cannot connect
to …`` while the source never delivered a frame), then the reader reopens the source
(``close()`` then ``open()`` on the same object, see the contract in `streamcnn.api.Source` and
``streamcnn_plugins.sources``) after ``backoff_initial · 2^k`` seconds, capped at
``backoff_max``, until frames flow again, which emits exactly one ``reconnected`` event.
A live source with ``reconnect: false`` ends (with ``.error`` set) at its first outage.

Stopping: ``stop()`` never blocks. After it the reader starts no new attempt, emits no event
and logs no outage or reconnect (the read that ``stop()`` interrupts is not an outage).
``join(timeout)`` waits for the reader thread *and* for every capture thread still inside
``open()``/``read()`` and the closing of the source, so that a capture is released before the
process exits (a ``cv2`` capture thread still inside FFmpeg at interpreter exit aborts the
process); a ``read()`` that returns within its read timeout releases its capture then.

``read()`` may return a third item, a dict merged into ``Frame.meta`` (e.g. ``{"file": …}``).

Frame ``index`` counts frames handed over by the source and is never reset; ``pts`` and
``capture_time`` come from a `Timeline` (strictly increasing seconds per run, the source's own
timestamps where it gives them; see `streamcnn.engine.timeline`). A source may give the wall-clock
time its frame arrived as ``meta["capture_time"]`` (the stream source stamps each packet as it is
demuxed); else the reader stamps it when ``read()`` returns.

At most `MAX_PENDING_ATTEMPTS` open-and-read attempts of one live source run at a time: an
abandoned attempt still stuck inside a capture library is waited for (in backoff) before another
starts, so hung opens never pile up as threads.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api import Source
from ..errors import SourceError
from ..frame import Frame
from ..redact import redact
from .buffer import BufferClosed, BufferEmpty, FrameBuffer
from .timeline import Timeline


@dataclass(frozen=True)
class Resume:
    """Where a pipeline whose process died goes on (see `SourceReader`'s ``resume``).

    Attributes:
        index: the next frame index (the last one that went through every sink, plus 1).
        pts: seconds, the pts of that last frame.
        wall: seconds since the epoch (``time.time()``) when that frame went through.
    """

    index: int
    pts: float
    wall: float


__all__ = ["BufferClosed", "BufferEmpty", "Resume", "SourceReader", "backoff_delays"]

DEFAULT_OPEN_TIMEOUT = 10.0  # seconds allowed for open() when the source names none
BLOCKED_PUT = 0.1  # seconds: a buffer.put() that took longer waited for room (backpressure)
MAX_PENDING_ATTEMPTS = 2  # live attempts of one source alive at once (the current one + one abandoned)


def backoff_delays(initial: float, cap: float) -> Iterator[float]:
    """Endless reconnect delays in seconds: ``initial · 2^k`` capped at ``cap`` (1, 2, 4, …, 30, 30)."""
    for k in itertools.count():
        delay = initial * 2.0**k
        if delay >= cap:
            break
        yield delay
    while True:
        yield cap


class _Attempt:
    """One open-and-read session of a live source, run in its own daemon thread."""

    def __init__(self, generation: int, started: float) -> None:
        self.thread: threading.Thread | None = None
        self.generation = generation
        self.started = started  # clock() when the attempt began
        self.opened_at: float | None = None  # clock() when open() returned
        self.last_frame: float | None = None  # clock() of the last frame
        self.last_fresh: float | None = None  # clock() when the last frame's data arrived
        self.frames = 0
        self.busy = False  # inside buffer.put()
        self.failure: str | None = None  # why it ended (redacted)
        self.done = threading.Event()


class SourceReader:
    """Reads ``source`` in a daemon thread into a `FrameBuffer` (see the module docstring).

    Args:
        source: the source (not yet opened).
        policy: buffer policy ``"latest"`` or ``"all"``.
        queue_size: buffer capacity in frames under ``all``.
        pipeline: pipeline name, for the logger ``streamcnn.<pipeline>.source``.
        on_event: called as ``on_event("disconnected" | "reconnected", detail)`` from the reader
            thread; ``detail`` has ``source`` (redacted id), ``reason`` / ``downtime`` (s) etc.
        clock: monotonic clock in seconds (pts of sources without one, stall watchdog).
        sleep: interruptible wait used for backoff: ``sleep(seconds) -> True when stop() was
            called`` (default: the stop event's ``wait``).
        resume: go on from a run that ended abruptly (a cluster actor whose process died): frame
            indices continue at ``resume.index``; a non-live source's first ``resume.index`` frames
            are read and skipped (its own pts then follow on), a live source's pts continue at
            ``resume.pts`` plus the wall-clock time since ``resume.wall`` (the outage shows as a gap,
            as after a reconnect).

    Attributes:
        frames: frames handed over by the source so far.
        reconnects: successful reconnections.
        error: the `SourceError` that ended reading, or None.
        last_error: the most recent failure description of a live source (redacted), or None.
    """

    def __init__(
        self,
        source: Source,
        policy: str,
        queue_size: int,
        pipeline: str,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
        resume: Resume | None = None,
    ) -> None:
        self.source = source
        self._source_id = source.id  # redacted once, not per frame
        self.pipeline = pipeline
        self.buffer = FrameBuffer(policy, queue_size)  # type: ignore[arg-type]
        self.log = logging.getLogger(f"streamcnn.{pipeline}.source")
        self._on_event = on_event
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._helpers: list[threading.Thread] = []  # capture (attempt) and closer threads
        self._closer: threading.Thread | None = None
        self._t0: float | None = None
        self.timeline: Timeline | None = None  # made at start()
        self._last_capture = time.time()  # capture time of the last frame (wall clock)
        self._generation = 0
        self._fps: float | None = None
        self.frames = 0
        self.reconnects = 0
        self.error: SourceError | None = None
        self.last_error: str | None = None
        self.resume = resume
        self._skip = 0  # frames of a non-live source still to skip (resume)

    # -- public ----------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return bool(getattr(self.source, "live", False))

    @property
    def dropped(self) -> int:
        """Frames overwritten before the pipeline took them (policy ``latest``)."""
        return self.buffer.dropped

    @property
    def fps(self) -> float | None:
        """The source's nominal frame rate in frames/s (known after it opened), or None."""
        return self._fps

    @property
    def pts_discontinuities(self) -> int:
        """Frames whose timestamp did not increase (dropped or restamped) plus clock re-bases."""
        return self.timeline.discontinuities if self.timeline is not None else 0

    @property
    def queued(self) -> int:
        """Frames waiting in the buffer now."""
        return len(self.buffer)

    def start(self) -> SourceReader:
        """Start the reader thread (once); returns self."""
        if self._thread is None:
            self._t0 = self._clock()
            p = self.source.params
            start = self._t0
            if self.resume is not None:
                self.frames = self.resume.index
                if self.live:  # seconds since the reader "started" = the resumed pts plus the outage
                    start -= self.resume.pts + max(0.0, time.time() - self.resume.wall)
                else:
                    self._skip = self.resume.index
            self.timeline = Timeline(
                self.live, start, getattr(p, "pts", "stream") != "arrival", getattr(p, "pts_policy", "drop"),
                float(getattr(p, "pts_reset", 5.0)),
            )
            if self.resume is not None and self.live:  # a file's own pts follow on by themselves
                self.timeline.last = self.resume.pts
            self._thread = threading.Thread(
                target=self._run, name=f"streamcnn-{self.pipeline}-reader", daemon=True
            )
            self._thread.start()
        return self

    def get(self, timeout: float | None = None) -> Frame:
        """Next frame per the policy (starts the reader if needed).

        Raises:
            BufferEmpty: no frame within ``timeout`` seconds.
            BufferClosed: reading ended (end of stream, error, or ``stop()``) and the buffer is drained.
        """
        self.start()
        return self.buffer.get(timeout)

    def stop(self) -> None:
        """Stop reading; never blocks (closes the source best-effort in a background thread).

        No attempt or reconnect starts after it, and no ``disconnected``/``reconnected`` event
        is emitted."""
        with self._lock:
            self._stop.set()
            self._generation += 1  # any running attempt is now stale
            start_closer = self._closer is None
            if start_closer:
                name = f"streamcnn-{self.pipeline}-close"
                self._closer = threading.Thread(target=self._close_source, name=name, daemon=True)
                self._helpers.append(self._closer)
        self.buffer.close()
        if start_closer:
            assert self._closer is not None
            self._closer.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for the reader thread, every capture
        thread (a ``read()`` interrupted by ``stop()`` releases its capture when it returns, within
        its read timeout) and the closing of the source.

        Returns:
            True when all of them have ended, False when one is still running (e.g. a ``read()``
            that ignores its timeout; it is abandoned, and releases its capture if it ever returns).
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if self._thread is not None:
            self._thread.join(left())
            if self._thread.is_alive():
                return False
        with self._lock:
            helpers = list(self._helpers)
        for thread in helpers:
            if thread.ident is not None:  # started
                thread.join(left())
        with self._lock:
            self._helpers = [t for t in self._helpers if t.is_alive() or t.ident is None]
            return not any(t.is_alive() for t in self._helpers)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- internals -------------------------------------------------------------------------
    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # noqa: BLE001 - best effort
            self.log.debug("closing source %s failed: %s", self.source.id, redact(str(exc)))

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        return redact(text)

    def _emit(self, event: str, detail: dict[str, Any]) -> None:
        if self._stop.is_set():
            return  # a stopping reader reports no outage and no reconnect
        detail = {"source": self.source.id, **detail}
        if event == "disconnected" and detail.get("first_connect"):
            self.log.warning("cannot connect to %s: %s (will keep retrying with backoff)", self.source.id,
                             detail.get("reason"))
        elif event == "disconnected":
            self.log.warning("source %s disconnected: %s", self.source.id, detail.get("reason"))
        elif detail.get("first_connect"):
            self.log.info("source %s connected after %.1f s", self.source.id, detail.get("downtime", 0.0))
        else:
            self.log.info("source %s reconnected after %.1f s", self.source.id, detail.get("downtime", 0.0))
        if self._on_event is not None:
            try:
                self._on_event(event, detail)
            except Exception:  # noqa: BLE001 - a broken listener must not kill the reader
                self.log.exception("source event listener failed on %r", event)

    @staticmethod
    def _split(item: tuple) -> tuple[np.ndarray, float | None, dict[str, Any] | None]:
        """``(image, pts)`` or ``(image, pts, meta)`` from ``read()``."""
        if len(item) == 3:
            return item[0], item[1], item[2]
        image, pts = item
        return image, pts, None

    def _deliver(self, image: np.ndarray, pts: float | None, generation: int | None = None,
                 meta: dict[str, Any] | None = None) -> bool:
        """Stamp and buffer one frame; False when reading must stop (closed, stopped or stale).
        A frame the timeline drops (a timestamp that did not increase) is not buffered (True)."""
        arrival = meta.pop("capture_time", None) if meta else None
        with self._lock:
            if self._stop.is_set() or (generation is not None and generation != self._generation):
                return False
            assert self.timeline is not None
            placed = self.timeline.place(pts, self._clock(), float(arrival or time.time()), self._fps)
            if placed is None:
                return True
            frame = Frame(image, self.frames, placed[0], source=self._source_id, capture_time=placed[1])
            self._last_capture = placed[1]
            if meta:
                frame.meta.update(meta)
            self.frames += 1
        return self.buffer.put(frame)

    def _run(self) -> None:
        try:
            if self.live:
                self._run_live()
            else:
                self._run_plain()
        except Exception as exc:  # noqa: BLE001 - reported through .error
            self.error = SourceError(f"source {self.source.id}: {self._describe(exc)}")
            self.log.error("%s", self.error)
        finally:
            if not self.live:
                # release before the consumer learns the end: the process may exit right after,
                # and a cv2 capture released during interpreter exit aborts it
                self._close_source()
            self.buffer.close()

    def _run_plain(self) -> None:
        try:
            self.source.open()
        except Exception as exc:  # noqa: BLE001
            self.error = exc if isinstance(exc, SourceError) else SourceError(self._describe(exc))
            self.log.debug("cannot open source %s: %s (the pipeline reports it)", self.source.id, self._describe(exc))
            return
        self._fps = self.source.fps
        while not self._stop.is_set():
            item = self.source.read()
            if item is None:
                self.log.info("source %s ended after %d frames", self.source.id, self.frames)
                return
            if self._skip > 0:  # resumed: these frames went through the run that died
                self._skip -= 1
                continue
            image, pts, meta = self._split(item)
            if not self._deliver(image, pts, None, meta):
                return

    # live ------------------------------------------------------------------------------------
    def _start_attempt(self) -> _Attempt | None:
        """Start an open-and-read attempt in a capture thread; None once ``stop()`` was called."""
        with self._lock:
            if self._stop.is_set():
                return None
            self._generation += 1
            attempt = _Attempt(self._generation, self._clock())
            attempt.thread = threading.Thread(
                target=self._attempt_loop, args=(attempt,), name=f"streamcnn-{self.pipeline}-capture", daemon=True
            )
            self._helpers = [t for t in self._helpers if t.is_alive()] + [attempt.thread]
            attempt.thread.start()
        return attempt

    def _pending(self) -> int:
        with self._lock:
            return sum(1 for t in self._helpers if t.is_alive() and t.name.endswith("-capture"))

    def _wait_for_abandoned(self, patience: float) -> bool:
        """Wait while `MAX_PENDING_ATTEMPTS` attempts of this source are still alive (abandoned ones
        stuck in the capture library); False when stopped meanwhile. Logged once per wait."""
        logged = False
        while self._pending() >= MAX_PENDING_ATTEMPTS:
            if not logged:
                self.log.info("source %s: waiting for %d earlier connection attempts to give up before the next one",
                              self.source.id, self._pending())
                logged = True
            if self._sleep(min(1.0, patience)) or self._stop.is_set():
                return False
        return not self._stop.is_set()

    def _current(self, attempt: _Attempt) -> bool:
        return not self._stop.is_set() and attempt.generation == self._generation

    def _attempt_loop(self, attempt: _Attempt) -> None:
        """Open the source and read it until failure, stop, or being abandoned (stale generation)."""
        stall = float(self.source.params.stall_timeout)
        slow_read = min(1.0, stall / 2)  # a read() that returns None after this long timed out
        try:
            with self._lock:
                if not self._current(attempt):
                    return
            try:
                self.source.open()
            except Exception as exc:  # noqa: BLE001
                text = self._describe(exc)
                attempt.failure = text if isinstance(exc, SourceError) else f"open failed: {text}"
                return
            attempt.opened_at = self._clock()
            self._fps = self.source.fps or self._fps
            with self._lock:
                if attempt.generation == self._generation and self.timeline is not None:
                    self.timeline.new_segment()
            while self._current(attempt):
                began = self._clock()
                try:
                    item = self.source.read()
                except Exception as exc:  # noqa: BLE001
                    attempt.failure = f"read failed: {self._describe(exc)}"
                    return
                if item is None:
                    waited = self._clock() - began
                    if waited >= slow_read:
                        since = self._clock() - (attempt.last_fresh or attempt.opened_at or began)
                        attempt.failure = f"no new frame for {since:.1f} s (read timed out)"
                    else:
                        attempt.failure = "stream ended"
                    return
                image, pts, meta = self._split(item)
                attempt.last_frame = self._clock()
                attempt.frames += 1
                attempt.busy = True  # a put() blocked by backpressure is not a stall
                try:
                    if not self._deliver(image, pts, attempt.generation, meta):
                        return
                finally:
                    put_took = self._clock() - attempt.last_frame
                    attempt.last_frame = self._clock()
                    # fresh = when the newest frame was sent (its capture time), not when it was read
                    # out of a buffer; time spent waiting for room in the queue is no stall either
                    sent = attempt.last_frame - max(0.0, time.time() - self._last_capture)
                    fresh = attempt.last_frame if put_took > BLOCKED_PUT else sent
                    attempt.last_fresh = fresh if attempt.last_fresh is None else max(attempt.last_fresh, fresh)
                    attempt.busy = False
        finally:
            if self._stop.is_set():
                # stop()'s closer may have run before this open() returned: release here too,
                # in this thread, before join() reports the reader ended
                self._close_source()
            attempt.done.set()

    def _watch(self, attempt: _Attempt, stall: float, open_limit: float, on_first_frame) -> str | None:
        """Wait until ``attempt`` fails or stalls; returns the reason, None when stopped."""
        poll = min(0.05, stall / 5)
        announced = False
        while not self._stop.is_set():
            if attempt.done.wait(poll):
                if self._stop.is_set():
                    return None  # the read that stop() interrupted is not an outage
                if attempt.frames and not announced:
                    on_first_frame()
                return attempt.failure or "stream ended"
            if attempt.frames and not announced:
                announced = True
                on_first_frame()
            now = self._clock()
            if attempt.opened_at is None:
                if now - attempt.started > open_limit:
                    return f"open did not finish within {open_limit:g} s"
            else:
                since = attempt.last_fresh if attempt.last_fresh is not None else attempt.opened_at
                if not attempt.busy and now - since > stall:
                    return f"no new frame for {stall:g} s (stall_timeout)"
        return None

    def _run_live(self) -> None:
        params = self.source.params
        stall = float(params.stall_timeout)
        reconnect = bool(params.reconnect)
        open_limit = float(getattr(params, "open_timeout", None) or DEFAULT_OPEN_TIMEOUT) + stall
        delays: Iterator[float] | None = None
        down_since: float | None = None  # clock() when the current outage began
        tries = 0
        state = {"connected_once": False}

        def on_first_frame() -> None:
            nonlocal delays, down_since, tries
            if down_since is not None and not self._stop.is_set():
                self.reconnects += 1
                self._emit("reconnected", {"downtime": self._clock() - down_since, "attempts": tries,
                                           "index": self.frames, "first_connect": not state["connected_once"]})
            delays, down_since, tries = None, None, 0
            state["connected_once"] = True

        while not self._stop.is_set():
            if not self._wait_for_abandoned(float(params.backoff_max)):
                return  # stopped
            attempt = self._start_attempt()
            if attempt is None:
                return  # stopped
            tries += 1
            reason = self._watch(attempt, stall, open_limit, on_first_frame)
            if reason is None or self._stop.is_set():
                return
            with self._lock:
                self._generation += 1  # abandon the attempt: a late frame from it is dropped
            self._close_source()  # never blocks; a stuck read() releases its capture on return
            if self._stop.is_set():
                return
            self.last_error = reason
            if not reconnect:
                said = reason if self.source.id in reason else f"source {self.source.id}: {reason}"
                self.error = SourceError(f"{said} (reconnect: false)")
                return  # the pipeline reports it, once
            if down_since is None:
                down_since = self._clock()
                delays = backoff_delays(float(params.backoff_initial), float(params.backoff_max))
                self._emit("disconnected", {"reason": reason, "index": self.frames,
                                            "first_connect": not state["connected_once"]})
            else:
                self.log.debug("source %s still down (try %d): %s", self.source.id, tries, reason)
            assert delays is not None
            delay = next(delays)
            if self._stop.is_set():
                return
            verb = "reconnecting to" if state["connected_once"] else "retrying"
            self.log.info("%s %s in %g s", verb, self.source.id, delay)
            if self._sleep(delay) or self._stop.is_set():
                return
