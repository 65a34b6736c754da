"""The schema of a pipelines file before its components are resolved (pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..budget import Auto, RuntimeSpec


class ResourcesSpec(BaseModel):
    """``resources:`` of a pipeline run on a Ray cluster (``--ray``): what Ray reserves for its actor.
    Ignored without ``--ray``. A ``group:`` of pipelines gets the sum of its members' resources."""

    model_config = ConfigDict(extra="forbid")
    cpus: float = Field(1.0, ge=0, description="CPU cores (Ray's num_cpus); fractions share a core")
    gpus: float = Field(0.0, ge=0, description="GPUs (Ray's num_gpus); 0.25 lets four pipelines share one")


class ClusterSpec(BaseModel):
    """``cluster:``: run the pipelines on a Ray cluster (like ``streamcnn run --ray ADDRESS``)."""

    model_config = ConfigDict(extra="forbid")
    ray: str = Field(description="Ray address: auto (the cluster this machine belongs to), local (start "
                     "one here), or HOST:PORT of the head node, or ray://HOST:10001")
    max_restarts: int = Field(3, ge=0, description="restarts of a pipeline's actor after its process or "
                              "node died, before the pipeline is marked failed")
    namespace: str = Field("streamcnn", description="Ray namespace of the actors")


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
    resources: ResourcesSpec | None = None  # with --ray: what its actor reserves (default 1 CPU)
    group: str | None = None  # with --ray: pipelines of one group share one actor (process, model sessions)


class FileSpec(BaseModel):
    """The whole file before resolution."""

    model_config = ConfigDict(extra="forbid")
    plugins: list[str] = Field(default_factory=list)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    pipelines: dict[str, PipelineSpec]
    cluster: ClusterSpec | None = None


__all__ = ["ClusterSpec", "FileSpec", "PipelineSpec", "ResourcesSpec", "RuntimeSpec"]
