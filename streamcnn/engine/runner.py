"""`Engine`: runs the pipelines of a configuration concurrently, one `PipelineRun` thread each."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..budget import Budget, apply, plan
from ..config import Config, PipelineConfig
from ..config.schema import RuntimeSpec
from .pipeline import PipelineRun, PipelineStats


def wait_threads(alive: Callable[[], list[Any]], until: threading.Event | None, poll: float = 0.2) -> None:
    """Block until ``alive()`` (the threads still to wait for) is empty, joining ``poll`` seconds at
    a time so that signal handlers run; then, when ``until`` is given, until it is set."""
    while True:
        threads = alive()
        if threads:
            threads[0].join(poll)
        elif until is not None and not until.is_set():
            until.wait(poll)
        else:
            return


def output_clash(cfg: PipelineConfig, running: list[PipelineConfig]) -> str | None:
    """Why ``cfg`` cannot run beside the ``running`` pipelines: a file or port one of them writes
    or listens on (None when there is no clash)."""
    theirs = {}
    for other in running:
        if other.name != cfg.name:
            for comp in (*other.stages, *other.sinks):
                for out in comp.cls.outputs(comp.params, comp.ctx):
                    theirs[out] = (other.name, comp.type_name)
    for comp in (*cfg.stages, *cfg.sinks):
        for out in comp.cls.outputs(comp.params, comp.ctx):
            if out in theirs:
                pipeline, kind = theirs[out]
                what = "writes" if out.kind == "file" else "listens on"
                return (f"its {comp.type_name} {comp.kind} {what} {out.target}, which the {kind} of the running "
                        f"pipeline {pipeline!r} {what} too; give it its own")
    return None


class Engine:
    """Runs the pipelines of a `Config` concurrently, within one thread budget (`streamcnn.budget`).

    ``run()`` blocks until every pipeline ends (end of file, ``max_frames`` reached, an error
    with ``on_error: stop``, or ``stop()`` — e.g. from a SIGINT/SIGTERM handler). ``cores``: the
    CPUs the budget spends (default: those this process may run on; a cluster actor gives the CPUs
    Ray reserved for it).
    """

    def __init__(
        self, config: Config, names: list[str] | None = None, max_frames: int | None = None, insist: bool = False,
        cores: int | None = None,
    ) -> None:
        self.config = config
        self.hook = config.plugins.pm.hook
        chosen = names or list(config.pipelines)
        insist = insist or bool(names)
        self.runs = [PipelineRun(config.pipelines[n], self.hook, max_frames, insist=insist) for n in chosen]
        self._stopping = 0
        self.max_frames = max_frames
        self.metrics = None  # a streamcnn.metrics.Metrics, given by the control server
        self._lock = threading.Lock()
        self._stop_waiting = threading.Event()
        runtime = getattr(config, "runtime", None) or RuntimeSpec()
        self.budget: Budget = plan(runtime, {
            r.name: (r.cfg.in_flight, bool(r.cfg.stages) and bool(getattr(r.cfg.stages[0].cls, "stateless", False)))
            for r in self.runs}, cores)
        for r in self.runs:
            r.in_flight = self.budget.in_flight[r.name]
            r.batch = r.cfg.batch
        self._runtime = runtime

    def start(self) -> None:
        """Apply the thread budget (`streamcnn.budget`: logged as one line), then start one thread
        per pipeline (returns at once)."""
        apply(self.budget, self._runtime)
        for run in self.runs:
            self._launch(run)

    def _launch(self, run: PipelineRun) -> None:
        run.thread = threading.Thread(target=run.run, name=f"pipeline-{run.name}", daemon=True)
        run.thread.start()

    def wait(self, poll: float = 0.2, forever: bool = False) -> None:
        """Block until every pipeline thread has ended (polling, so signal handlers can run); also
        the pipelines `add`ed meanwhile. With ``forever`` (a control server is up: pipelines may be
        added later), until `stop`."""
        wait_threads(lambda: [r.thread for r in list(self.runs) if r.alive], self._stop_waiting if forever else None,
                     poll)

    def find(self, name: str) -> PipelineRun | None:
        """The newest run of the pipeline ``name`` (None when there is none)."""
        for run in reversed(list(self.runs)):
            if run.name == name:
                return run
        return None

    def add(self, cfg: PipelineConfig) -> PipelineRun:
        """Start one more pipeline now, beside the running ones (none of them is touched). Its frames
        in flight come from its own ``in_flight`` (1 when ``auto``: the budget was planned without it).

        Raises:
            ValueError: a pipeline of that name is running.
        """
        with self._lock:
            old = self.find(cfg.name)
            if old is not None and old.thread is not None and old.thread.is_alive():
                raise ValueError(f"a pipeline named {cfg.name!r} is running; delete it first (DELETE "
                                 f"/api/pipelines/{cfg.name}) to start this definition")
            clash = self._clash(cfg)
            if clash:
                raise ValueError(clash)
            run = PipelineRun(cfg, self.hook, self.max_frames)
            run.in_flight = cfg.in_flight if isinstance(cfg.in_flight, int) else 1
            run.batch = cfg.batch
            run.metrics = self.metrics
            if old is not None:
                self.runs.remove(old)
                if self.metrics is not None:
                    self.metrics.detach(old)
            self.runs.append(run)
            if self.metrics is not None:
                self.metrics.attach([run])
            self._launch(run)
        return run

    def _clash(self, cfg: PipelineConfig) -> str | None:
        return output_clash(cfg, [r.cfg for r in self.runs if r.alive])

    def remove(self, name: str, timeout: float | None = None) -> PipelineRun:
        """Stop the pipeline ``name`` gracefully (queued frames processed, sinks flushed and closed),
        wait for it (up to ``timeout`` s) and drop it from `runs`; the others go on.

        Raises:
            KeyError: no pipeline of that name.
        """
        run = self.find(name)
        if run is None:
            raise KeyError(name)
        run.stop(drain=True)
        if run.thread is not None:
            run.thread.join(timeout)
        with self._lock:
            if run in self.runs:
                self.runs.remove(run)
            if self.metrics is not None:
                self.metrics.detach(run)
        return run

    def restart(self, name: str, timeout: float | None = None) -> PipelineRun:
        """`remove` then `add` the same pipeline definition (its components are built anew).

        Raises:
            KeyError: no pipeline of that name.
        """
        old = self.remove(name, timeout)
        return self.add(old.cfg)

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
        self._stop_waiting.set()
        for run in list(self.runs):
            run.stop(drain=self._stopping == 1)

    @property
    def failed(self) -> list[PipelineRun]:
        return [r for r in self.runs if r.stats.error is not None]


__all__ = ["Engine", "output_clash", "wait_threads"]
