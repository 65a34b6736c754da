"""One pipeline run: source → stages → sinks on its own thread, fed by its reader thread.

Per frame the engine does a buffer hand-off, the stage calls, the sink calls and one
``streamcnn_frame_done`` hook call; nothing else (see ``tools/bench_engine.py``).
"""

from __future__ import annotations

import collections
import errno
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..api import PipelineInfo, Sink, Source, Stage, StreamInfo, node_name
from ..config import PipelineConfig
from ..errors import SinkWriteError, StageError, StreamcnnError, where
from ..events import EventQueue, make_event
from ..frame import Frame
from ..metrics import FrameRate
from ..pluginmanager import call_hook, hook_failure
from ..redact import redact
from ..runtime import ModelSession
from .buffer import BufferClosed, BufferEmpty
from .inflight import InFlight, Outcome
from .reader import Resume, SourceReader

log = logging.getLogger("streamcnn.engine")

SINK_CLOSE_WAIT = 1.0  # seconds a stopping pipeline waits for its source before closing its sinks
_ERROR_LOG_FIRST = 10  # stage errors logged one by one, then one line every _ERROR_LOG_EVERY
_ERROR_LOG_EVERY = 100
#: errno values of an OSError from a sink that mean "the disk refuses": named with the sink's file
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


@dataclass
class PipelineStats:
    """Counters of one pipeline run (also passed to ``streamcnn_pipeline_stopped``)."""

    frames: int = 0  # frames that went through all stages and sinks
    skipped: int = 0  # frames dropped because a stage or sink raised (on_error: skip)
    dropped: int = 0  # frames the live policy "latest" dropped
    reconnects: int = 0
    pts_discontinuities: int = 0  # frames whose timestamp did not increase (dropped/restamped), re-bases
    lag: float = 0.0  # seconds: age of the last frame when its stages began (now - capture_time)
    lag_max: float = 0.0  # seconds: the largest such age of the run
    queued: int = 0  # frames waiting in the source buffer when the last frame was taken
    queued_max: int = 0
    seconds: float = 0.0
    error: str | None = None
    left_out: str | None = None  # an optional pipeline whose model or media could not be had

    @property
    def fps(self) -> float:
        """Frames per second over the whole run, start-up included."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "skipped": self.skipped, "dropped": self.dropped,
            "reconnects": self.reconnects, "pts_discontinuities": self.pts_discontinuities,
            "lag_max": round(self.lag_max, 3), "queued_max": self.queued_max,
            "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
            "error": self.error,
        }


@dataclass
class PipelineRun:
    """One pipeline being run: built from a `PipelineConfig`, driven by `Engine`."""

    cfg: PipelineConfig
    hook: Any
    max_frames: int | None = None
    stats: PipelineStats = field(default_factory=PipelineStats)
    stop_event: threading.Event = field(default_factory=threading.Event)
    abort_event: threading.Event = field(default_factory=threading.Event)
    reader: SourceReader | None = None
    thread: threading.Thread | None = None
    insist: bool = False  # chosen by name (--pipeline): `optional` does not apply
    in_flight: int = 1  # frames in the leading stateless stages at once (set by the Engine's budget)
    batch: int = 1  # frames per process_batch call of those stages
    _last_error: str = ""
    _taken: int = 0  # frames taken from the source buffer (see `_counting`)
    _last_kind: str = "stage"  # "stage" or "sink": what raised last
    events: EventQueue = field(default_factory=EventQueue)  # emitted, not yet handed to the hook and sinks
    _event_errors: int = 0
    metrics: Any = None  # a streamcnn.metrics.Metrics: per-frame latency histograms observed when set
    #: connecting (no frame yet), running, reconnecting (the source dropped), stopped, failed
    state: str = "connecting"
    event_counts: dict[str, int] = field(default_factory=dict)  # events handed on, by type
    rate: FrameRate = field(default_factory=FrameRate)
    _stages: list[tuple[str, Stage]] = field(default_factory=list)
    _sinks: list[tuple[str, Sink]] = field(default_factory=list)
    _observe: dict[str, Any] = field(default_factory=dict)  # stage name -> its latency histogram child
    _t0: float = 0.0  # perf_counter when the run began
    #: the last frame through the sinks (a reference, not a copy: the live view encodes it only while
    #: someone watches) and how many frames have been through them (``frame_seq``)
    latest: Frame | None = None
    frame_seq: int = 0
    recent_events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    #: go on from a run whose process died (a restarted cluster actor): frame index and pts continue
    #: from there and the sinks continue their files (`streamcnn.api.Context.resumed`)
    resume: Resume | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def alive(self) -> bool:
        """True while the run's thread runs (started and not ended)."""
        return self.thread is not None and self.thread.is_alive()

    def stop(self, drain: bool = True) -> None:
        """Ask the pipeline to stop: the source stops, queued frames are processed (unless
        ``drain`` is false), then sinks are flushed and closed."""
        self.stop_event.set()
        if not drain:
            self.abort_event.set()
        if self.reader is not None:
            self.reader.stop()

    def optional_missing(self, exc: BaseException) -> bool:
        """True when this optional pipeline stopped because a model or media file could not be had
        (e.g. a download failed): it is then left out with a warning rather than failing the run."""
        return self.cfg.optional and not self.insist and isinstance(exc, FileNotFoundError)

    def _on_source_event(self, event: str, detail: dict[str, Any]) -> None:
        # on the reader thread: a plugin that raises is logged (by name) and never reaches the reader
        source = str(detail.get("source", ""))
        call_hook(self.hook.streamcnn_source_event, logging.getLogger(f"streamcnn.{self.name}"),
                  f"pipeline '{self.name}'", pipeline=self.name, source=source, event=event, detail=detail)
        if not self.stop_event.is_set():
            if event == "disconnected":  # a camera that never delivered a frame is still connecting
                self.state = "connecting" if detail.get("first_connect") else "reconnecting"
            else:
                self.state = "running"
        # the same outage as an Event, handed to streamcnn_event and the sinks on the pipeline thread
        self.events.put(make_event(event, self.name, source, **{k: v for k, v in detail.items() if k != "source"}))

    # -- the thread body ---------------------------------------------------------------------
    def run(self) -> None:
        name = self.name
        plog = logging.getLogger(f"streamcnn.{name}")
        stages: list[tuple[str, Stage]] = []
        sinks: list[tuple[str, Sink]] = []
        t0 = self._t0 = time.perf_counter()
        try:
            # everything of this run is built here, on the pipeline's thread, in data-flow order
            for comp in (self.cfg.source, *self.cfg.stages, *self.cfg.sinks):
                comp.ctx.events = self.events  # where Context.emit puts events
                comp.ctx.resumed = self.resume is not None
            for comp in self.cfg.stages:
                stages.append((comp.type_name, comp.build()))
            source: Source = self.cfg.source.build()
            for comp in (*self.cfg.stages, *self.cfg.sinks):
                comp.ctx.source = source.id
            for comp in self.cfg.sinks:
                sinks.append((comp.type_name, comp.build()))
            self._stages, self._sinks = stages, sinks
            policy = self.cfg.source.params.policy or ("latest" if source.live else "all")
            self.reader = SourceReader(
                source, policy, self.cfg.source.params.queue_size, name, on_event=self._on_source_event,
                resume=self.resume,
            )
            if self.stop_event.is_set():
                return
            self.reader.start()
            plog.info("pipeline '%s': reading %s (policy %s)", name, source.id, policy)
            info = PipelineInfo(name, source.id, tuple(c.type_name for c in self.cfg.stages),
                                tuple(c.type_name for c in self.cfg.sinks), self.reader.fps)
            self._call_hook("streamcnn_pipeline_started", plog, pipeline=name, info=info)
            self._loop(stages, sinks, plog)
            if not self.abort_event.is_set():
                self._finish_stages(stages, plog)
            self._dispatch(sinks, plog)
            if self.reader.error is not None:
                raise self.reader.error
            if self.reader.live and self.reader.frames == 0:
                why = f" (last error: {self.reader.last_error})" if self.reader.last_error else ""
                raise StreamcnnError(f"pipeline '{name}': source {source.id} never delivered a frame{why}")
            if self.stats.frames == 0 and self.stats.skipped > 0:
                raise StreamcnnError(
                    f"pipeline '{name}': no frame got through: a {self._last_kind} failed on all {self.stats.skipped} "
                    f"frames (last error: {self._last_error})"
                )
        except StreamcnnError as exc:
            if self.optional_missing(exc):
                self.stats.left_out = str(exc)
                plog.warning("optional pipeline '%s' left out: %s", name, redact(str(exc)))
            else:
                self.stats.error = str(exc)
                plog.error("%s", redact(str(exc)))
        except Exception as exc:  # noqa: BLE001 - report, never crash the other pipelines
            self.stats.error = f"{type(exc).__name__}: {exc}"
            plog.exception("pipeline '%s' failed", name)
        finally:
            if self.reader is not None:
                self.reader.stop()
                # give the capture a moment to be released; a live capture stuck in an open or read
                # is abandoned (a daemon thread; the CLI ends the process without finalisation), so
                # sinks close within SINK_CLOSE_WAIT s whatever the cameras do
                if not self.reader.join(SINK_CLOSE_WAIT):
                    plog.debug("pipeline '%s': the source is still closing (abandoned)", name)
                self.stats.dropped = self.reader.dropped
                self.stats.reconnects = self.reader.reconnects
                self.stats.pts_discontinuities = self.reader.pts_discontinuities
            for (sink_name, sink), comp in zip(sinks, self.cfg.sinks, strict=False):
                problem = _close(sink, plog, name, f"sink '{sink_name}'", comp)
                if problem:  # a sink that cannot finish its output fails the run (exit code 1)
                    self.stats.error = problem if self.stats.error is None else f"{self.stats.error}\n{problem}"
            for stage_name, stage in stages:
                _close(stage, plog, name, f"stage '{stage_name}'")
            self.stats.seconds = time.perf_counter() - t0
            self.state = "failed" if self.stats.error is not None else "stopped"
            summary = {k: v for k, v in self.stats.as_dict().items() if k != "error"}
            plog.info("pipeline '%s' stopped: %s", name, summary)
            self._call_hook("streamcnn_pipeline_stopped", plog, pipeline=name, stats=self.stats.as_dict())

    def _call_hook(self, hook_name: str, plog: logging.Logger, **kwargs: Any) -> None:
        """Call a lifecycle hook; a plugin that raises is reported by name, never fatal."""
        call_hook(getattr(self.hook, hook_name), plog, f"pipeline '{self.name}'", **kwargs)

    def _loop(self, stages: list[tuple[str, Stage]], sinks: list[tuple[str, Sink]], plog: logging.Logger) -> None:
        reader = self.reader
        assert reader is not None
        take = self._counting(self._taker(reader, plog))
        n_par = stateless_prefix([stage for _, stage in stages])
        parallel, serial = stages[:n_par], stages[n_par:]
        inflight: InFlight | None = None
        if parallel:
            limit = self.max_frames
            inflight = InFlight(take, lambda frames: self._work(parallel, frames), self.in_flight, self.batch,
                                self.name, None if limit is None else lambda: self._taken - self.stats.skipped < limit
                                ).start()
            plog.debug("pipeline '%s': stages %s on %d worker thread(s)%s", self.name,
                       ", ".join(n for n, _ in parallel), self.in_flight,
                       f", batches of up to {self.batch}" if self.batch > 1 else "")
        sinks_open = [not sinks]
        try:
            while True:
                if self.abort_event.is_set():
                    return
                try:
                    outcomes = inflight.get(0.25) if inflight is not None else [(take(0.25), None)]
                except BufferEmpty:
                    self._dispatch(sinks, plog)  # a camera's events between frames
                    continue
                except BufferClosed:
                    return
                for frame, err in outcomes:
                    if err is not None:
                        self._failed(*err, plog)
                    elif self._finish(frame, serial, sinks, sinks_open, plog):
                        return
        finally:
            if inflight is not None:
                inflight.stop()

    def _counting(self, take):
        """``take`` counting the frames taken in ``_taken`` (for ``max_frames`` with frames in flight:
        no frame is taken, and processed for nothing, once the frames taken and not failed reach it)."""
        self._taken = 0

        def counted(timeout: float) -> Frame:
            frame = take(timeout)
            if not self._taken and self.reader is not None:  # the stages learn the frame rate now
                for comp in (*self.cfg.stages, *self.cfg.sinks):
                    comp.ctx.fps = self.reader.fps
                if self.state == "connecting":
                    self.state = "running"
            self._taken += 1
            return frame

        return counted

    def _taker(self, reader: SourceReader, plog: logging.Logger):
        """``take(timeout)``: the next frame from the source buffer, with the lag statistics of a
        live source updated (and the one lag warning given) as it is taken."""
        stats = self.stats
        if not reader.live:
            return reader.get
        watch_lag = reader.buffer.policy == "all"
        lag_warning = float(getattr(self.cfg.source.params, "lag_warning", 5.0))
        warned = [False]

        def take(timeout: float) -> Frame:
            frame = reader.get(timeout=timeout)
            stats.lag = max(0.0, time.time() - frame.capture_time)
            stats.lag_max = max(stats.lag_max, stats.lag)
            stats.queued = reader.queued
            stats.queued_max = max(stats.queued_max, stats.queued)
            if watch_lag and not warned[0] and stats.lag > lag_warning:
                warned[0] = True
                plog.warning(
                    "pipeline '%s': live source %s is %.1f s behind (%d frames queued) under policy: all: the "
                    "stages take longer per frame than the camera sends them and the delay keeps growing; use "
                    "policy: latest (always the newest frame), a lighter model, or every: N on the slow stage "
                    "(this warning: lag_warning, %g s)", self.name, reader.source.id, stats.lag, stats.queued,
                    lag_warning)
            return frame

        return take

    def _work(self, stages: list[tuple[str, Stage]], frames: list[Frame]) -> list[Outcome]:
        """Run ``stages`` on consecutive ``frames`` (a stage worker thread, or the pipeline thread):
        one batch call per stage when there are several frames (a stage whose ``process_batch``
        raises is run frame by frame instead, so an error names its frame), then per frame."""
        outcomes: list[Outcome] = [(f, None) for f in frames]
        if len(frames) == 1:
            return [self._run_stages(stages, frames[0])]
        for i, (_, stage) in enumerate(stages):
            live = [k for k, (_, err) in enumerate(outcomes) if err is None]
            if not live:
                break
            batch = [outcomes[k][0] for k in live]
            try:
                t0 = time.perf_counter()
                done = stage.process_batch(batch)
                self._observe_stage(stages[i][0], (time.perf_counter() - t0) / len(batch), len(batch))
                if not isinstance(done, list) or len(done) != len(batch) or not all(
                        type(f) is Frame and _valid_image(f.image) for f in done):
                    raise TypeError("process_batch() must return a list of as many Frames as it was given")
            except Exception:  # noqa: BLE001 - redone per frame below, which names the frame that fails
                done = None
            for j, k in enumerate(live):
                if done is not None:
                    outcomes[k] = (done[j], None)
                else:
                    outcomes[k] = self._run_stages(stages[i:i + 1], batch[j])
        return outcomes

    def _run_stages(self, stages: list[tuple[str, Stage]], frame: Frame) -> Outcome:
        """Run ``stages`` on one frame: (frame, None), or (frame, (StageError, cause)) when one raised
        or returned something that is not the frame."""
        index = frame.index
        stage_name = ""
        try:
            timed = self.metrics is not None  # latency histograms only when a control server reads them
            for stage_name, stage in stages:  # noqa: B007 - stage_name names the failing stage below
                t0 = time.perf_counter() if timed else 0.0
                frame = stage.process(frame)
                if timed:
                    self._observe_stage(stage_name, time.perf_counter() - t0)
                if type(frame) is not Frame or not _valid_image(frame.image):
                    raise TypeError(_bad_output(frame))
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not kill a long run
            return frame, (StageError(self.name, stage_name, index, exc), exc)
        return frame, None

    def _finish(self, frame: Frame, stages: list[tuple[str, Stage]], sinks: list[tuple[str, Sink]],
                sinks_open: list[bool], plog: logging.Logger) -> bool:
        """On the pipeline thread, in frame order: the remaining ``stages``, the sinks (opened on the
        first frame), ``streamcnn_frame_done``; True when ``max_frames`` is reached."""
        name, stats, index = self.name, self.stats, frame.index
        if stages:
            frame, err = self._run_stages(stages, frame)
            if err is not None:
                self._failed(*err, plog)
                return False
        self._dispatch(sinks, plog)  # this frame's events (and earlier ones) before the frame itself
        if not sinks_open[0]:
            sinks_open[0] = True
            assert self.reader is not None
            stream = StreamInfo(self.reader.fps, frame.width, frame.height, self.reader.live)
            for sink_name, sink in sinks:
                try:
                    sink.open(stream)
                except Exception as exc:  # noqa: BLE001 - reported like a write error
                    raise StageError(name, sink_name, index, exc, kind="sink") from exc
        failed = False
        fatal: StageError | None = None
        for i, (sink_name, sink) in enumerate(sinks):
            try:
                sink.write(frame)
            except SinkWriteError as exc:  # the output cannot be written: not a per-frame glitch
                failed = True
                fatal = fatal or StageError(name, sink_name, index, exc, kind="sink")
            except Exception as exc:  # noqa: BLE001 - the other sinks still get the frame
                failed = True
                note = _output_note(self.cfg.sinks[i] if i < len(self.cfg.sinks) else None, exc)
                self._failed(StageError(name, sink_name, index, exc, kind="sink", note=note), exc, plog)
        if fatal is not None:  # stops this pipeline whatever on_error says; the others go on
            raise fatal from fatal.cause
        if failed:
            return False
        stats.frames += 1
        self.rate.tick()
        self.latest, self.frame_seq = frame, self.frame_seq + 1
        if self.metrics is not None and frame.capture_time > 0:
            self.metrics.frame_age.labels(name).observe(max(0.0, time.time() - frame.capture_time))
        frame_done = self.hook.streamcnn_frame_done
        try:
            frame_done(pipeline=name, frame=frame)
        except Exception as exc:  # noqa: BLE001 - a lifecycle hook must not kill the run either
            msg = f"pipeline '{name}': {hook_failure(frame_done, exc, f' on frame {index}')}"
            if self.cfg.on_error == "stop":
                raise StreamcnnError(msg) from exc
            plog.error("%s", msg)
        if self.max_frames is not None and stats.frames >= self.max_frames:
            assert self.reader is not None
            self.reader.stop()
            return True
        return False

    def _observe_stage(self, stage_name: str, seconds: float, frames: int = 1) -> None:
        """One frame's time in a stage (``frames`` observations of a batch's share) to the metrics."""
        if self.metrics is None:
            return
        child = self._observe.get(stage_name)
        if child is None:
            child = self._observe[stage_name] = self.metrics.stage_seconds.labels(self.name, stage_name)
        for _ in range(frames):
            child.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """What the control plane shows of this run, read from its live counters (any thread):
        ``state``, ``source``, the counters of `PipelineStats` and of the reader (``frames_read``,
        ``frames_dropped`` ...), ``fps_now`` (last 2 s), ``fps`` (whole run), ``queued``,
        ``events`` (by type), ``providers`` (model stage → execution provider), ``sinks`` (a sink's
        ``stats()``), ``error``, ``node`` (the machine it runs on), ``last_index``/``last_pts`` (of
        the last frame through the sinks; None before)."""
        reader, stats = self.reader, self.stats
        sinks: dict[str, dict[str, int]] = {}
        for sink_name, sink in list(self._sinks):
            counts = sink.stats() if hasattr(sink, "stats") else {}
            if counts:
                key, n = sink_name, 2
                while key in sinks:
                    key, n = f"{sink_name}#{n}", n + 1
                sinks[key] = dict(counts)
        providers = {}
        for stage_name, stage in list(self._stages):
            session = _session_of(stage)
            if session is not None:
                providers[stage_name] = str(session.provider)
        latest = self.latest
        return {
            "name": self.name, "state": self.state, "node": node_name(),
            "last_index": latest.index if latest is not None else None,
            "last_pts": round(latest.pts, 6) if latest is not None else None,
            "source": redact(reader.source.id) if reader is not None else redact(str(self.cfg.source.params.uri)),
            "frames_read": reader.frames if reader is not None else 0,
            "frames_processed": stats.frames, "frames_skipped": stats.skipped,
            "frames_dropped": reader.dropped if reader is not None else stats.dropped,
            "pts_discontinuities": reader.pts_discontinuities if reader is not None else stats.pts_discontinuities,
            "reconnects": reader.reconnects if reader is not None else stats.reconnects,
            "queued": reader.queued if reader is not None else 0,
            "fps_now": round(self.rate.fps(), 3) if self.state == "running" else 0.0,
            "fps": round(stats.fps if stats.seconds else stats.frames / max(1e-9, time.perf_counter() - self._t0), 3)
            if self._t0 else None,
            "events": dict(self.event_counts), "providers": providers, "sinks": sinks,
            "last_events": [e.to_dict() for e in list(self.recent_events)[-5:]],
            "error": redact(stats.error) if stats.error else (
                redact(reader.last_error) if reader is not None and reader.last_error
                and self.state in ("connecting", "reconnecting") else None),
        }

    def _finish_stages(self, stages: list[tuple[str, Stage]], plog: logging.Logger) -> None:
        """The stream ended: each stage's ``finish`` (its last events), in order; one that raises is
        logged with its name (and stops the pipeline under ``on_error: stop``)."""
        for stage_name, stage in stages:
            try:
                stage.finish()
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not lose the sinks' output
                err = StageError(self.name, stage_name, self.stats.frames, exc, note=" (in finish(), at the end)")
                if self.cfg.on_error == "stop":
                    raise err from exc
                plog.error("%s", err)

    def _dispatch(self, sinks: list[tuple[str, Sink]], plog: logging.Logger) -> None:
        """Hand the waiting events, oldest first, to ``streamcnn_event`` and then to every sink's
        ``event``. A sink that raises is reported with its name, the event type and frame index (the
        run stops on `SinkWriteError`, and on anything under ``on_error: stop``)."""
        for ev in self.events.take():
            self.event_counts[ev.type] = self.event_counts.get(ev.type, 0) + 1
            self.recent_events.append(ev)
            self._call_hook("streamcnn_event", plog, pipeline=self.name, event=ev)
            for sink_name, sink in sinks:
                try:
                    sink.event(ev)
                except Exception as exc:  # noqa: BLE001 - the other sinks still get the event
                    at = self.stats.frames if ev.frame_index is None else ev.frame_index
                    err = StageError(self.name, sink_name, at, exc, kind="sink",
                                     note=f" (event {ev.type!r})")
                    if isinstance(exc, SinkWriteError) or self.cfg.on_error == "stop":
                        raise err from exc
                    self._event_errors += 1
                    if self._event_errors <= _ERROR_LOG_FIRST or self._event_errors % _ERROR_LOG_EVERY == 0:
                        plog.error("%s (%d event errors so far)", err, self._event_errors)

    def _failed(self, err: StageError, exc: BaseException, plog: logging.Logger) -> None:
        """A stage or sink raised on a frame: stop the pipeline (``on_error: stop``) or count the
        frame as skipped and log it (the first few one by one, then every 100th)."""
        if self.cfg.on_error == "stop":
            raise err from exc
        self.stats.skipped += 1
        self._last_error, self._last_kind = str(err), err.kind
        if self.stats.skipped <= _ERROR_LOG_FIRST or self.stats.skipped % _ERROR_LOG_EVERY == 0:
            plog.error("%s (frame skipped; %d skipped so far)", err, self.stats.skipped)
            plog.debug("traceback", exc_info=exc)


