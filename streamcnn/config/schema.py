"""The schema of a pipelines file before its components are resolved (pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..budget import Auto, RuntimeSpec


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
