"""A resolved configuration: each pipeline's source, stages and sinks as classes with validated params."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import Context
from ..errors import ConfigError, StreamcnnError, where
from ..pluginmanager import Plugins
from ..yamlpos import Positions
from .schema import RuntimeSpec


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
    file: str | None = None  # the YAML file it was written in
    plugin: str | None = None  # the name of the plugin that registered its type
    #: set by `build` when the class raised something other than a StreamcnnError, OSError or
    #: ValueError (a plugin bug): a configuration error (``streamcnn run`` exits 2)
    failure: ConfigError | None = field(default=None, repr=False, compare=False)

    def build(self) -> Any:
        """A new instance of the component (the engine calls this once per run).

        Raises:
            StreamcnnError: the class raised one, or an OSError/ValueError (then named with this
                component's kind, type and YAML key path).
            ConfigError: the class raised anything else (see `start_failure`); also kept in ``failure``.
        """
        try:
            return self.cls(self.params, self.ctx)
        except StreamcnnError:
            raise
        except (OSError, ValueError) as exc:
            raise StreamcnnError(f"{self.kind} '{self.type_name}' ({self.path}): {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a plugin's own bug: reported by name and YAML line
            self.failure = self.start_failure(exc)
            raise self.failure from None

    def start_failure(self, exc: BaseException, when: str = "failed to start") -> ConfigError:
        """The configuration error for an exception the component's class raised while it was built
        (``when``), e.g. ``p.yaml:6:15: pipelines.cam.sinks[0].boom: sink 'boom' of plugin
        '/x/my.py' failed to start: RuntimeError: no disk at /x/my.py:12 (-v shows the traceback)``.
        The traceback is logged at DEBUG on ``streamcnn.config`` (shown with ``-v``)."""
        logging.getLogger("streamcnn.config").debug(
            "%s '%s' (%s) %s; traceback:", self.kind, self.type_name, self.path, when, exc_info=exc)
        of = f" of plugin {self.plugin!r}" if self.plugin else ""
        return ConfigError(
            f"{self.kind} '{self.type_name}'{of} {when}: {type(exc).__name__}: {exc}{where(exc)} "
            "(-v shows the traceback)", self.file, self.line, self.column, self.path,
        )


@dataclass
class PipelineConfig:
    name: str
    source: Component
    stages: list[Component]
    sinks: list[Component]
    on_error: str = "skip"
    optional: bool = False
    in_flight: int | str | None = None  # None: the runtime section's in_flight
    batch: int = 1
    resources: Any = None  # a ResourcesSpec (``--ray`` only), None: the defaults
    group: str | None = None  # ``--ray`` only: pipelines of one group share one actor
    text: str | None = None  # the YAML it was defined in (a cluster actor loads it again); file: its path
    file: str = ""


@dataclass
class Config:
    """A validated configuration file.

    Attributes:
        file: the YAML path as given; ``config_dir`` its directory.
        pipelines: ``{name: PipelineConfig}`` in file order.
        plugins: the loaded plugins (entry points + YAML ``plugins:``).
        runtime: the ``runtime:`` section (threads, frames in flight, batching, GPU options).
    """

    file: str
    config_dir: Path
    pipelines: dict[str, PipelineConfig]
    plugins: Plugins
    positions: Positions = field(default_factory=Positions)
    skipped: dict[str, str] = field(default_factory=dict)  # optional pipelines left out, and why
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)  # the file's ``runtime:`` section
    cluster: Any = None  # the file's ``cluster:`` section (a ClusterSpec), None when absent


__all__ = ["Component", "Config", "PipelineConfig"]
