"""The schema of a pipelines file before its components are resolved (pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

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


class PipelineSpec(BaseModel):
    """One entry of ``pipelines:`` before its components are resolved."""

    model_config = ConfigDict(extra="forbid")
    source: str | int | dict[str, Any]
    stages: list[Any] = Field(default_factory=list)
    sinks: list[Any] = Field(default_factory=list)
    on_error: Literal["skip", "stop"] = "skip"
    optional: bool = False  # when running all pipelines: skip it (one warning) if its models/media are missing
    in_flight: int | Auto | None = None  # frames in its stateless stages at once (default: runtime.in_flight)

    @field_validator("in_flight")
    @classmethod
    def _in_flight(cls, v: object) -> object:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"expected 'auto' or a whole number ≥ 1, got {v}")
        return v
    batch: int = Field(1, ge=1)  # frames handed to a stateless stage's process_batch at once


class FileSpec(BaseModel):
    """The whole file before resolution."""

    model_config = ConfigDict(extra="forbid")
    plugins: list[str] = Field(default_factory=list)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    pipelines: dict[str, PipelineSpec]


__all__ = ["FileSpec", "PipelineSpec", "RuntimeSpec"]
