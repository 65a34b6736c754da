"""The pipeline engine: source → stages → sinks, one thread per pipeline plus its reader.

Per frame the engine does a buffer hand-off, the stage calls, the sink calls and one
``streamcnn_frame_done`` hook call; nothing else (see ``tools/bench_engine.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .api import Sink, Source, Stage
from .config import Component, Config, PipelineConfig
from .errors import StageError, StreamcnnError, where
from .frame import Frame
from .io.buffer import BufferClosed, BufferEmpty
from .io.reader import SourceReader
from .redact import redact

log = logging.getLogger("streamcnn.engine")

_ERROR_LOG_FIRST = 10  # stage errors logged one by one, then one line every _ERROR_LOG_EVERY
_ERROR_LOG_EVERY = 100


@dataclass
class PipelineStats:
    """Counters of one pipeline run (also passed to ``streamcnn_pipeline_stopped``)."""

    frames: int = 0  # frames that went through all stages and sinks
    skipped: int = 0  # frames dropped because a stage raised (on_error: skip)
    dropped: int = 0  # frames the live policy "latest" dropped
    reconnects: int = 0
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
            "reconnects": self.reconnects, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
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
        self.hook.streamcnn_source_event(
            pipeline=self.name, source=str(detail.get("source", "")), event=event, detail=detail
        )

    # -- the thread body ---------------------------------------------------------------------
    def run(self) -> None:
        name = self.name
        plog = logging.getLogger(f"streamcnn.{name}")
        stages: list[tuple[str, Stage]] = []
        sinks: list[Sink] = []
        t0 = time.perf_counter()
        try:
            for comp in self.cfg.stages:
                stages.append((comp.type_name, _build(comp)))
            source: Source = _build(self.cfg.source)
            policy = self.cfg.source.params.policy or ("latest" if source.live else "all")
            self.reader = SourceReader(
                source, policy, self.cfg.source.params.queue_size, name, on_event=self._on_source_event
            )
            if self.stop_event.is_set():
                return
            self.reader.start()
            plog.info("pipeline '%s': reading %s (policy %s)", name, source.id, policy)
            self._call_hook("streamcnn_pipeline_started", plog, pipeline=name, config=self.cfg)
            self._loop(stages, sinks, plog)
            if self.reader.error is not None:
                raise self.reader.error
            if self.stats.frames == 0 and self.stats.skipped > 0:
                raise StreamcnnError(
                    f"pipeline '{name}': no frame got through: a stage failed on all {self.stats.skipped} "
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
                # let the capture be released before the process may exit (a live read returns
                # within about its read timeout)
                wait = self.cfg.source.params.stall_timeout + 1.0 if self.reader.live else 2.0
                if not self.reader.join(wait):
                    plog.debug("pipeline '%s': the source is still closing", name)
                self.stats.dropped = self.reader.dropped
                self.stats.reconnects = self.reader.reconnects
            for sink in sinks:
                _close(sink, plog, name)
            for _, stage in stages:
                _close(stage, plog, name)
            self.stats.seconds = time.perf_counter() - t0
            summary = {k: v for k, v in self.stats.as_dict().items() if k != "error"}
            plog.info("pipeline '%s' stopped: %s", name, summary)
            self._call_hook("streamcnn_pipeline_stopped", plog, pipeline=name, stats=self.stats.as_dict())

    def _call_hook(self, hook_name: str, plog: logging.Logger, **kwargs: Any) -> None:
        """Call a lifecycle hook; a plugin that raises is reported (plugins named), never fatal."""
        caller = getattr(self.hook, hook_name)
        try:
            caller(**kwargs)
        except Exception as exc:  # noqa: BLE001
            impls = ", ".join(i.plugin_name for i in caller.get_hookimpls())
            plog.error("pipeline '%s': hook %s (plugins: %s) raised: %s", self.name, hook_name, impls, _describe(exc))

    def _loop(self, stages: list[tuple[str, Stage]], sinks: list[Sink], plog: logging.Logger) -> None:
        reader = self.reader
        assert reader is not None
        on_error = self.cfg.on_error
        frame_done = self.hook.streamcnn_frame_done
        name = self.name
        stats = self.stats
        limit = self.max_frames
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
            try:
                for stage_name, stage in stages:  # noqa: B007 - stage_name names the failing stage below
                    frame = stage.process(frame)
                    if type(frame) is not Frame or not _valid_image(frame.image):
                        raise TypeError(_bad_output(frame))
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not kill a long run
                err = StageError(name, stage_name, index, exc)
                if on_error == "stop":
                    raise err from exc
                stats.skipped += 1
                self._last_error = str(err)
                if stats.skipped <= _ERROR_LOG_FIRST or stats.skipped % _ERROR_LOG_EVERY == 0:
                    plog.error("%s (frame skipped; %d skipped so far)", err, stats.skipped)
                    plog.debug("traceback", exc_info=exc)
                continue
            if not sinks and self.cfg.sinks:
                fps = reader.fps
                for comp in self.cfg.sinks:
                    comp.ctx.fps = fps
                    sinks.append(_build(comp))
            for sink in sinks:
                sink.write(frame)
            stats.frames += 1
            try:
                frame_done(pipeline=name, frame=frame)
            except Exception as exc:  # noqa: BLE001 - a lifecycle hook must not kill the run either
                impls = ", ".join(i.plugin_name for i in self.hook.streamcnn_frame_done.get_hookimpls())
                msg = f"pipeline '{name}': hook streamcnn_frame_done (plugins: {impls}) raised on frame {index}: " \
                      f"{_describe(exc)}"
                if on_error == "stop":
                    raise StreamcnnError(msg) from exc
                plog.error("%s", msg)
            if limit is not None and stats.frames >= limit:
                reader.stop()
                return


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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}{where(exc)}"


def _build(comp: Component) -> Any:
    built = comp.take()
    if built is not None:
        return built
    try:
        return comp.cls(comp.params, comp.ctx)
    except StreamcnnError:
        raise
    except (OSError, ValueError) as exc:
        raise StreamcnnError(f"{comp.kind} '{comp.type_name}' ({comp.path}): {exc}") from exc


def _close(obj: Any, plog: logging.Logger, pipeline: str) -> None:
    try:
        obj.close()
    except Exception:  # noqa: BLE001 - keep closing the others
        plog.exception("pipeline '%s': closing %s failed", pipeline, type(obj).__name__)


class Engine:
    """Runs the pipelines of a `Config` concurrently.

    ``run()`` blocks until every pipeline ends (end of file, ``max_frames`` reached, an error
    with ``on_error: stop``, or ``stop()`` — e.g. from a SIGINT/SIGTERM handler).
    """

    def __init__(
        self, config: Config, names: list[str] | None = None, max_frames: int | None = None, insist: bool = False
    ) -> None:
        self.config = config
        self.hook = config.plugins.pm.hook
        chosen = names or list(config.pipelines)
        insist = insist or bool(names)
        self.runs = [PipelineRun(config.pipelines[n], self.hook, max_frames, insist=insist) for n in chosen]
        self._stopping = 0

    def start(self) -> None:
        """Start one thread per pipeline (returns at once)."""
        for run in self.runs:
            run.thread = threading.Thread(target=run.run, name=f"pipeline-{run.name}", daemon=True)
            run.thread.start()

    def wait(self, poll: float = 0.2) -> None:
        """Block until every pipeline thread has ended (polling, so signal handlers can run)."""
        for run in self.runs:
            while run.thread is not None and run.thread.is_alive():
                run.thread.join(poll)

    def run(self) -> list[PipelineStats]:
        """`start`, then `wait`; returns each pipeline's `PipelineStats` in order."""
        self.start()
        self.wait()
        return [r.stats for r in self.runs]

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return self._stopping > 0

    def stop(self) -> None:
        """First call: stop sources, drain queued frames, close sinks. Second call: skip draining."""
        self._stopping += 1
        for run in self.runs:
            run.stop(drain=self._stopping == 1)

    @property
    def failed(self) -> list[PipelineRun]:
        return [r for r in self.runs if r.stats.error is not None]


__all__ = ["Engine", "PipelineRun", "PipelineStats"]
