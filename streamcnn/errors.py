"""Exceptions with messages meant for users (the CLI prints them without a traceback)."""

from __future__ import annotations

import traceback


def where(exc: BaseException, skip: str = "") -> str:
    """`` at FILE:LINE`` of the innermost traceback frame that is real code (not ``<frozen ...>``
    import machinery, and not a file containing ``skip``), or an empty string."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith("<") or (skip and skip in frame.filename):
            continue
        return f" at {frame.filename}:{frame.lineno}"
    return ""


class StreamcnnError(Exception):
    """Base class; ``str(err)`` is a complete, user-facing message."""

    exit_code = 1


class ConfigError(StreamcnnError):
    """A mistake in the YAML or the plugins it names (CLI exit code 2).

    Args:
        message: what is wrong and what was expected.
        file: the YAML file, when known.
        line, column: 1-based position in ``file``, when known.
        path: dotted key path, e.g. ``pipelines.lobby.stages[0].edges.kernel``.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: str | None = None,
    ) -> None:
        self.message, self.file, self.line, self.column, self.path = message, file, line, column, path
        super().__init__(self.format())

    def format(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        head = f"{where}: " + (f"{self.path}: " if self.path else "")
        return head + self.message


class ConfigErrors(ConfigError):
    """Several configuration errors found in one pass (all are reported)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, first.file, first.line, first.column, first.path)

    def format(self) -> str:
        return "\n".join(e.format() for e in self.errors)


class MissingAssetError(ConfigError):
    """A model or media file a pipeline needs is not available here (nor downloadable)."""


class PluginError(ConfigError):
    """A plugin could not be loaded or conflicts with another one (exit code 2)."""


class SourceError(StreamcnnError):
    """A source could not be opened or read (credentials are already removed from the message)."""


class MediaNotFoundError(SourceError, FileNotFoundError):
    """A source's file (e.g. a registry sample video) is neither here nor downloadable."""


class StageError(StreamcnnError):
    """A stage (or, with ``kind="sink"``, a sink) raised on a frame; names the pipeline, the
    component's YAML name and the frame index (``note`` is appended, e.g. the file a sink writes)."""

    def __init__(
        self, pipeline: str, stage: str, index: int, cause: BaseException, kind: str = "stage", note: str = ""
    ) -> None:
        self.pipeline, self.stage, self.index, self.cause, self.kind = pipeline, stage, index, cause, kind
        super().__init__(
            f"pipeline '{pipeline}': {kind} '{stage}' failed on frame {index}: "
            f"{type(cause).__name__}: {cause}"
            # a plugin bug gets its location; a StreamcnnError message is already written for users
            + ("" if isinstance(cause, StreamcnnError) else where(cause, skip="streamcnn/engine/"))
            + note
        )


class SinkWriteError(StreamcnnError):
    """A sink could not write its output (disk full, file too large, device error, file in use by
    another process ...). Unlike other sink errors it is not a per-frame glitch: it stops the
    pipeline whatever ``on_error`` says (exit code 1), and the message names the file.

    Args:
        sink: the sink type name (``video``), for the message.
        path: the file that could not be written.
        reason: what went wrong, e.g. ``[Errno 28] No space left on device``.

    Attributes:
        errno: the OS error number when one is known (e.g. ``errno.ENOSPC``), else None.
    """

    def __init__(self, sink: str, path: object, reason: str, errno: int | None = None) -> None:
        self.sink, self.path, self.reason, self.errno = sink, str(path), reason, errno
        super().__init__(f"{sink} sink: cannot write {path}: {reason}")

    @classmethod
    def from_os_error(cls, sink: str, path: object, exc: OSError) -> SinkWriteError:
        """The error for an ``OSError`` raised while writing ``path`` (``[Errno 28] No space left on device``)."""
        reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None and exc.strerror else str(exc)
        return cls(sink, path, reason, exc.errno)


class ModelInputError(StreamcnnError):
    """An input's shape does not fit the model; names the model, input, expected and given shape."""


class ModelNotFoundError(StreamcnnError, FileNotFoundError):
    """No file for a model name or path; the message names every place looked at and how to get it."""
