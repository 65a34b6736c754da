"""Prometheus metrics of a run (prometheus-client), in Prometheus' naming conventions.

Counters and gauges are read from the pipelines' own counters when scraped (`RunsCollector`), so
the numbers at the end of a run are exactly those of the run's summary and counting costs the
frame path nothing; only the two latency histograms are observed per frame (≈ 1 µs each).

Per pipeline (label ``pipeline``):

* ``streamcnn_frames_read_total`` — frames the source delivered;
  ``streamcnn_frames_processed_total`` — frames through all stages and sinks (the summary's
  ``frames``); ``streamcnn_frames_dropped_total`` — dropped by the live policy ``latest``;
  ``streamcnn_frames_skipped_total`` — a stage or sink raised (``on_error: skip``);
* ``streamcnn_pts_discontinuities_total``, ``streamcnn_reconnects_total``;
* ``streamcnn_source_up`` (1 while frames flow), ``streamcnn_fps`` (over the last 2 s),
  ``streamcnn_queue_depth`` (frames waiting in the source buffer);
* ``streamcnn_events_total{type}`` — events emitted, by type;
* ``streamcnn_model_info{stage, provider}`` — the ONNX Runtime execution provider of each model stage;
* ``streamcnn_sink_<counter>_total{sink}`` — what a sink's ``stats()`` counts (the ``mqtt`` sink's
  ``dropped``: its buffer was full);
* histograms ``streamcnn_stage_duration_seconds{stage}`` (one frame's ``process``; a batch's time
  divided by its frames) and ``streamcnn_frame_age_seconds`` (now − the frame's capture time, when
  its sinks are done: the end-to-end delay).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

#: seconds: from 1 ms (a filter) to 10 s (a stalled camera's backlog)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FPS_WINDOW = 2.0  # seconds of processed frames ``streamcnn_fps`` is measured over


class FrameRate:
    """Frames per second over the last ``window`` seconds (monotonic clock); thread-safe enough for
    one writer (the pipeline thread) and a scraper."""

    def __init__(self, window: float = FPS_WINDOW) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def fps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        times = [t for t in list(self._times) if now - t <= self.window]
        if len(times) < 2:
            return 0.0
        span = max(now - times[0], times[-1] - times[0])
        return (len(times) - 1) / span if span > 0 else 0.0


class Metrics:
    """The metrics of one process: a registry with the per-frame histograms and a collector of the
    pipelines' counters. `attach` the runs of an engine; `text` is the exposition format.

    Args:
        registry: where to register (default: a fresh one, not prometheus-client's global one).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.stage_seconds = Histogram(
            "streamcnn_stage_duration_seconds", "Time one frame spent in a stage's process (seconds)",
            ["pipeline", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.frame_age = Histogram(
            "streamcnn_frame_age_seconds", "Capture to the end of the sinks, per frame (seconds)",
            ["pipeline"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._runs: list[Any] = []
        self._lock = threading.Lock()
        self.registry.register(RunsCollector(self))

    def attach(self, runs: Iterable[Any]) -> None:
        """Report these pipeline runs (`streamcnn.engine.PipelineRun`) too."""
        with self._lock:
            self._runs.extend(r for r in runs if r not in self._runs)

    def detach(self, run: Any) -> None:
        with self._lock:
            if run in self._runs:
                self._runs.remove(run)

    @property
    def runs(self) -> list[Any]:
        with self._lock:
            return list(self._runs)

    def text(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class RunsCollector(Collector):
    """Counters and gauges read from each attached `PipelineRun` at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []  # collected fresh on every scrape (the set of pipelines changes)

    def collect(self) -> Iterator[Any]:
        runs = self.metrics.runs
        counters = {
            "frames_read": "Frames the source delivered",
            "frames_processed": "Frames that went through all stages and sinks",
            "frames_dropped": "Frames the live policy latest dropped",
            "frames_skipped": "Frames dropped because a stage or sink raised (on_error: skip)",
            "pts_discontinuities": "Frames whose timestamp did not increase, and camera clock re-bases",
            "reconnects": "Reconnections of a live source",
        }
        families = {k: CounterMetricFamily(f"streamcnn_{k}", text, labels=["pipeline"]) for k, text in counters.items()}
        up = GaugeMetricFamily("streamcnn_source_up", "1 while the source delivers frames", labels=["pipeline"])
        fps = GaugeMetricFamily("streamcnn_fps", f"Frames processed per second over the last {FPS_WINDOW:g} s",
                                labels=["pipeline"])
        queue = GaugeMetricFamily("streamcnn_queue_depth", "Frames waiting in the source buffer", labels=["pipeline"])
        events = CounterMetricFamily("streamcnn_events", "Events emitted, by type", labels=["pipeline", "type"])
        models = InfoMetricFamily("streamcnn_model", "The execution provider of each model stage",
                                  labels=["pipeline", "stage"])
        where = InfoMetricFamily("streamcnn_pipeline", "The node each pipeline runs on", labels=["pipeline"])
        restarts = CounterMetricFamily("streamcnn_restarts", "Restarts of a pipeline's cluster actor (--ray)",
                                       labels=["pipeline"])
        sinks: dict[str, CounterMetricFamily] = {}
        for run in runs:
            snap = run.snapshot()
            name = run.name
            for key in counters:
                families[key].add_metric([name], snap[key])
            up.add_metric([name], 1.0 if snap["state"] == "running" else 0.0)
            where.add_metric([name], {"node": str(snap.get("node") or "")})
            restarts.add_metric([name], snap.get("restarts", 0))
            fps.add_metric([name], snap["fps_now"])
            queue.add_metric([name], snap["queued"])
            for type_, n in sorted(snap["events"].items()):
                events.add_metric([name, type_], n)
            for stage, provider in snap["providers"].items():
                models.add_metric([name, stage], {"provider": provider})
            for sink, stats in snap["sinks"].items():
                for key, value in stats.items():
                    fam = sinks.get(key)
                    if fam is None:
                        fam = sinks[key] = CounterMetricFamily(
                            f"streamcnn_sink_{key}", f"A sink's own count: {key}", labels=["pipeline", "sink"])
                    fam.add_metric([name, sink], value)
        yield from families.values()
        yield from (up, fps, queue, events, models, where, restarts)
        yield from sinks.values()


__all__ = ["FPS_WINDOW", "LATENCY_BUCKETS", "FrameRate", "Metrics", "RunsCollector"]
