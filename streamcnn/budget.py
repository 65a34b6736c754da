"""The thread budget: how a run spends its cores on pipelines, frames in flight and inference threads.

One rule, applied by the `streamcnn.engine.Engine` before any model is loaded (each ``auto`` in the
YAML ``runtime:`` section; a number there, or a pipeline's own ``in_flight``, overrides it):

* ``cores`` = the CPUs this process may run on (``os.sched_getaffinity``);
* ``in_flight`` per pipeline = ``clamp(cores // pipelines, 1, 4)``: frames of one pipeline in its
  stateless stages at once (see `streamcnn.Stage.stateless`);
* ``concurrency`` = the inferences that can run at once: the sum of the pipelines' ``in_flight``
  (1 for a pipeline whose first stage is not stateless);
* ``intra_op_threads`` = ``max(1, cores // concurrency)``: ONNX Runtime threads per inference, so
  that concurrent inferences do not fight over the cores (ORT's own default sizes every session's
  pool to all cores and spins its workers: N pipelines then run N × cores threads);
* ``spinning`` = only when a single inference runs at a time (spinning workers keep the cores busy
  between runs: faster for one stream, slower for many);
* ``opencv_threads`` = ``intra_op_threads`` (OpenCV's resize, blob and colour conversions inside
  stages run on the same cores; 1 means OpenCV runs each call on its calling thread);
* ``max_batch`` = 1: batching across pipelines (`streamcnn.runtime`) pays on a GPU, not on a CPU
  (measured: a batch of 2 on this CPU takes as long as two single runs), so it is only on when asked.

Measured on a 2-core machine (``python tools/bench.py --rows 6``, BENCHMARKS.md; YOLOX-nano on
vtest.avi, aggregate frames/s): 1 / 2 / 4 / 8 pipelines ran at 86 / 86 / 85 / 83 with this rule
against 72 / 68 / 72 / 75 at ONNX Runtime's defaults (one frame in flight, ORT's own pool), with the
pipelines' own frames/s within 3% of each other (up to 6% at the defaults). Two cores are full with
one pipeline at 2 frames in flight, so more pipelines share them; batching cost 5-35% here.

`RuntimeSpec`, the validated ``runtime:`` section, lives here with the rule that reads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Auto = Literal["auto"]


class RuntimeSpec(BaseModel):
    """The ``runtime:`` section: how the process spends its cores and its GPU (every key optional).

    ``auto`` values follow the rule in `streamcnn.budget` (documented in the README); a number
    overrides it.
    """

    model_config = ConfigDict(extra="forbid")
    intra_op_threads: int | Auto = Field("auto", description="ONNX Runtime threads per inference (0: ORT's default)")
    in_flight: int | Auto = Field("auto", description="frames per pipeline in its stateless stages at once")
    opencv_threads: int | Auto = Field("auto", description="cv2.setNumThreads for the process")
    spinning: bool | Auto = Field("auto", description="ONNX Runtime worker threads spin-wait between runs")
    max_batch: int | Auto = Field("auto", description="frames of one model run together across pipelines (1: off)")
    batch_timeout_ms: float = Field(2.0, ge=0, description="how long a model waits for more frames to batch")
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "EXHAUSTIVE"
    gpu_mem_limit_mb: int | None = Field(None, ge=1, description="CUDA arena limit in MiB (default: no limit)")
    arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = "kNextPowerOfTwo"
    io_binding: bool = Field(True, description="CUDA: bind inputs/outputs to device buffers")
    tensorrt_cache: str | None = Field(None, description="folder for TensorRT engines (device: tensorrt)")
    tensorrt_fp16: bool = Field(False, description="TensorRT: build fp16 engines")

    @field_validator("intra_op_threads", "in_flight", "max_batch", "opencv_threads")
    @classmethod
    def _whole(cls, v: object, info: ValidationInfo) -> object:
        low = 0 if info.field_name in ("opencv_threads", "intra_op_threads") else 1
        if isinstance(v, int) and v < low:
            raise ValueError(f"expected 'auto' or a whole number ≥ {low}, got {v}")
        return v


log = logging.getLogger("streamcnn.budget")

MAX_AUTO_IN_FLIGHT = 4  # beyond this, frames in flight add latency and memory, not throughput


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Budget:
    """What the rule (module docstring) gives for one run.

    Attributes:
        cores: CPUs available.
        in_flight: frames in flight per pipeline, by pipeline name.
        concurrency: inferences that can run at once (sum over pipelines).
        intra_op_threads: ONNX Runtime intra-op threads per session.
        spinning: whether ORT's intra-op workers spin-wait between runs.
        opencv_threads: ``cv2.setNumThreads`` value.
        max_batch: frames run together per model across pipelines (1: no batching).
        batch_timeout_ms: how long a model waits for more frames to fill a batch, in milliseconds.
    """

    cores: int
    in_flight: dict[str, int]
    concurrency: int
    intra_op_threads: int
    spinning: bool
    opencv_threads: int
    max_batch: int
    batch_timeout_ms: float

    def describe(self) -> str:
        """One log line: ``thread budget: 2 cores, 1 pipeline (2 frames in flight) → ...``."""
        flights = sorted(set(self.in_flight.values()))
        fl = "/".join(map(str, flights)) if flights else "0"
        n = len(self.in_flight)
        batch = f", batches of up to {self.max_batch} ({self.batch_timeout_ms:g} ms)" if self.max_batch > 1 else ""
        cores = f"{self.cores} core{'s' if self.cores != 1 else ''}"
        return (f"thread budget: {cores}, {n} pipeline{'s' if n != 1 else ''} "
                f"({fl} frame{'s' if flights != [1] else ''} in flight) → {self.intra_op_threads} ONNX Runtime "
                f"thread{'s' if self.intra_op_threads != 1 else ''} per inference (spinning "
                f"{'on' if self.spinning else 'off'}), OpenCV {self.opencv_threads}{batch}")


def plan(runtime: RuntimeSpec, pipelines: Mapping[str, tuple[int | str | None, bool]],
         cores: int | None = None) -> Budget:
    """Apply the rule of this module.

    Args:
        runtime: the YAML ``runtime:`` section.
        pipelines: ``{name: (its in_flight option or None, whether its first stage is stateless)}``.
        cores: override `available_cores` (tests, benchmarks).

    Returns:
        The `Budget`. Raises nothing (the options are validated by the config schema).
    """
    cores = cores or available_cores()
    default = runtime.in_flight
    auto = max(1, min(MAX_AUTO_IN_FLIGHT, cores // max(1, len(pipelines))))
    in_flight: dict[str, int] = {}
    concurrency = 0
    for name, (own, stateless) in pipelines.items():
        value = own if own is not None else default
        n = auto if value == "auto" else int(value)
        in_flight[name] = n
        concurrency += n if stateless else 1
    concurrency = max(1, concurrency)
    intra = max(1, cores // concurrency) if runtime.intra_op_threads == "auto" else int(runtime.intra_op_threads)
    spinning = concurrency == 1 if runtime.spinning == "auto" else bool(runtime.spinning)
    opencv = (intra or cores) if runtime.opencv_threads == "auto" else int(runtime.opencv_threads)
    max_batch = 1 if runtime.max_batch == "auto" else int(runtime.max_batch)
    return Budget(cores, in_flight, concurrency, intra, spinning, opencv, max_batch, runtime.batch_timeout_ms)


def apply(budget: Budget, runtime: RuntimeSpec, quiet: bool = False) -> None:
    """Make ``budget`` (and the GPU options of ``runtime``) the settings of every model session
    created from now on (`streamcnn.runtime.configure`) and set OpenCV's thread count; log it as one
    INFO line unless ``quiet`` (``load_config`` applies it quietly before its checks load models)."""
    import cv2

    from .runtime import SessionSettings, configure

    cv2.setNumThreads(budget.opencv_threads)
    configure(SessionSettings(
        intra_op_threads=budget.intra_op_threads, spinning=budget.spinning, max_batch=budget.max_batch,
        batch_timeout_ms=budget.batch_timeout_ms, cudnn_conv_algo_search=runtime.cudnn_conv_algo_search,
        gpu_mem_limit_mb=runtime.gpu_mem_limit_mb, arena_extend_strategy=runtime.arena_extend_strategy,
        io_binding=runtime.io_binding, tensorrt_cache=runtime.tensorrt_cache, tensorrt_fp16=runtime.tensorrt_fp16,
    ))
    if not quiet:
        log.info("%s", budget.describe())


__all__ = ["MAX_AUTO_IN_FLIGHT", "Auto", "Budget", "RuntimeSpec", "apply", "available_cores", "plan"]
