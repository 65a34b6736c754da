"""What every file-writing sink shares: the output folder checked at validate time, the file locked
for this process, whole writes, and the reason a write failed (a full disk ...)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from streamcnn import Context, Output, Params, Sink, SinkWriteError


class FileSink(Sink):
    """A sink writing one file given by the ``path`` option: checked at validate time (the folder
    can be written), ``{pipeline}`` filled in, folders created, and the file locked for this process
    (`Context.lock_output`: a second process writing the same file refuses to start, naming this one's
    pid). Subclasses call ``super().close()`` last, which releases the lock."""

    @classmethod
    def check(cls, params: Params, ctx: Context) -> None:
        super().check(params, ctx)
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


class LineFile:
    """An output file of whole lines (JSON Lines) for one sink: each line handed to the OS at once
    (``os.write``, short writes continued), a line the OS refuses cut off again (so the file stays
    valid line by line) and reported as `SinkWriteError` naming the file, fsync at close.

    Args:
        sink: the sink's type name, for messages.
        path: the file; truncated unless ``append``.
    """

    def __init__(self, sink: str, path: Path, append: bool = False) -> None:
        self.sink, self.path = sink, path
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o666)
        self.good = os.lseek(self.fd, 0, os.SEEK_END)  # bytes of complete lines in the file
        self.failed = False

    def write_line(self, data: bytes) -> None:
        """Append one line (``data`` ends with a newline). Raises `SinkWriteError`."""
        if self.fd is None:
            return
        try:
            write_all(self.fd, data)
        except OSError as exc:
            self.failed = True
            try:
                os.ftruncate(self.fd, self.good)  # no half line at the end
            except OSError:
                pass
            raise SinkWriteError.from_os_error(self.sink, self.path, exc) from None
        self.good += len(data)

    def close(self) -> None:
        """Sync the file to disk and close it (idempotent); `SinkWriteError` when the OS reports a
        lost write (not again after a failed write, which was reported already)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self.failed:
                raise SinkWriteError.from_os_error(self.sink, self.path, exc) from None


def cut_partial_line(path: Path) -> None:
    """Cut off the end of ``path`` after its last newline (a line a killed writer left unfinished);
    nothing when the file is absent or ends with a newline."""
    try:
        with open(path, "r+b") as fh:
            size = pos = fh.seek(0, os.SEEK_END)
            keep = 0
            while pos > 0:  # backwards, 64 KiB at a time, to the last newline
                start = max(0, pos - 65536)
                fh.seek(start)
                nl = fh.read(pos - start).rfind(b"\n")
                if nl >= 0:
                    keep = start + nl + 1
                    break
                pos = start
            if keep != size:
                fh.truncate(keep)
    except FileNotFoundError:
        pass


class LinesSink(FileSink):
    """A `FileSink` writing whole lines (`LineFile` ``self.out``) to ``path``, truncated unless the
    ``append`` option is true or the run goes on from one whose process died (`Context.resumed`:
    appended, after cutting off a last line that process left half-written); ``close`` syncs and
    closes it, then releases the lock."""

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        try:  # after the lock: a second writer must not truncate the first one's file
            if ctx.resumed:
                cut_partial_line(self.path)
            self.out = LineFile(ctx.name, self.path, bool(getattr(params, "append", False)) or ctx.resumed)
        except OSError:
            self.lock.release()
            raise

    def close(self) -> None:
        """Sync the file to disk and close it (`SinkWriteError` when the OS reports a lost write);
        then release the file's lock."""
        try:
            self.out.close()
        finally:
            super().close()
