"""The schema of a pipelines file before its components are resolved (pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PipelineSpec(BaseModel):
    """One entry of ``pipelines:`` before its components are resolved."""

    model_config = ConfigDict(extra="forbid")
    source: str | int | dict[str, Any]
    stages: list[Any] = Field(default_factory=list)
    sinks: list[Any] = Field(default_factory=list)
    on_error: Literal["skip", "stop"] = "skip"
    optional: bool = False  # when running all pipelines: skip it (one warning) if its models/media are missing


class FileSpec(BaseModel):
    """The whole file before resolution."""

    model_config = ConfigDict(extra="forbid")
    plugins: list[str] = Field(default_factory=list)
    pipelines: dict[str, PipelineSpec]


__all__ = ["FileSpec", "PipelineSpec"]
