"""Signals while the ``streamcnn`` command starts (standard library only, so it can run first).

Until the engine runs (imports, reading and checking the YAML, loading models), Ctrl-C (SIGINT),
SIGTERM and SIGHUP end the process at once with one line on stderr, ``interrupted (SIGINT) while
starting: no pipeline ran, no file was written``, and exit code 128 + the signal's number: 130 for
Ctrl-C (what shells report for it), 143 for SIGTERM, 129 for SIGHUP. Never a traceback, never
click's ``Aborted!``. Once the pipelines run, ``streamcnn run`` replaces these handlers by its own
(sinks flushed and closed; see ``streamcnn.cli``).

Importing this module calls `install`, which acts only in the main thread of the ``streamcnn``
command itself (the console script or ``python -m streamcnn``), never in a program that merely
imports streamcnn. ``streamcnn.cli`` imports it first; the earlier ``streamcnn/__init__.py``
imports it, the sooner a signal is covered (``import streamcnn`` itself takes about 0.5 s).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

#: the signals handled while starting, by name (SIGHUP is missing on Windows)
SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

#: what the one-line message adds after ``interrupted (SIGINT)``; set by the command that runs
note = ""


def is_command() -> bool:
    """True when this process is the ``streamcnn`` command: ``python -m streamcnn`` or the console script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name == "streamcnn.__main__":
        return True
    # while `python -m streamcnn` imports the package, __main__ is not set up yet and argv[0] is "-m"
    args = list(getattr(sys, "orig_argv", []))
    if any(a == "-m" and b == "streamcnn" for a, b in zip(args, args[1:])) or "-mstreamcnn" in args:
        return True
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name in ("streamcnn", "streamcnn.exe", "streamcnn-script.py")


def install(force: bool = False) -> bool:
    """Handle `SIGNALS` by `on_signal` from now on; only in the main thread of the ``streamcnn``
    command (or anywhere in the main thread with ``force``). Returns whether it did."""
    if threading.current_thread() is not threading.main_thread() or not (force or is_command()):
        return False
    for sig in SIGNALS:
        signal.signal(sig, on_signal)
    return True


def on_signal(signum: int, _frame: object = None) -> None:
    """End the process now: one line on stderr, exit code 128 + ``signum``. Nothing has been
    written yet that needs closing; stdout is flushed first (what ``validate`` printed so far)."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - e.g. interrupted in the middle of a write to stdout
        pass
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    try:
        os.write(2, f"interrupted ({name}){note}\n".encode())
    except OSError:
        pass
    os._exit(128 + signum)


install()

__all__ = ["SIGNALS", "install", "is_command", "note", "on_signal"]
