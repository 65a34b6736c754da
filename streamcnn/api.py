"""Base classes for plugin authors: `Stage`, `Source`, `Sink` and their parameter models.

A stage is a class with a pydantic ``Params`` model (validated from the YAML mapping under
the stage name) and a ``process(frame) -> frame`` method::

    import streamcnn

    class Blur(streamcnn.Stage):
        class Params(streamcnn.Params):
            ksize: int = streamcnn.Field(5, ge=1, description="kernel side in pixels, odd")

        def process(self, frame):
            frame.image = cv2.blur(frame.image, (self.params.ksize,) * 2)
            return frame

    @streamcnn.hookimpl
    def streamcnn_stage_types():
        return {"blur": Blur}
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field  # noqa: F401  (Field is re-exported)

from .events import Event, EventQueue, make_event
from .frame import Frame


class Params(BaseModel):
    """Base of every parameter model: unknown options are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class DetectorParams(Params):
    """The option every detector stage shares; mix it into the stage's ``Params``
    (``class Params(DetectorParams, ModelParams)``) and store results with `Frame.add_detections`.

    Attributes:
        replace: False (default): the stage adds its detections to those already on the frame
            (from earlier detector stages), so ``yolo → face_detect`` keeps persons and faces;
            True: its detections replace them.
    """

    replace: bool = Field(False, description="replace the detections of earlier stages instead of adding to them")


def node_name() -> str:
    """The name of the machine this process runs on, for ``{node}`` in output paths:
    ``STREAMCNN_NODE`` when set, else the host name (``socket.gethostname()``). On a Ray cluster
    each pipeline's files are written on the node that runs it, so ``out/{node}/{pipeline}.mp4``
    keeps the nodes' files apart when they share a folder (NFS)."""
    return os.environ.get("STREAMCNN_NODE", "").strip() or socket.gethostname()