def _session_of(obj: Any, depth: int = 2) -> ModelSession | None:
    """The first `ModelSession` among ``obj``'s attributes (and theirs, lists and dicts too, to ``depth``)."""
    values = list(obj.values()) if isinstance(obj, dict) else list(obj) if isinstance(obj, (list, tuple)) \
        else list(getattr(obj, "__dict__", {}).values())
    for value in values:
        if isinstance(value, ModelSession):
            return value
    if depth > 0:
        for value in values:
            if isinstance(value, (dict, list, tuple)) or hasattr(value, "__dict__"):
                found = _session_of(value, depth - 1)
                if found is not None:
                    return found
    return None


def stateless_prefix(stages: list[Stage]) -> int:
    """How many of ``stages``, from the first, are ``stateless`` (may run on several frames at once)."""
    n = 0
    for stage in stages:
        if not getattr(stage, "stateless", False):
            break
        n += 1
    return n


def _valid_image(img: Any) -> bool:
    return isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def _bad_output(frame: Any) -> str:
    if frame is None:
        return "process() returned None; it must return the Frame"
    if type(frame) is not Frame:
        return f"process() returned {type(frame).__name__}; it must return the Frame"
    img = frame.image
    what = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
    return f"frame.image must be a uint8 H×W×3 BGR array, got a {what}"


