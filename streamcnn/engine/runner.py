"""`Engine`: runs the pipelines of a configuration concurrently, one `PipelineRun` thread each."""

from __future__ import annotations

import threading

from ..budget import Budget, apply, plan
from ..config import Config
from ..config.schema import RuntimeSpec
from .pipeline import PipelineRun, PipelineStats


class Engine:
    """Runs the pipelines of a `Config` concurrently, within one thread budget (`streamcnn.budget`).

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
        runtime = getattr(config, "runtime", None) or RuntimeSpec()
        self.budget: Budget = plan(runtime, {
            r.name: (r.cfg.in_flight, bool(r.cfg.stages) and bool(getattr(r.cfg.stages[0].cls, "stateless", False)))
            for r in self.runs})
        for r in self.runs:
            r.in_flight = self.budget.in_flight[r.name]
            r.batch = r.cfg.batch
        self._runtime = runtime

    def start(self) -> None:
        """Apply the thread budget (`streamcnn.budget`: logged as one line), then start one thread
        per pipeline (returns at once)."""
        apply(self.budget, self._runtime)
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


__all__ = ["Engine"]
