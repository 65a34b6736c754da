"""The YAML configuration: one validated model of a pipelines file.

Modules: ``schema`` (the file's shape), ``messages`` (pydantic errors in plain words with file,
line, column and key path), ``components`` (one source/stage/sink entry resolved to its class and
params), ``resolved`` (the result: `Config`, `PipelineConfig`, `Component`), ``loader``
(`load_config`: read, validate, resolve, cross-check).
"""

from .components import pick_source_type
from .loader import load_config, load_config_text
from .resolved import Component, Config, PipelineConfig

__all__ = ["Component", "Config", "PipelineConfig", "load_config", "load_config_text", "pick_source_type"]
