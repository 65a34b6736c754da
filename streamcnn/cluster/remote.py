"""`RemoteRun`: one pipeline on the cluster as the driver sees it (for the CLI and the control plane)."""

from __future__ import annotations

import time
from typing import Any, Protocol

from ..config import PipelineConfig
from ..engine.pipeline import PipelineStats
from ..frame import Frame
from ..redact import redact


class ActorGroup(Protocol):
    """What a `RemoteRun` needs of the actor that runs it (`streamcnn.cluster.driver`'s handle)."""

    t0: float  # perf_counter when the actor was launched

    def frame(self, name: str) -> Any:
        """The latest frame of pipeline ``name`` from the actor, or None."""

#: counters of a snapshot that add up over an actor's restarts
COUNTERS = ("frames_read", "frames_processed", "frames_skipped", "frames_dropped", "pts_discontinuities",
            "reconnects")


class RemoteRun:
    """One pipeline on the cluster as the driver sees it.

    Attributes:
        cfg: its `PipelineConfig` (validated on the driver).
        state: connecting, running, reconnecting, restarting (its actor is being restarted),
            stopped, failed.
        stats: `PipelineStats` (final once the run ended), summed over the actor's restarts.
        node, pid: where its actor runs now (None before the first answer).
        restarts: how often Ray restarted its actor.
    """

    def __init__(self, cfg: PipelineConfig, group: ActorGroup) -> None:
        self.cfg, self.group = cfg, group
        self.state = "connecting"
        self.stats = PipelineStats()
        self.node: str | None = None
        self.pid: int | None = None
        self.ray_node: str | None = None  # Ray's id of that node (several nodes may share a host name)
        self.restarts = 0
        self.snap: dict[str, Any] = {}
        self.base: dict[str, Any] = {k: 0 for k in COUNTERS} | {"events": {}}  # earlier incarnations
        self.seen: tuple[int, float, float] | None = None  # (next index, pts, wall) last polled
        self.ended = False
        self.last_frame: Any = None  # the actor's last frame, fetched as it ended (for the dashboard)
        self._unseen: int | None = None  # after a restart: the next frame index the driver expected

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def alive(self) -> bool:
        return not self.ended

    @property
    def frame_seq(self) -> int:
        return int(self.snap.get("frame_seq", 0))

    @property
    def latest(self) -> Frame | None:
        """The pipeline's latest frame, fetched from its actor (for the dashboard's live view only);
        after the run, the last one (kept when its actor ended)."""
        got = self.last_frame if self.ended else self.group.frame(self.name)
        if got is None:
            return None
        _, image, index, pts = got
        return Frame(image, index, pts)

    def update(self, snap: dict[str, Any], node: str, pid: int, ray_node: str | None = None) -> None:
        if self._unseen is not None and snap.get("resumed_at") is not None:
            # frames the dead incarnation got through after the driver's last poll (its progress record)
            self.base["frames_processed"] += max(0, int(snap["resumed_at"]) - self._unseen)
            self._unseen = None
        self.snap, self.node, self.pid = snap, node, pid
        self.ray_node = ray_node or self.ray_node
        if snap.get("last_index") is not None:
            self.seen = (int(snap["last_index"]) + 1, float(snap["last_pts"]), time.time())
        if not self.ended:
            self.state = snap.get("state", self.state)

    def carry_over(self) -> None:
        """The actor died: its counters so far become the base the next incarnation's add to."""
        for key in COUNTERS:
            self.base[key] += int(self.snap.get(key, 0) or 0)
        events = dict(self.base["events"])
        for type_, n in (self.snap.get("events") or {}).items():
            events[type_] = events.get(type_, 0) + n
        self.base["events"] = events
        self.snap = {k: v for k, v in self.snap.items() if k not in COUNTERS and k != "events"}
        self._unseen = self.seen[0] if self.seen is not None else 0

    def snapshot(self) -> dict[str, Any]:
        """As `streamcnn.engine.pipeline.PipelineRun.snapshot`, from the actor's last answer, with
        counters summed over restarts, plus ``node`` (host name), ``ray_node`` (Ray's node id), ``pid``,
        ``restarts``."""
        snap = {"name": self.name, "source": redact(str(self.cfg.source.params.uri)), "queued": 0, "fps_now": 0.0,
                "fps": None, "providers": {}, "sinks": {}, "last_events": [], "error": None,
                "last_index": None, "last_pts": None} | self.snap
        for key in COUNTERS:
            snap[key] = self.base[key] + int(self.snap.get(key, 0) or 0)
        events = dict(self.base["events"])
        for type_, n in (self.snap.get("events") or {}).items():
            events[type_] = events.get(type_, 0) + n
        snap["events"] = events
        snap.pop("stats", None)
        snap.update(state=self.state, node=self.node, ray_node=self.ray_node, pid=self.pid, restarts=self.restarts)
        if self.stats.error and not snap.get("error"):
            snap["error"] = redact(self.stats.error)
        if self.state != "running":
            snap["fps_now"] = 0.0
        return snap

    def finish(self, error: str | None = None) -> None:
        """The run ended: final `stats` from the last answer (plus earlier incarnations)."""
        final = self.snap.get("stats") or {}
        s = self.stats
        s.frames = self.base["frames_processed"] + int(final.get("frames", self.snap.get("frames_processed", 0)) or 0)
        s.skipped = self.base["frames_skipped"] + int(final.get("skipped", 0) or 0)
        s.dropped = self.base["frames_dropped"] + int(final.get("dropped", 0) or 0)
        s.reconnects = self.base["reconnects"] + int(final.get("reconnects", 0) or 0)
        s.pts_discontinuities = self.base["pts_discontinuities"] + int(final.get("pts_discontinuities", 0) or 0)
        s.seconds = time.perf_counter() - self.group.t0
        s.left_out = final.get("left_out")
        s.error = error or final.get("error") or s.error
        self.state = "failed" if s.error else "stopped"
        self.ended = True


__all__ = ["COUNTERS", "ActorGroup", "RemoteRun"]
