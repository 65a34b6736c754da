"""A resolved configuration: each pipeline's source, stages and sinks as classes with validated params."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import Context
from ..errors import StreamcnnError
from ..pluginmanager import Plugins
from ..yamlpos import Positions


@dataclass
class Component:
    """A resolved stage, source or sink: its class, validated params and context."""

    kind: str
    type_name: str
    cls: type
    params: Any
    ctx: Context
    path: str
    line: int | None = None
    column: int | None = None

    def build(self) -> Any:
        """A new instance of the component (the engine calls this once per run).

        Raises:
            StreamcnnError: the class raised one, or an OSError/ValueError (then named with this
                component's kind, type and YAML key path).
        """
        try:
            return self.cls(self.params, self.ctx)
        except StreamcnnError:
            raise
        except (OSError, ValueError) as exc:
            raise StreamcnnError(f"{self.kind} '{self.type_name}' ({self.path}): {exc}") from exc


@dataclass
class PipelineConfig:
    name: str
    source: Component
    stages: list[Component]
    sinks: list[Component]
    on_error: str = "skip"
    optional: bool = False


@dataclass
class Config:
    """A validated configuration file.

    Attributes:
        file: the YAML path as given; ``config_dir`` its directory.
        pipelines: ``{name: PipelineConfig}`` in file order.
        plugins: the loaded plugins (entry points + YAML ``plugins:``).
    """

    file: str
    config_dir: Path
    pipelines: dict[str, PipelineConfig]
    plugins: Plugins
    positions: Positions = field(default_factory=Positions)
    skipped: dict[str, str] = field(default_factory=dict)  # optional pipelines left out, and why


__all__ = ["Component", "Config", "PipelineConfig"]
