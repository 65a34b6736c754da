"""`GroupWorker`: the Ray actor that runs a group of pipelines on one node (see `streamcnn.cluster`).

Ray constructs it with the group's spec and restarts it (the constructor again, same spec) when
its process or node dies; `start` is then called by the driver with the attempt number and the
driver's last view, and the pipelines go on from the later of that and the node's own `progress`
record. Methods run on up to `CONCURRENCY` actor threads, so `poll` answers while `stop` waits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..api import node_name
from ..engine.reader import Resume
from ..redact import RedactingFormatter
from .progress import ProgressFile, ProgressRecorder, later

CONCURRENCY = 4  #: actor threads: start/stop/poll/frame may overlap
log = logging.getLogger("streamcnn.cluster")


class GroupWorker:
    """Runs the pipelines ``spec["pipelines"]`` of the file ``spec["file"]`` in this process.

    Args:
        spec: ``file`` (the YAML path as the driver read it), ``text`` (its text), ``config_dir``,
            ``pipelines`` (names), ``max_frames``, ``run_id`` (this ``streamcnn run``: names the
            progress records), ``models`` (`streamcnn.cluster.shipping.ShippedModel` list),
            ``log_level``.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.engine: Any = None
        self.attempt = -1  # not started (also right after Ray restarted this actor)
        self.progress: dict[str, ProgressFile] = {}
        self.resumed: dict[str, int] = {}  # pipeline -> the frame index it went on from
        self._lock = threading.Lock()
        import ray

        self.ray_node = ray.get_runtime_context().get_node_id()
        handler = logging.StreamHandler()
        handler.setFormatter(RedactingFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(spec.get("log_level", logging.INFO))

    def start(self, attempt: int, seen: dict[str, tuple[int, float, float]] | None = None) -> dict[str, Any]:
        """Load the file, then start the group's pipelines (returns at once).

        Args:
            attempt: 0 for the first start, k after Ray's k-th restart of this actor.
            seen: the driver's last view per pipeline: (next frame index, pts s, wall s).

        Returns:
            `poll`'s answer.

        Raises:
            StreamcnnError: the file does not load on this node (a model or plugin missing here).
        """
        from ..config import load_config_text
        from ..engine import Engine
        from .shipping import materialise

        with self._lock:
            if self.attempt >= 0:
                return self.poll()
            spec = self.spec
            import ray

            materialise(spec.get("models", []), Path(spec["config_dir"]), ray.get)
            folder = _progress_folder(spec["run_id"])
            for name in spec["pipelines"]:
                self.progress[name] = ProgressFile(folder / f"{name}.progress")
            config = load_config_text(spec["text"], spec["file"], Path(spec["config_dir"]), None, check=True,
                                      only=list(spec["pipelines"]))
            config.plugins.pm.register(ProgressRecorder(self.progress), name="streamcnn-cluster-progress")
            engine = Engine(config, None, spec.get("max_frames"), cores=max(1, round(spec.get("cpus", 1.0))))
            for run in engine.runs:
                record = self.progress[run.name]
                if attempt == 0:
                    record.clear()
                    continue
                driver = seen.get(run.name) if seen else None
                resume = later(record.read(), Resume(*driver) if driver else None)
                if resume is not None:
                    run.resume = resume
                    self.resumed[run.name] = resume.index
                    log.warning("pipeline '%s': restarted on node %s (attempt %d), going on from frame %d",
                                run.name, node_name(), attempt, resume.index)
            self.engine = engine
            self.attempt = attempt
            engine.start()
            return self.poll()

    def poll(self) -> dict[str, Any]:
        """``{"pid", "node" (host name), "ray_node" (Ray's node id), "attempt" (-1: not started),
        "done" (every pipeline ended), "runs": {name: snapshot + "stats" + "resumed_at"}}``."""
        engine = self.engine
        runs = {}
        if engine is not None:
            for run in list(engine.runs):
                runs[run.name] = self._describe(run)
        done = engine is not None and all(r.thread is not None and not r.thread.is_alive() for r in engine.runs)
        return {"pid": os.getpid(), "node": node_name(), "ray_node": self.ray_node, "attempt": self.attempt,
                "done": done, "runs": runs, "time": time.time()}

    def _describe(self, run: Any) -> dict[str, Any]:
        snap = run.snapshot()
        snap["stats"] = run.stats.as_dict() | {"left_out": run.stats.left_out}
        snap["resumed_at"] = self.resumed.get(run.name)
        snap["frame_seq"] = run.frame_seq
        return snap

    def stop(self, drain: bool = True) -> None:
        """Stop the pipelines (``drain``: queued frames are processed first); returns at once: `poll`
        says ``done`` once every sink is flushed and closed."""
        engine = self.engine
        if engine is None:
            return
        if not drain and not engine.stopping:
            engine.stop()
        engine.stop()

    def remove(self, name: str) -> dict[str, Any] | None:
        """Stop the pipeline ``name`` gracefully (its sinks flushed and closed) and drop it; its
        final snapshot (with ``stats``), or None when there is none. The others go on."""
        if self.engine is None or self.engine.find(name) is None:
            return None
        return self._describe(self.engine.remove(name))

    def frame(self, name: str) -> tuple[int, Any, int, float] | None:
        """The latest frame of pipeline ``name`` through the sinks: (frame_seq, BGR uint8 H×W×3
        image, frame index, pts s), or None (no frame yet). Only while a dashboard viewer watches."""
        run = self.engine.find(name) if self.engine is not None else None
        if run is None or run.latest is None:
            return None
        frame = run.latest
        return run.frame_seq, frame.image, frame.index, frame.pts


def _progress_folder(run_id: str) -> Path:
    from ..registry import cache_dir

    return cache_dir() / "cluster" / "progress" / run_id


__all__ = ["CONCURRENCY", "GroupWorker"]