@dataclass
class Context:
    """What a stage, source or sink learns about where it runs.

    Attributes:
        name: the stage/source/sink type name as written in YAML.
        pipeline: the pipeline's name.
        config_dir: directory of the YAML file (relative paths in options resolve against it).
        log: logger named ``streamcnn.<pipeline>.<name>``.
        source: the pipeline's source id (credentials removed), set when the pipeline starts.
        fps: the source's nominal frame rate in frames/s, set before the first frame reaches the
            stages (None before, and for a source that reports none, e.g. some cameras).
        events: where `emit` puts events: the running pipeline's queue (None outside a run, e.g.
            under ``streamcnn validate``: events are then made but go nowhere).
        resumed: this run goes on from one whose process died (a restarted cluster actor): a sink
            continues its outputs instead of overwriting them (the ``jsonl`` sinks append, the
            ``video`` sink starts ``NAME-1.mp4``).

    The stream's frame rate and frame size reach a sink through `Sink.open` (`StreamInfo`).
    """

    name: str
    pipeline: str
    config_dir: Path = field(default_factory=Path.cwd)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("streamcnn"))
    source: str = ""
    fps: float | None = None
    events: EventQueue | None = field(default=None, repr=False, compare=False)
    resumed: bool = False

    def emit(self, type: str, frame: Frame | None = None, **fields: Any) -> Event:  # noqa: A002 - the event's type
        """Emit an event of this pipeline (from any thread; a stage usually emits from ``process``).

        The engine hands it, in order and on the pipeline thread, to the ``streamcnn_event`` hook
        and to every sink's `Sink.event`, before the frame being processed is written; an event
        emitted between frames within 0.25 s.

        Args:
            type: the event type, e.g. ``"crossed"`` (`streamcnn.EVENT_TYPES` lists the built-in ones).
            frame: the frame it happened at: gives the event's source, time (the frame's
                ``capture_time``), ``pts`` and ``frame_index``. Without one: now, no pts.
            fields: the type's own fields (JSON-ready values; numpy values are converted).

        Returns:
            The `Event` (already queued).

        Raises:
            ValueError: a field named like an envelope key (``pts``, ``time``, ``pipeline`` ...), or a
                value that cannot be written as JSON (the message names the field).
        """
        if type in ("", None) or not isinstance(type, str):
            raise ValueError(f"an event type is a non-empty string, got {type!r}")
        event = make_event(type, self.pipeline, self.source, frame=frame, **fields)
        if self.events is not None:
            self.events.put(event)
        return event

    def resolve(self, path: str | Path) -> Path:
        """A path from YAML, made absolute against the YAML file's directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.config_dir / p

    def check_writable(self, path: str) -> None:
        """For a sink's ``check``: raise ValueError when the output file's folder cannot be created
        or written (names the folder)."""
        out = self.output_path(path)
        folder = out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            if not folder.is_dir():
                raise OSError("not a folder")
            with tempfile.TemporaryFile(dir=folder):  # the real test (permission bits lie to root)
                pass
        except OSError:
            raise ValueError(f"cannot write {out}: the folder {folder} is not writable") from None

    def fill(self, template: str) -> str:
        """``template`` with ``{pipeline}`` (the pipeline's name) and ``{node}`` (`node_name`: the
        machine the pipeline runs on) filled in; other ``{fields}`` are left for the sink."""
        return template.replace("{pipeline}", self.pipeline).replace("{node}", node_name())

    def output_path(self, path: str) -> Path:
        """An output file path from YAML: `fill` (``{pipeline}``, ``{node}``), then `resolve`.
        Every file-writing sink uses this (and the duplicate-output check too)."""
        return self.resolve(self.fill(path))

    def lock_output(self, path: str | Path) -> OutputLock:
        """For a sink's ``__init__``: take an exclusive lock on the output file ``path`` (an absolute
        path, e.g. from `output_path`), so that a second process writing the same file refuses to
        start instead of interleaving its records with this one's. Call ``release()`` on the
        returned lock in ``close`` (and when ``__init__`` fails after taking it).

        The lock is an ``fcntl.flock`` on a side file ``.NAME.lock`` next to the output that holds
        the pid of the writer; the kernel drops it when the process dies, so a killed run leaves
        no stale lock. Where locks are not supported (no ``fcntl``, or the folder refuses the lock
        file) a warning is logged and the sink runs unlocked.

        Raises:
            SinkWriteError: another process (its pid in the message, when known) holds the lock.
        """
        return OutputLock.acquire(Path(path), self.name, self.log)


@dataclass(frozen=True)
class Output:
    """Something a component writes that no other component may write too (checked at validate).

    Attributes:
        kind: ``"file"`` (``target`` is an absolute path) or ``"port"`` (``target`` is ``"host:port"``).
        target: the file path or the listening address.
    """

    kind: Literal["file", "port"]
    target: str

    @classmethod
    def file(cls, path: str | Path) -> Output:
        """A file output; the path is made absolute (symlinks resolved) so two spellings compare equal."""
        return cls("file", str(Path(path).resolve()))

    @classmethod
    def port(cls, host: str, port: int) -> Output:
        """A listening TCP port (``port`` 0, "any free port", never collides and gives no output)."""
        return cls("port", f"{host}:{port}")


class OutputLock:
    """An exclusive lock on one output file, taken by `Context.lock_output` (see there).

    Attributes:
        path: the output file.
        lock_path: the side file holding the lock and the writer's pid, or None when running unlocked.
    """

    def __init__(self, path: Path, lock_path: Path | None, fd: int | None) -> None:
        self.path, self.lock_path, self._fd = path, lock_path, fd

    @classmethod
    def acquire(cls, path: Path, sink: str, log: logging.Logger) -> OutputLock:
        """Lock ``path`` for this process (see `Context.lock_output`); ``sink`` names the sink in messages."""
        from .errors import SinkWriteError

        try:
            import fcntl
        except ImportError:  # not a POSIX system
            log.debug("%s sink: no fcntl here; %s is written without a lock", sink, path)
            return cls(path, None, None)
        lock_path = Path(os.path.realpath(path.parent)) / f".{path.name}.lock"
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                log.warning("%s sink: cannot create the lock file %s (%s); writing %s without a lock, so another "
                            "process writing the same file would not be noticed", sink, lock_path, exc.strerror, path)
                return cls(path, None, None)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f"another process (pid {holder})" if holder else "another process"
                    raise SinkWriteError(
                        sink, path, f"the file is being written by {who}, which holds the lock {lock_path}; "
                        "let that run finish or stop it, or give this sink another path",
                    ) from None
                log.warning("%s sink: cannot lock %s (%s); writing %s without a lock", sink, lock_path,
                            exc.strerror, path)
                return cls(path, None, None)
            try:  # a holder that released meanwhile removes the file: lock the one at the path now
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return cls(path, lock_path, fd)

    @property
    def locked(self) -> bool:
        """True while this process holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.lock_path is not None:
                self.lock_path.unlink(missing_ok=True)  # while still holding it (see `acquire`)
        except OSError:
            pass
        finally:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    """The pid written in a lock file, or None."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class _Component:
    """What stages, sources and sinks share: a pydantic ``Params`` model, a `Context`, the
    validate-time ``check``, the declared ``outputs`` and ``close``."""

    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params, ctx: Context) -> None:
        self.params = params
        self.ctx = ctx

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """Validate what can be checked without running (``streamcnn validate`` and ``run`` before
        starting), e.g. that a model file exists; raise ``ValueError`` with a user-facing message.
        Default: nothing."""

    @classmethod
    def outputs(cls, params: Params, ctx: Context) -> list[Output]:
        """The files and ports this component writes or binds with these params, so that two
        components writing the same file (or binding the same port) are a configuration error.
        Default: none. File sinks return ``[Output.file(ctx.output_path(params.path))]``."""
        return []

    def close(self) -> None:
        """Release resources and flush; called exactly once when the pipeline stops (also on
        Ctrl-C/SIGTERM)."""


class Stage(_Component):
    """A processing step. Subclasses set ``Params`` and implement ``process``.

    Built once per pipeline run, on the pipeline's thread, before the source starts (``validate``
    builds and closes one too, so everything a stage checks in ``__init__`` — a model loads, its
    output shapes fit — is reported at the stage's YAML line).

    Attributes:
        stateless: False (the default): ``process`` is called for one frame at a time, strictly in
            frame order, always from the same thread (a tracker, a stage that keeps the previous
            frame, anything that needs order). True: ``process`` depends only on the frame it is
            given (and on what ``__init__`` set up), like a detector or a filter; the engine may
            then call it on several consecutive frames at once, from the pipeline's stage worker
            threads (``streamcnn-NAME-stage_N``; how many: the pipeline's ``in_flight``), so it must
            not keep per-frame state on ``self``. A class attribute, or set on the instance in
            ``__init__`` when it depends on the options (``style`` is stateless unless ``every > 1``).
            The frames still reach the later stages and the sinks in frame order.
    """

    stateless: ClassVar[bool] = False

    @classmethod
    def check_chain(cls, params: Params, ctx: Context, before: list[tuple[str, type[Stage], Params]]) -> None:
        """Validate this stage against the stages before it in the pipeline (``before``: their YAML
        names, classes and params, in order), e.g. that something upstream provides the landmarks
        this stage needs; raise ``ValueError`` with a user-facing message. Default: nothing."""

    def process(self, frame: Frame) -> Frame:
        """Transform one frame (may change ``image``, ``detections``, ``meta``) and return it."""
        raise NotImplementedError(f"{type(self).__name__}.process is not implemented")

    def finish(self) -> None:
        """The stream has ended (end of file, ``--max-frames``, Ctrl-C): called once after the last
        frame went through, on the pipeline thread, before the sinks are closed, so that events the
        stage still owes (a tracker's ``disappeared`` of the objects still in view) reach them.
        Not called when the pipeline failed. Default: nothing."""

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        """Transform several consecutive frames of one pipeline at once and return them, in order.

        Called instead of ``process`` when the pipeline's ``batch`` option is above 1 and several
        frames are waiting (at most ``batch``; never for a stage that is not ``stateless``). The
        default calls ``process`` on each frame; a model stage overrides it to run its model once
        on the stacked inputs (a GPU runs a batch of N in much less than N single runs). When it
        raises, the engine runs the frames one by one through ``process``, so the error is reported
        with the frame it belongs to.

        Args:
            frames: 1 to ``batch`` frames, in frame order.

        Returns:
            The processed frames: as many as given, in the same order.
        """
        return [self.process(frame) for frame in frames]


class SourceParams(Params):
    """Options every source accepts (the YAML ``source:`` mapping).

    Attributes:
        uri: file path, folder or glob, camera index or ``/dev/videoN``, ``rtsp://``/``http(s)://``
            URL, or ``pattern`` for the synthetic test pattern.
        type: force a source type instead of guessing it from ``uri``.
        policy: ``latest`` hands over only the newest frame (drops the rest, never repeats one);
            ``all`` hands over every frame. Default: ``latest`` for live sources, ``all`` otherwise.
        queue_size: frames buffered under policy ``all`` before the reader waits.
        stall_timeout: seconds without a frame before a live source counts as disconnected.
        backoff_initial, backoff_max: reconnect delays in seconds (doubling, capped).
        reconnect: reconnect live sources that drop (default true).
        pts: live sources: ``stream`` (default) spaces frames by the stream's own timestamps where
            the capture gives them, ``arrival`` by the reader's clock when each frame arrived.
        pts_policy: a timestamp that does not increase: ``drop`` the frame (default) or ``restamp``
            it just after the previous one; both are counted (``pts_discontinuities`` in the stats).
        pts_reset: seconds a timestamp may jump backwards before it counts as a camera clock reset
            (then everything after it is re-based instead of dropped).
        lag_warning: seconds a live source under ``policy: all`` may fall behind (frame age when a
            frame's stages start) before one warning says so.

    What a plugin sees as ``Frame.pts``: seconds, strictly increasing per pipeline run
    (`streamcnn.engine.timeline`).
    """

    uri: str | int
    type: str | None = None
    policy: Literal["latest", "all"] | None = None
    queue_size: int = Field(8, ge=1)
    stall_timeout: float = Field(5.0, gt=0)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    reconnect: bool = True
    pts: Literal["stream", "arrival"] = "stream"
    pts_policy: Literal["drop", "restamp"] = "drop"
    pts_reset: float = Field(5.0, gt=0)
    lag_warning: float = Field(5.0, gt=0)


class Source(_Component):
    """A frame producer. Subclasses set ``Params`` (a ``SourceParams``), ``live`` and implement
    ``claims``, ``open``, ``read`` and ``close``. The engine handles threading, live policy,
    stall detection and reconnection. ``check`` must not open the stream.
    """

    Params: ClassVar[type[SourceParams]] = SourceParams
    params: SourceParams
    live: ClassVar[bool] = False  # live sources default to policy "latest" and are reconnected
    priority: ClassVar[int] = 0  # when several types claim a uri the highest wins (catch-alls: < 0)

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        """True when this source type handles ``uri`` (used when ``type`` is not given)."""
        return False

    @property
    def id(self) -> str:
        """Identifier for logs and ``Frame.source`` (never contains credentials)."""
        from .redact import redact

        return redact(str(self.params.uri))

    @property
    def fps(self) -> float | None:
        """Nominal frame rate in frames/s, when known (after ``open``)."""
        return None

    def open(self) -> None:
        """Open (or re-open) the stream. Raises ``SourceError``."""

    def read(self) -> tuple[np.ndarray, float | None] | tuple[np.ndarray, float | None, dict] | None:
        """Next frame as (uint8 H×W×3 BGR image, pts in seconds or None[, meta dict merged into
        ``Frame.meta``, e.g. ``{"file": path}``]), or None at the end of the stream or on failure."""
        raise NotImplementedError(f"{type(self).__name__}.read is not implemented")

    def close(self) -> None:
        """Release the stream; may be called from another thread and more than once."""


@dataclass(frozen=True)
class StreamInfo:
    """What a sink learns about the stream when its first frame arrives (`Sink.open`).

    Attributes:
        fps: the source's nominal frame rate in frames/s, or None when unknown (e.g. a camera
            that reports none).
        width, height: the first processed frame's size in pixels (after the stages).
        live: the source is live (a camera: frames may be dropped, the stream may end any time),
            e.g. the ``video`` sink then writes crash-safe fragmented files by default.
    """

    fps: float | None
    width: int
    height: int
    live: bool = False


class Sink(_Component):
    """A frame consumer (file writer, display, ...).

    Life cycle, all on the pipeline's thread: ``__init__`` when the pipeline starts (before the
    source's first frame), ``open(stream)`` once when the first processed frame arrives, then
    ``write(frame)`` per frame in frame order, then ``close()`` exactly once (also on
    Ctrl-C/SIGTERM), which must flush everything written. An exception from ``open``/``write`` is
    reported with the sink's name and the frame index and handled by the pipeline's ``on_error``.
    """

    stream: StreamInfo | None = None

    def open(self, stream: StreamInfo) -> None:
        """Called once before the first ``write`` with the stream's fps and frame size; the
        default stores it as ``self.stream``. Override to open a writer that needs them."""
        self.stream = stream

    def write(self, frame: Frame) -> None:
        """Consume one processed frame (called from the pipeline's thread, in frame order)."""
        raise NotImplementedError(f"{type(self).__name__}.write is not implemented")

    def stats(self) -> dict[str, int]:
        """The sink's own counts for the metrics (``streamcnn_sink_<key>_total``), e.g. the ``mqtt``
        sink's ``{"published": n, "dropped": m}``; read from another thread at scrape time, so return
        plain ints. Default: none."""
        return {}

    def event(self, event: Event) -> None:
        """Consume one event of this pipeline (`streamcnn.Event`), on the pipeline's thread, in the
        order they were emitted: a frame's events before that frame's ``write``, a camera's events
        between frames — also before ``open`` (a camera that never connects). Default: ignore it.
        An exception is reported with the sink's name, the event type and its frame index."""


class EventSink(Sink):
    """A sink for events only (``events_jsonl``, ``mqtt``, ``webhook``): implement `event`; frames
    are ignored. Open outputs in ``__init__``: events may come before the first frame."""

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """A ``types`` option naming an event type no built-in stage emits gets one warning with the
        closest type (`streamcnn.unknown_event_types`); subclasses that override ``check`` call this."""
        from .events import unknown_event_types

        warning = unknown_event_types(getattr(params, "types", None))
        if warning:
            ctx.log.warning("sink '%s': types: %s", ctx.name, warning)

    def write(self, frame: Frame) -> None:
        """Frames are not this sink's business."""


def to_bgr3(image: np.ndarray) -> np.ndarray:
    """Make an H×W, H×W×1, H×W×3 or H×W×4 image an H×W×3 one (gray replicated, alpha dropped).

    The dtype is kept; a 3-channel input is returned as is (not copied).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


@dataclass(frozen=True)
class PipelineInfo:
    """What a pipeline runs, as passed to the ``streamcnn_pipeline_started`` hook.

    Attributes:
        name: the pipeline's name (its key under ``pipelines:``).
        source: the source id: its URI with any credentials removed (``rtsp://***@host/...``);
            removed here again, whatever the source's ``id`` returned.
        stages: the stage names as written in YAML, in order.
        sinks: the sink names as written in YAML, in order.
        fps: the source's nominal frame rate in frames/s, or None while not known (e.g. a live
            source that is still connecting).
    """

    name: str
    source: str
    stages: tuple[str, ...] = ()
    sinks: tuple[str, ...] = ()
    fps: float | None = None

    def __post_init__(self) -> None:
        from .redact import redact

        object.__setattr__(self, "source", redact(str(self.source)))
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "sinks", tuple(self.sinks))


__all__ = [
    "Context", "EventSink", "Field", "Output", "Params", "PipelineInfo", "Sink", "Source", "SourceParams", "Stage",
    "StreamInfo", "to_bgr3",
]
