"""The streamcnn plugin hooks (the only hook specification module).

A plugin is a module or object with functions decorated ``@streamcnn.hookimpl`` whose names
are the hooks below. Built-in plugins (``streamcnn_plugins``) use exactly these hooks and
register through the ``streamcnn`` entry-point group, like any installed package would::

    [project.entry-points.streamcnn]
    my_filters = "my_package.filters"

An implementation may take any subset of a hook's parameters, by name (as in pytest)::

    @streamcnn.hookimpl
    def streamcnn_frame_done(frame):
        ...

Two kinds of hooks:

* type hooks (``streamcnn_stage_types``, ``streamcnn_source_types``, ``streamcnn_sink_types``)
  are called once per plugin, when it is loaded, in the thread that loads the plugins (the main
  thread for the ``streamcnn`` command). An implementation that raises, or that returns something
  other than a table of subclasses of the matching base class, marks its plugin as failed, like a
  plugin that fails to import: the failure, with the exception and the file and line it came from,
  is shown by ``streamcnn plugins`` and named when a YAML file asks for one of the missing types.
  A plugin named in a YAML ``plugins:`` list that fails stops loading that file (a ``PluginError``
  naming its line); a failed installed (entry-point) plugin is logged and the others load.
* lifecycle hooks (``streamcnn_pipeline_started``, ``streamcnn_source_event``, ``streamcnn_event``,
  ``streamcnn_frame_done``, ``streamcnn_pipeline_stopped``) are called for every pipeline of a
  run, on that pipeline's threads (each pipeline has its own pipeline thread ``pipeline-NAME`` and
  source reader thread ``streamcnn-NAME-reader``; several pipelines run at the same time, so an
  implementation that keeps state across pipelines must lock it). An implementation that raises is
  logged at ERROR on the logger ``streamcnn.NAME`` as ``pipeline 'NAME': hook HOOK of plugin
  'PLUGIN' raised: TYPE: MESSAGE at FILE:LINE``, naming the plugin whose implementation raised; this
  is never fatal, except for ``streamcnn_frame_done`` under ``on_error: stop``, where it stops the
  pipeline with that message as its error.

As in pluggy (and pytest), the implementations of one hook are called last-registered first, and
when one raises the others not yet called are skipped for that call.

Tracing: with the environment variable ``STREAMCNN_TRACE_PLUGINS=1`` every hook call is logged at
INFO on the logger ``streamcnn.plugins.trace``, one line per call: the hook, its arguments in short
(a `Frame` as its index, no pixel arrays, credentials removed), the thread and the plugins called,
in call order. ``streamcnn plugins`` lists which plugin implements which hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pluggy

if TYPE_CHECKING:
    from .api import PipelineInfo, Sink, Source, Stage
    from .events import Event
    from .frame import Frame

hookspec = pluggy.HookspecMarker("streamcnn")
hookimpl = pluggy.HookimplMarker("streamcnn")

SourceEvent = Literal["disconnected", "reconnected"]
SourceEvent.__doc__ = """The ``event`` of `streamcnn_source_event`: ``"disconnected"`` or ``"reconnected"``."""

# the hook names by kind, lifecycle ones in the order a pipeline calls them (``streamcnn plugins`` lists them so)
LIFECYCLE_HOOKS = (
    "streamcnn_pipeline_started", "streamcnn_source_event", "streamcnn_event", "streamcnn_frame_done",
    "streamcnn_pipeline_stopped",
)
TYPE_HOOKS = ("streamcnn_stage_types", "streamcnn_source_types", "streamcnn_sink_types")


@hookspec
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    """Return the stage classes this plugin provides, keyed by the name used in YAML.

    Called once, when the plugin is loaded, in the thread that loads the plugins (the main
    thread for the ``streamcnn`` command); before any pipeline is built.

    Returns:
        ``{name: cls}`` with every ``cls`` a subclass of `streamcnn.Stage` (None: nothing).

    Raising (or returning a class that is not a `Stage`) marks the plugin as failed, like a
    failed import; a name another plugin registered too is a conflict that stops loading.
    """


@hookspec
def streamcnn_source_types() -> dict[str, type[Source]]:
    """Return the source classes this plugin provides, keyed by type name.

    Called once, when the plugin is loaded, in the thread that loads the plugins (the main
    thread for the ``streamcnn`` command). A source's ``type:`` in YAML names one of these; when
    it is not given, the types whose ``claims(uri)`` is true are asked, the highest ``priority``
    wins.

    Returns:
        ``{name: cls}`` with every ``cls`` a subclass of `streamcnn.Source` (None: nothing).

    Raising (or returning a class that is not a `Source`) marks the plugin as failed, like a
    failed import; a name another plugin registered too is a conflict that stops loading.
    """


@hookspec
def streamcnn_sink_types() -> dict[str, type[Sink]]:
    """Return the sink classes this plugin provides, keyed by the name used in YAML.

    Called once, when the plugin is loaded, in the thread that loads the plugins (the main
    thread for the ``streamcnn`` command).

    Returns:
        ``{name: cls}`` with every ``cls`` a subclass of `streamcnn.Sink` (None: nothing).

    Raising (or returning a class that is not a `Sink`) marks the plugin as failed, like a
    failed import; a name another plugin registered too is a conflict that stops loading.
    """


@hookspec
def streamcnn_pipeline_started(pipeline: str, info: PipelineInfo) -> None:
    """A pipeline has started: called once per pipeline run, on its pipeline thread, after its
    stages are built and its source reader thread has started, before its first frame is
    processed (so before any `streamcnn_frame_done` of that pipeline).

    The source may still be connecting (then ``info.fps`` is None and a `streamcnn_source_event`
    may come from the reader thread at any time, even before this call returns), and the sinks
    are not built yet (they are built when the first frame arrives).

    Args:
        pipeline: the pipeline's name (its key under ``pipelines:``).
        info: what it runs: source id (credentials removed), stage and sink names, frame rate.

    Raising is logged naming the plugin; the pipeline runs on.
    """


@hookspec
def streamcnn_pipeline_stopped(pipeline: str, stats: dict[str, Any]) -> None:
    """A pipeline has stopped: called once per pipeline run, on its pipeline thread, after its
    source reader was stopped and its sinks and stages were closed (sinks flushed), also when it
    failed, was stopped (Ctrl-C, ``--max-frames``) or never got a frame. When the pipeline failed
    before its source reader started (e.g. a stage could not be built), it is called without
    `streamcnn_pipeline_started` having been called.

    Args:
        pipeline: the pipeline's name.
        stats: ``frames`` (went through all stages and sinks), ``skipped`` (a stage raised under
            ``on_error: skip``), ``dropped`` (overwritten under policy ``latest``), ``reconnects``,
            ``seconds``, ``fps`` (frames per second over the run) and ``error`` (the message that
            ended the pipeline, or None).

    Raising is logged naming the plugin; the run's result is not changed.
    """


@hookspec
def streamcnn_frame_done(pipeline: str, frame: Frame) -> None:
    """A frame has passed all stages and sinks: called for each such frame, in frame order, on the
    pipeline thread, right after the last sink's ``write`` (frames a stage failed on are not
    passed). It is on the per-frame path: keep it cheap, and hand slow work to a thread of your own.

    Args:
        pipeline: the pipeline's name.
        frame: the processed `Frame` (``image``, ``detections``, ``meta``; don't change it).

    Raising is logged naming the plugin and the frame index and the pipeline runs on; under the
    pipeline's ``on_error: stop`` it stops the pipeline instead, with that message as its error.
    """


@hookspec
def streamcnn_source_event(pipeline: str, source: str, event: SourceEvent, detail: dict[str, Any]) -> None:
    """A live source (camera, stream) lost or regained its frames: called on the pipeline's
    source reader thread (not the pipeline thread: share state with the other hooks under a
    lock), once per outage (``disconnected``) and once when frames flow again (``reconnected``).
    Not called once the pipeline is stopping, nor for files or folders.

    Args:
        pipeline: the pipeline's name.
        source: the source id (URI with credentials removed), as in ``detail["source"]``.
        event: ``"disconnected"`` or ``"reconnected"`` (`streamcnn.SourceEvent`).
        detail: ``source``; ``index`` (frames read so far); ``first_connect`` (true while the
            source never delivered a frame: it could not connect, or has just connected);
            ``reason`` (``disconnected``: why, e.g. ``no frame for 5 s (stall_timeout)``);
            ``downtime`` (seconds) and ``attempts`` (``reconnected``).

    Raising is logged naming the plugin; the reader keeps reading and reconnecting.
    """


@hookspec
def streamcnn_event(pipeline: str, event: Event) -> None:
    """An event of a pipeline (`streamcnn.Event`): every event any stage emitted
    (`streamcnn.Context.emit`: ``appeared``, ``crossed``, ``recognised``, a plugin's own types) and
    the source's ``disconnected``/``reconnected`` (the same outages `streamcnn_source_event` reports,
    as events). Called on the pipeline thread, in the order the events were emitted, a frame's events
    before that frame reaches the sinks (and before its `streamcnn_frame_done`), then each event goes
    to the pipeline's sinks (`streamcnn.Sink.event`). Keep it cheap: hand slow work (a network call)
    to a thread of your own. To emit an event from a plugin, use a stage's ``self.ctx.emit``.

    Args:
        pipeline: the pipeline's name.
        event: the event; ``event.to_dict()`` is its JSON object (``type``, ``pipeline``,
            ``source``, ``time``, ``epoch``, ``pts``, ``frame_index`` and the type's fields).

    Raising is logged naming the plugin and the event; the pipeline runs on.
    """
