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

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field  # noqa: F401  (Field is re-exported)

from .frame import Frame


class Params(BaseModel):
    """Base of every parameter model: unknown options are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@dataclass
class Context:
    """What a stage, source or sink learns about where it runs.

    Attributes:
        name: the stage/source/sink type name as written in YAML.
        pipeline: the pipeline's name.
        config_dir: directory of the YAML file (relative paths in options resolve against it).
        log: logger named ``streamcnn.<pipeline>.<name>``.
        fps: the source's frame rate in frames/s (sinks only; None when unknown).
    """

    name: str
    pipeline: str
    config_dir: Path = field(default_factory=Path.cwd)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("streamcnn"))
    fps: float | None = None

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

    def output_path(self, path: str) -> Path:
        """An output file path from YAML: ``{pipeline}`` replaced by the pipeline name, then
        `resolve`. Every file-writing sink uses this (and the duplicate-output check too)."""
        return self.resolve(path.replace("{pipeline}", self.pipeline))


class Stage:
    """A processing step. Subclasses set ``Params`` and implement ``process``.

    ``check`` runs at ``streamcnn validate`` time (no frames, e.g. check that a model file
    exists) and may raise ``ValueError`` with a user-facing message.
    """

    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params, ctx: Context) -> None:
        self.params = params
        self.ctx = ctx

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """Validate what can be checked without running (default: nothing)."""

    @classmethod
    def check_chain(cls, params: Params, ctx: Context, before: list[tuple[str, type[Stage], Params]]) -> None:
        """Validate this stage against the stages before it in the pipeline (``before``: their YAML
        names, classes and params, in order), e.g. that something upstream provides the landmarks
        this stage needs; raise ``ValueError`` with a user-facing message. Default: nothing."""

    def process(self, frame: Frame) -> Frame:
        """Transform one frame (may change ``image``, ``detections``, ``meta``) and return it."""
        raise NotImplementedError(f"{type(self).__name__}.process is not implemented")

    def close(self) -> None:
        """Release resources; called once when the pipeline stops."""


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
    """

    uri: str | int
    type: str | None = None
    policy: Literal["latest", "all"] | None = None
    queue_size: int = Field(8, ge=1)
    stall_timeout: float = Field(5.0, gt=0)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    reconnect: bool = True


class Source:
    """A frame producer. Subclasses set ``Params`` (a ``SourceParams``), ``live`` and implement
    ``claims``, ``open``, ``read`` and ``close``. The engine handles threading, live policy,
    stall detection and reconnection.
    """

    Params: ClassVar[type[SourceParams]] = SourceParams
    live: ClassVar[bool] = False  # live sources default to policy "latest" and are reconnected
    priority: ClassVar[int] = 0  # when several types claim a uri the highest wins (catch-alls: < 0)

    def __init__(self, params: SourceParams, ctx: Context) -> None:
        self.params = params
        self.ctx = ctx

    @classmethod
    def claims(cls, uri: str | int) -> bool:
        """True when this source type handles ``uri`` (used when ``type`` is not given)."""
        return False

    @classmethod
    def check(cls, params: SourceParams, ctx: Context) -> None:
        """Validate what can be checked without opening the stream (``streamcnn validate`` and
        ``run`` before starting), e.g. that a file exists; raise ``ValueError`` with a user-facing
        message. Default: nothing."""

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


class Sink:
    """A frame consumer (file writer, display, ...). ``close`` must flush everything written."""

    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params, ctx: Context) -> None:
        self.params = params
        self.ctx = ctx

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        """Validate what can be checked without running (default: nothing)."""

    def write(self, frame: Frame) -> None:
        """Consume one processed frame (called from the pipeline's thread, in frame order)."""
        raise NotImplementedError(f"{type(self).__name__}.write is not implemented")

    def close(self) -> None:
        """Flush and close; called exactly once, also on Ctrl-C/SIGTERM."""


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


__all__ = ["Context", "Field", "Params", "Sink", "Source", "SourceParams", "Stage", "to_bgr3"]
