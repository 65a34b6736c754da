"""One pipeline run: source → stages → sinks on its own thread, fed by its reader thread.

Per frame the engine does a buffer hand-off, the stage calls, the sink calls and one
``streamcnn_frame_done`` hook call; nothing else (see ``tools/bench_engine.py``).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..api import PipelineInfo, Sink, Source, Stage, StreamInfo
from ..config import PipelineConfig
from ..errors import SinkWriteError, StageError, StreamcnnError, where
from ..frame import Frame
from ..pluginmanager import call_hook, hook_failure
from ..redact import redact
from .buffer import BufferClosed, BufferEmpty
from .reader import SourceReader

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
    _last_error: str = ""
    _last_kind: str = "stage"  # "stage" or "sink": what raised last

    @property
    def name(self) -> str:
        return self.cfg.name

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
        call_hook(self.hook.streamcnn_source_event, logging.getLogger(f"streamcnn.{self.name}"),
                  f"pipeline '{self.name}'", pipeline=self.name, source=str(detail.get("source", "")),
                  event=event, detail=detail)

    # -- the thread body ---------------------------------------------------------------------
    def run(self) -> None:
        name = self.name
        plog = logging.getLogger(f"streamcnn.{name}")
        stages: list[tuple[str, Stage]] = []
        sinks: list[tuple[str, Sink]] = []
        t0 = time.perf_counter()
        try:
            # everything of this run is built here, on the pipeline's thread, in data-flow order
            for comp in self.cfg.stages:
                stages.append((comp.type_name, comp.build()))
            source: Source = self.cfg.source.build()
            for comp in self.cfg.sinks:
                sinks.append((comp.type_name, comp.build()))
            policy = self.cfg.source.params.policy or ("latest" if source.live else "all")
            self.reader = SourceReader(
                source, policy, self.cfg.source.params.queue_size, name, on_event=self._on_source_event
            )
            if self.stop_event.is_set():
                return
            self.reader.start()
            plog.info("pipeline '%s': reading %s (policy %s)", name, source.id, policy)
            info = PipelineInfo(name, source.id, tuple(c.type_name for c in self.cfg.stages),
                                tuple(c.type_name for c in self.cfg.sinks), self.reader.fps)
            self._call_hook("streamcnn_pipeline_started", plog, pipeline=name, info=info)
            self._loop(stages, sinks, plog)
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
            summary = {k: v for k, v in self.stats.as_dict().items() if k != "error"}
            plog.info("pipeline '%s' stopped: %s", name, summary)
            self._call_hook("streamcnn_pipeline_stopped", plog, pipeline=name, stats=self.stats.as_dict())

    def _call_hook(self, hook_name: str, plog: logging.Logger, **kwargs: Any) -> None:
        """Call a lifecycle hook; a plugin that raises is reported by name, never fatal."""
        call_hook(getattr(self.hook, hook_name), plog, f"pipeline '{self.name}'", **kwargs)

    def _loop(self, stages: list[tuple[str, Stage]], sinks: list[tuple[str, Sink]], plog: logging.Logger) -> None:
        reader = self.reader
        assert reader is not None
        frame_done = self.hook.streamcnn_frame_done
        name = self.name
        stats = self.stats
        limit = self.max_frames
        opened = not sinks
        watch_lag = reader.live and reader.buffer.policy == "all"
        lag_warning = float(getattr(self.cfg.source.params, "lag_warning", 5.0))
        warned = False
        while True:
            if self.abort_event.is_set():
                return
            try:
                frame: Frame = reader.get(timeout=0.25)
            except BufferEmpty:
                continue
            except BufferClosed:
                return
            index = frame.index
            if reader.live:
                stats.lag = max(0.0, time.time() - frame.capture_time)
                stats.lag_max = max(stats.lag_max, stats.lag)
                stats.queued = reader.queued
                stats.queued_max = max(stats.queued_max, stats.queued)
                if watch_lag and not warned and stats.lag > lag_warning:
                    warned = True
                    plog.warning(
                        "pipeline '%s': live source %s is %.1f s behind (%d frames queued) under policy: all: the "
                        "stages take longer per frame than the camera sends them and the delay keeps growing; use "
                        "policy: latest (always the newest frame), a lighter model, or every: N on the slow stage "
                        "(this warning: lag_warning, %g s)", name, reader.source.id, stats.lag, stats.queued,
                        lag_warning)
            try:
                for stage_name, stage in stages:  # noqa: B007 - stage_name names the failing stage below
                    frame = stage.process(frame)
                    if type(frame) is not Frame or not _valid_image(frame.image):
                        raise TypeError(_bad_output(frame))
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not kill a long run
                self._failed(StageError(name, stage_name, index, exc), exc, plog)
                continue
            if not opened:
                opened = True
                stream = StreamInfo(reader.fps, frame.width, frame.height)
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
                continue
            stats.frames += 1
            try:
                frame_done(pipeline=name, frame=frame)
            except Exception as exc:  # noqa: BLE001 - a lifecycle hook must not kill the run either
                msg = f"pipeline '{name}': {hook_failure(frame_done, exc, f' on frame {index}')}"
                if self.cfg.on_error == "stop":
                    raise StreamcnnError(msg) from exc
                plog.error("%s", msg)
            if limit is not None and stats.frames >= limit:
                reader.stop()
                return

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
