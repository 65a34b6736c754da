"""`ClusterEngine`: the driver side of ``streamcnn run --ray``: one Ray actor per group, watched.

It offers what `streamcnn.engine.Engine` offers the CLI and the control plane (``runs``,
``start``, ``wait``, ``stop``, ``find``, ``add``, ``remove``, ``restart``, ``failed``), with each
pipeline a `RemoteRun` whose ``snapshot()`` is the actor's last answer plus ``node``,
``restarts`` and ``pid``. One monitor thread per actor polls it every `POLL` seconds, so a dead or
restarting actor never holds up another one:

* the actor answers: its pipelines' snapshots are stored (and each one's last frame index and pts);
* Ray restarted it (it answers "not started"): it is started again with the driver's last view,
  and its pipelines go on from there (`streamcnn.cluster.progress`); counters add up across restarts;
* it is unavailable (being restarted): its pipelines show ``restarting``;
* it died for good (Ray gave up after ``max_restarts``): its pipelines are ``failed``, named with
  the node and the restarts; the others go on;
* every pipeline of it ended (a file, ``max_frames``, or `stop`): the final counters are taken and
  the actor is killed (``no_restart``), so nothing stays behind on the cluster.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from ..config import Config, PipelineConfig
from ..engine.runner import output_clash, wait_threads
from . import ClusterError, import_ray
from .plan import Group, plan_groups
from .remote import RemoteRun
from .shipping import local_models, ship
from .worker import CONCURRENCY, GroupWorker

log = logging.getLogger("streamcnn.cluster")

POLL = 0.25  #: seconds between two polls of an actor
CALL_TIMEOUT = 10.0  #: seconds an actor call may take before the actor counts as unavailable
STOP_TIMEOUT = 30.0  #: seconds a stopping actor gets to close its sinks before it is killed
#: environment variables handed to the actors (so the nodes resolve models and write like the driver)
FORWARDED_ENV = ("STREAMCNN_ASSETS", "STREAMCNN_CACHE", "STREAMCNN_OFFLINE")

class _GroupHandle:
    """One actor and the monitor thread that watches it (see the module docstring)."""

    def __init__(self, engine: ClusterEngine, group: Group, cfgs: list[PipelineConfig]) -> None:
        self.engine, self.group = engine, group
        self.runs = [RemoteRun(cfg, self) for cfg in cfgs]
        self.actor: Any = None
        self.thread: threading.Thread | None = None
        self.stop_asked: bool | None = None  # None: not asked; else drain
        self.stop_since = 0.0
        self.attempt = 0
        self.t0 = time.perf_counter()

    def launch(self) -> None:
        ray, e = self.engine.ray, self.engine
        cfg0 = self.runs[0].cfg
        spec = {"file": cfg0.file or e.config.file, "text": cfg0.text, "config_dir": str(e.config.config_dir),
                "pipelines": [r.name for r in self.runs], "max_frames": e.max_frames, "run_id": e.run_id,
                "models": e.shipped_for([r.cfg for r in self.runs]),
                "log_level": logging.getLogger("streamcnn").getEffectiveLevel(), "cpus": self.group.cpus}
        actor_cls = ray.remote(GroupWorker)
        self.actor = actor_cls.options(
            name=f"streamcnn-{e.run_id}-{self.group.name}", namespace=e.namespace, num_cpus=self.group.cpus,
            num_gpus=self.group.gpus, max_restarts=e.max_restarts, max_task_retries=0,
            max_concurrency=CONCURRENCY,
        ).remote(spec)
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._monitor, name=f"streamcnn-cluster-{self.group.name}",
                                       daemon=True)
        self.thread.start()

    def stop(self, drain: bool) -> None:
        first = self.stop_asked is None
        self.stop_asked = drain if first else False
        self.stop_since = self.stop_since or time.monotonic()
        if self.actor is not None and self.attempt >= 0:
            try:
                self.actor.stop.remote(drain and first)
            except Exception:  # noqa: BLE001 - a dead actor: the monitor ends it
                pass

    def remove(self, run: RemoteRun, timeout: float | None) -> None:
        """Stop one pipeline of this actor (sinks closed on its node); the others go on."""
        try:
            final = self.engine.ray.get(self.actor.remove.remote(run.name), timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - a dead actor: its pipelines end anyway
            log.warning("pipeline '%s': could not be stopped on its actor: %s", run.name, exc)
            final = None
        if final is not None:
            run.update(final, run.node or "", run.pid or 0)
        run.finish()
        self.runs = [r for r in self.runs if r is not run]

    def frame(self, name: str) -> Any:
        try:
            return self.engine.ray.get(self.actor.frame.remote(name), timeout=CALL_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - restarting or gone: no frame to show
            log.debug("pipeline '%s': no frame from its actor: %s", name, exc)
            return None

    # -- the monitor -------------------------------------------------------------------------
    def _monitor(self) -> None:
        ray = self.engine.ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError

        pending: tuple[int, dict] | None = (0, {})  # a start() to make: (attempt, the driver's last view)
        try:
            while True:
                try:
                    if pending is not None:
                        answer = ray.get(self.actor.start.remote(*pending), timeout=None)
                        pending = None
                        if self.stop_asked is not None:  # asked while it was (re)starting
                            self.actor.stop.remote(self.stop_asked)
                    else:
                        answer = ray.get(self.actor.poll.remote(), timeout=CALL_TIMEOUT)
                except (ActorUnavailableError, GetTimeoutError):
                    self._mark("restarting")
                    if self._stop_overdue():
                        return self._end("stopped while its actor was unavailable")
                    time.sleep(POLL)
                    continue
                except RayTaskError as exc:  # start() raised on the node: the file does not load there
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    return self._end(f"on node {self.runs[0].node or '?'}: {cause}")
                except (ActorDiedError, RayActorError) as exc:
                    return self._end(None if self.stop_asked is not None and self._all_seen_stopping()
                                     else self._died(exc))
                if answer["attempt"] < 0:  # Ray restarted the actor: go on where it (or the driver) last was
                    pending = self._restarted(answer)
                    continue
                for run in list(self.runs):
                    snap = answer["runs"].get(run.name)
                    if snap is not None:
                        run.update(snap, answer["node"], answer["pid"], answer.get("ray_node"))
                if answer["done"]:
                    return self._end(None)
                if self._stop_overdue():
                    return self._end(None)
                time.sleep(POLL)
        except Exception as exc:  # noqa: BLE001 - a driver bug must not leave the pipeline "running"
            log.exception("cluster monitor of %s failed", self.group.name)
            self._end(f"{type(exc).__name__}: {exc}")

    def _all_seen_stopping(self) -> bool:
        return all(r.snap.get("state") in ("stopped", "failed") for r in self.runs)

    def _restarted(self, answer: dict[str, Any]) -> tuple[int, dict]:
        """Count the restart, log it; the start to make on the new incarnation."""
        self.attempt += 1
        for run in self.runs:
            run.restarts = self.attempt
            run.carry_over()
            run.state = "restarting"
        seen = {r.name: r.seen for r in self.runs if r.seen is not None}
        where = ", ".join(f"'{r.name}' after frame {r.seen[0] - 1 if r.seen else -1}" for r in self.runs)
        log.warning("actor %s (%s) was restarted by Ray on node %s (restart %d of %d): going on with %s "
                    "(or later, from the node's own record)", self.group.name, ", ".join(r.name for r in self.runs),
                    answer.get("node"), self.attempt, self.engine.max_restarts, where)
        return self.attempt, seen

    def _died(self, exc: BaseException) -> str:
        nodes = sorted({r.node for r in self.runs if r.node})
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"its actor died and Ray gave up after {self.attempt} restart(s) (cluster.max_restarts: "
                f"{self.engine.max_restarts}){' on node ' + ', '.join(nodes) if nodes else ''}: {why}")

    def _mark(self, state: str) -> None:
        for run in self.runs:
            if not run.ended:
                run.state = state

    def _stop_overdue(self) -> bool:
        return self.stop_asked is not None and time.monotonic() - self.stop_since > STOP_TIMEOUT

    def _end(self, error: str | None) -> None:
        for run in self.runs:
            if not run.ended and error is None:
                run.last_frame = self.frame(run.name)
            if not run.ended:
                run.finish(f"pipeline '{run.name}': {error}" if error else None)
        if self.actor is not None:
            try:
                self.engine.ray.kill(self.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - gone already
                pass


def _reachable(address: str) -> None:
    """For ``HOST:PORT`` (Ray would retry for minutes): something answers there within 5 s.

    Raises:
        ClusterError: nothing answers (with the reason and how to start a cluster).
    """
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ClusterError(
            f"--ray {address}: cannot connect to the Ray cluster: nothing answers at {address} "
            f"({exc.strerror or exc}); start its head node with 'ray start --head --port {port}', or give "
            "--ray local to start Ray on this machine") from None


class ClusterEngine:
    """Runs a `Config`'s pipelines as Ray actors (see the module docstring).

    Args:
        config: the validated configuration.
        address: Ray address: ``local`` (start Ray here), ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``.
        max_frames: per pipeline, as ``run --max-frames``.
        names: run only these pipelines.
        max_restarts: restarts of an actor before its pipelines are failed (Ray's ``max_restarts``).
        namespace: Ray namespace of the actors.

    Raises (from `start`):
        ClusterError: Ray is not installed, or the cluster cannot be reached.
    """

    def __init__(self, config: Config, address: str, max_frames: int | None = None, names: list[str] | None = None,
                 max_restarts: int = 3, namespace: str = "streamcnn") -> None:
        self.config, self.address, self.max_frames = config, address, max_frames
        self.max_restarts, self.namespace = max_restarts, namespace
        self.ray: Any = None
        self.run_id = uuid.uuid4().hex[:12]
        self.metrics = None
        self.groups: list[_GroupHandle] = []
        chosen = names or list(config.pipelines)
        for group in plan_groups(config, chosen):
            self.groups.append(_GroupHandle(self, group, [config.pipelines[n] for n in group.pipelines]))
        self._stopping = 0
        self._stop_waiting = threading.Event()
        self._lock = threading.Lock()
        self._shipped: dict[str, Any] = {}

    @property
    def runs(self) -> list[RemoteRun]:
        return [r for g in list(self.groups) for r in g.runs]

    def connect(self) -> None:
        """Connect to (or, for ``local``, start) the Ray cluster.

        Raises:
            ClusterError: no Ray installed, or it cannot connect (with Ray's reason).
        """
        ray = import_ray()
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        kwargs: dict[str, Any] = {"namespace": self.namespace, "runtime_env": {"env_vars": env} if env else None,
                                  "log_to_driver": True}
        if self.address == "local":
            kwargs["include_dashboard"] = False
        else:
            kwargs["address"] = self.address
            _reachable(self.address)
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray's own reason, without a traceback
            raise ClusterError(f"--ray {self.address}: cannot connect to the Ray cluster: {exc}") from None
        self.ray = ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        res = ray.cluster_resources()
        log.info("Ray cluster: %d node(s), %g CPU, %g GPU; %d pipeline(s) on %d actor(s)", len(nodes),
                 res.get("CPU", 0), res.get("GPU", 0), len(self.runs), len(self.groups))

    def shipped_for(self, pipelines: list[PipelineConfig]) -> list[Any]:
        """The `ShippedModel` list for ``pipelines`` (each file put into the object store once)."""
        models = local_models(pipelines, self.config.config_dir)
        missing = {k: v for k, v in models.items() if k not in self._shipped}
        for m in ship(self.ray, missing):
            self._shipped[m.name] = m
        return [self._shipped[k] for k in models]

    def start(self) -> None:
        """Connect, then start every actor (returns at once)."""
        if self.ray is None:
            self.connect()
        for group in self.groups:
            group.launch()

    def wait(self, poll: float = 0.2, forever: bool = False) -> None:
        """Block until every actor's pipelines have ended (or, with ``forever``, until `stop`)."""
        wait_threads(lambda: [g.thread for g in list(self.groups) if g.thread is not None and g.thread.is_alive()],
                     self._stop_waiting if forever else None, poll)

    @property
    def stopping(self) -> bool:
        return self._stopping > 0

    def stop(self) -> None:
        """First call: every actor stops its pipelines gracefully (queued frames processed, sinks
        flushed and closed on its node). Second call: skip the queued frames."""
        self._stopping += 1
        self._stop_waiting.set()
        for group in list(self.groups):
            group.stop(drain=self._stopping == 1)

    def shutdown(self) -> None:
        """Disconnect from Ray (a ``local`` cluster is stopped)."""
        if self.ray is not None:
            self.ray.shutdown()

    @property
    def failed(self) -> list[RemoteRun]:
        return [r for r in self.runs if r.stats.error is not None]

    def find(self, name: str) -> RemoteRun | None:
        for run in reversed(self.runs):
            if run.name == name:
                return run
        return None

    def add(self, cfg: PipelineConfig) -> RemoteRun:
        """Start one more pipeline on its own actor.

        Raises:
            ValueError: a pipeline of that name is running.
        """
        with self._lock:
            old = self.find(cfg.name)
            if old is not None and old.alive:
                raise ValueError(f"a pipeline named {cfg.name!r} is running; delete it first (DELETE "
                                 f"/api/pipelines/{cfg.name}) to start this definition")
            clash = output_clash(cfg, [r.cfg for r in self.runs if r.alive])
            if clash:
                raise ValueError(clash)
            res = cfg.resources
            group = Group(cfg.name, [cfg.name], 1.0 if res is None else res.cpus, 0.0 if res is None else res.gpus)
            handle = _GroupHandle(self, group, [cfg])
            if old is not None:
                self.groups = [g for g in self.groups if old not in g.runs]
                if self.metrics is not None:
                    self.metrics.detach(old)
            self.groups.append(handle)
            if self.metrics is not None:
                self.metrics.attach(handle.runs)
            handle.launch()
        return handle.runs[0]

    def remove(self, name: str, timeout: float | None = None) -> RemoteRun:
        """Stop the pipeline ``name`` (with the others of its group) and drop it.

        Raises:
            KeyError: no pipeline of that name.
        """
        run = self.find(name)
        if run is None:
            raise KeyError(name)
        if len(run.group.runs) > 1 and run.alive:  # the others of its group run on in their actor
            run.group.remove(run, timeout)
            with self._lock:
                if self.metrics is not None:
                    self.metrics.detach(run)
            return run
        run.group.stop(drain=True)
        if run.group.thread is not None:
            run.group.thread.join(timeout)
        with self._lock:
            self.groups = [g for g in self.groups if g is not run.group]
            if self.metrics is not None:
                for r in run.group.runs:
                    self.metrics.detach(r)
        return run

    def restart(self, name: str, timeout: float | None = None) -> RemoteRun:
        old = self.remove(name, timeout)
        return self.add(old.cfg)


__all__ = ["ClusterEngine", "RemoteRun"]