def _output_note(comp: Any, exc: BaseException | None) -> str:
    """`` (writing FILE)`` for a disk-level OSError (full disk, quota, file too large, read-only, I/O
    error) that does not name its file, from the sink's declared file outputs; else empty."""
    if comp is None or not (isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS and not exc.filename):
        return ""
    try:
        files = [o.target for o in comp.cls.outputs(comp.params, comp.ctx) if o.kind == "file"]
    except Exception:  # noqa: BLE001 - only for the message
        return ""
    return f" (writing {', '.join(files)})" if files else ""


def _close(obj: Any, plog: logging.Logger, pipeline: str, label: str | None = None, comp: Any = None) -> str | None:
    """Close a stage or sink; a failure is logged (traceback at debug level) and returned as a
    message (``pipeline 'cam': sink 'video' failed to close: ...``), the others are closed anyway."""
    try:
        obj.close()
    except Exception as exc:  # noqa: BLE001 - keep closing the others
        what = label or type(obj).__name__
        detail = "" if isinstance(exc, StreamcnnError) else where(exc, skip="streamcnn/engine/")
        msg = f"pipeline '{pipeline}': {what} failed to close: {type(exc).__name__}: {exc}{detail}"
        msg += _output_note(comp, exc)
        plog.error("%s", msg)
        plog.debug("traceback", exc_info=exc)
        return msg
    return None


__all__ = ["PipelineRun", "PipelineStats"]
