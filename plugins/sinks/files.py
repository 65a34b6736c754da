"""What every file-writing sink shares: the output folder checked at validate time, the file locked
for this process, whole writes, and the reason a write failed (a full disk ...)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from streamcnn import Context, Output, Params, Sink


class FileSink(Sink):
    """A sink writing one file given by the ``path`` option: checked at validate time (the folder
    can be written), ``{pipeline}`` filled in, folders created, and the file locked for this process
    (`Context.lock_output`: a second process writing the same file refuses to start, naming this one's
    pid). Subclasses call ``super().close()`` last, which releases the lock."""

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        ctx.check_writable(params.path)

    @classmethod
    def outputs(cls, params: Params, ctx: Context) -> list[Output]:
        return [Output.file(ctx.output_path(params.path))]

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.path = self.lock_target(params, ctx)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = ctx.lock_output(self.path)

    @classmethod
    def lock_target(cls, params: Params, ctx: Context) -> Path:
        """The file whose lock guards this sink's output (default: ``path``)."""
        return ctx.output_path(params.path)

    def close(self) -> None:
        """Release the output file's lock."""
        self.lock.release()


def os_reason(exc: OSError) -> str:
    """``[Errno 28] No space left on device`` for an OSError (its text when it has no errno)."""
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None and exc.strerror else str(exc)


def write_problem(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` just now (``[Errno 28] No space left on device``),
    found by writing 64 KiB to a temporary file there, or None when that works."""
    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return os_reason(exc)
    return None


def probe_file(path: Path) -> str | None:
    """Why ``path`` cannot be written (a full disk, a read-only file ...), found by writing 64 KiB
    to it (then emptied again), or None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_all(fd, b"\0" * 65536)
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fsync(fd)
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)
    except OSError as exc:
        return os_reason(exc)
    return None


def sync_file(path: Path) -> None:
    """fsync ``path`` (a write-back error such as a full disk shows here). Raises OSError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (short writes continued); OSError when the OS refuses."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - a regular file makes progress or raises
            raise OSError(f"write returned {n}")
        view = view[n:]
