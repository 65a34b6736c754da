"""The streamcnn plugin hooks (the only hook specification module).

A plugin is a module or object with functions decorated ``@streamcnn.hookimpl`` whose names
are the hooks below. Built-in plugins (``streamcnn_plugins``) use exactly these hooks and
register through the ``streamcnn`` entry-point group, like any installed package would::

    [project.entry-points.streamcnn]
    my_filters = "my_package.filters"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .api import Sink, Source, Stage
    from .frame import Frame

hookspec = pluggy.HookspecMarker("streamcnn")
hookimpl = pluggy.HookimplMarker("streamcnn")


@hookspec
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    """Return the stage classes this plugin provides, keyed by the name used in YAML."""


@hookspec
def streamcnn_source_types() -> dict[str, type[Source]]:
    """Return the source classes this plugin provides, keyed by type name."""


@hookspec
def streamcnn_sink_types() -> dict[str, type[Sink]]:
    """Return the sink classes this plugin provides, keyed by the name used in YAML."""


@hookspec
def streamcnn_pipeline_started(pipeline: str, config: Any) -> None:
    """Called once per pipeline after its stages are built and its source reader has started
    (the source may still be connecting; sinks are built when the first frame arrives)."""


@hookspec
def streamcnn_pipeline_stopped(pipeline: str, stats: dict[str, Any]) -> None:
    """Called once after a pipeline's sinks are closed; ``stats`` has frame/drop/error counts."""


@hookspec
def streamcnn_frame_done(pipeline: str, frame: Frame) -> None:
    """Called after each frame has passed all stages and sinks (keep it cheap: it is per frame)."""


@hookspec
def streamcnn_source_event(pipeline: str, source: str, event: str, detail: dict[str, Any]) -> None:
    """Called on source state changes: ``event`` is ``disconnected`` or ``reconnected``."""
