"""Plugin discovery and the tables of stage, source and sink types (pluggy underneath).

Plugins come from the ``streamcnn`` entry-point group (installed packages, built-ins too) and
from the YAML ``plugins:`` list (``./file.py`` paths relative to the YAML file, or module
names). A plugin that fails to import is recorded with the reason; the others still load.

Hook calls: `call_hook` calls a lifecycle hook and reports an implementation that raises with the
name of its plugin (`hook_failure` builds that message); ``STREAMCNN_TRACE_PLUGINS=1`` logs every
hook call on ``streamcnn.plugins.trace`` (see `streamcnn.hookspecs`).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import inspect
import logging
import os
import reprlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, where
from .redact import redact

log = logging.getLogger("streamcnn.plugins")
trace_log = logging.getLogger("streamcnn.plugins.trace")

TRACE_ENV = "STREAMCNN_TRACE_PLUGINS"  # "1": log every hook call on trace_log (INFO)

KINDS = ("stage", "source", "sink")


@dataclass
class PluginRef:
    """A plugin named in YAML: the text as written and where it was written."""

    spec: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    config_dir: Path | None = None


@dataclass
class PluginRecord:
    """One plugin and what became of it.

    Attributes:
        name: entry-point name, file path or module name.
        origin: where it came from, e.g. ``streamcnn 0.1.0 (entry point edges = streamcnn_plugins.edges)``.
        status: ``loaded`` or ``failed``.
        reason: the failure, with the underlying exception (empty when loaded).
        provides: ``{"stage": [...], "source": [...], "sink": [...]}`` names it registered.
    """

    name: str
    origin: str
    status: str = "loaded"
    reason: str = ""
    provides: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})


@dataclass
class TypeEntry:
    name: str
    kind: str
    cls: type
    plugin: PluginRecord


class Plugins:
    """Loaded plugins and the stage/source/sink types they registered.

    Attributes:
        pm: the ``pluggy.PluginManager`` (project name ``streamcnn``).
        records: every plugin tried, loaded or failed, in load order.
        types: ``{"stage": {name: TypeEntry}, "source": {...}, "sink": {...}}``.
        conflicts: messages for names registered by more than one plugin.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("streamcnn")
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.types: dict[str, dict[str, TypeEntry]] = {k: {} for k in KINDS}
        self.conflicts: list[str] = []

    # -- loading -------------------------------------------------------------------------
    def load_entry_points(self, group: str = "streamcnn") -> None:
        """Load every installed plugin of the entry-point group; failures are recorded, not raised."""
        for ep in sorted(md.entry_points(group=group), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
            origin = f"{dist} (entry point {ep.name} = {ep.value})"
            rec = PluginRecord(ep.name, origin)
            try:
                obj = ep.load()
            except BaseException as exc:  # noqa: BLE001 - a broken plugin must not stop the others
                if isinstance(exc, KeyboardInterrupt):
                    raise
                rec.status, rec.reason = "failed", _describe(exc, f"importing {ep.value}")
                self.records.append(rec)
                log.warning("plugin %r from %s failed to load: %s", ep.name, origin, rec.reason)
                continue
            self._register(obj, rec)
            if rec.status == "failed":
                log.warning("plugin %r from %s failed to load: %s", ep.name, origin, rec.reason)

    def load_ref(self, ref: PluginRef) -> PluginRecord:
        """Load a plugin named in YAML (a ``.py`` file or a module name).

        Raises:
            PluginError: the file does not exist, or importing it raised (names file and YAML line).
        """
        spec = ref.spec
        looks_like_file = spec.endswith(".py") or "/" in spec or "\\" in spec
        if looks_like_file:
            path = Path(spec).expanduser()
            if not path.is_absolute():
                path = (ref.config_dir or Path.cwd()) / path
            path = path.resolve()
            rec = PluginRecord(str(path), f"file {path}")
            if not path.is_file():
                return self._fail_ref(rec, ref, f"plugin file {spec!r} not found (resolved to {path})")
            importer, what = (lambda: _import_file(path)), f"plugin file {path}"
        else:
            rec = PluginRecord(spec, f"module {spec}")
            importer, what = (lambda: importlib.import_module(spec)), f"plugin module {spec!r}"
        try:
            obj = importer()
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            target = str(path) if looks_like_file else spec
            reason = _describe(exc, f"importing {target}", path if looks_like_file else None)
            return self._fail_ref(rec, ref, f"{what} failed to import: {reason}")
        self._register(obj, rec)
        if rec.status == "failed":
            raise PluginError(f"plugin {spec!r}: {rec.reason}", ref.file, ref.line, ref.column)
        return rec

    def _fail_ref(self, rec: PluginRecord, ref: PluginRef, message: str) -> PluginRecord:
        rec.status, rec.reason = "failed", message
        self.records.append(rec)
        raise PluginError(message, ref.file, ref.line, ref.column)

    def _register(self, obj: Any, rec: PluginRecord) -> None:
        self.records.append(rec)
        if self.pm.is_registered(obj):
            rec.status, rec.reason = "failed", f"already loaded as {self.pm.get_name(obj)!r}"
            return
        try:
            self.pm.register(obj, name=rec.name)
        except ValueError as exc:  # name already registered (same entry-point name twice)
            rec.status, rec.reason = "failed", str(exc)
            return
        except pluggy.PluginValidationError as exc:
            rec.status, rec.reason = "failed", f"invalid hook implementation: {exc}"
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(obj)
            known = _spec_names()
            hooks = [n for n in dir(obj) if n.startswith("streamcnn_") and n not in known]
            rec.status = "failed"
            rec.reason = (
                f"unknown hook {', '.join(repr(h) for h in hooks) or str(exc)} in plugin {rec.name!r} "
                f"(known hooks: {', '.join(sorted(known))})"
            )
            return
        self._collect(obj, rec)

    def _collect(self, obj: Any, rec: PluginRecord) -> None:
        others = [p for p in self.pm.get_plugins() if p is not obj]
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"streamcnn_{kind}_types")
            if not any(impl.plugin is obj for impl in hook.get_hookimpls()):
                continue
            try:  # through pluggy (only this plugin's implementation), so hook tracing sees it
                tables = self.pm.subset_hook_caller(hook.name, others)()
            except Exception as exc:  # noqa: BLE001
                rec.status, rec.reason = "failed", _describe(exc, f"streamcnn_{kind}_types()")
                return
            for table in tables:
                base = _BASES[kind]()
                for name, cls in (table or {}).items():
                    if not (isinstance(cls, type) and issubclass(cls, base)):
                        rec.status = "failed"
                        rec.reason = (f"streamcnn_{kind}_types() registers {name!r} as {cls!r}, which is not a "
                                      f"subclass of streamcnn.{base.__name__}")
                        continue
                    prev = self.types[kind].get(name)
                    if prev is not None:
                        self.conflicts.append(
                            f"{kind} {name!r} is registered by two plugins: {prev.plugin.name!r} "
                            f"({prev.plugin.origin}) and {rec.name!r} ({rec.origin}); "
                            "uninstall or rename one of them"
                        )
                        continue
                    self.types[kind][name] = TypeEntry(name, kind, cls, rec)
                    rec.provides[kind].append(name)

    # -- lookup ----------------------------------------------------------------------------
    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "failed"]

    def check_conflicts(self) -> None:
        """Raises: PluginError listing every name registered twice."""
        if self.conflicts:
            raise PluginError("plugin conflict: " + "; ".join(self.conflicts))

    def names(self, kind: str) -> list[str]:
        return sorted(self.types[kind])

    def lifecycle_hooks(self) -> list[tuple[PluginRecord, list[str]]]:
        """Each registered plugin that implements lifecycle hooks, with those hook names (in the
        order of `hookspecs.LIFECYCLE_HOOKS`), in load order."""
        out: list[tuple[PluginRecord, list[str]]] = []
        seen: set[str] = set()
        for rec in self.records:
            if rec.name in seen or self.pm.get_plugin(rec.name) is None:
                continue  # not registered (failed), or a later record of the same name
            seen.add(rec.name)
            hooks = [h for h in hookspecs.LIFECYCLE_HOOKS
                     if any(i.plugin_name == rec.name for i in getattr(self.pm.hook, h).get_hookimpls())]
            if hooks:
                out.append((rec, hooks))
        return out

    def trace_calls(self) -> Callable[[], None]:
        """Log every hook call from now on at INFO on ``streamcnn.plugins.trace`` (what
        ``STREAMCNN_TRACE_PLUGINS=1`` turns on): one line per call with the hook, its arguments in
        short (a `Frame` as its index, an array as its shape), the thread and the plugins called, in
        call order. Returns the function that turns it off again."""
        return self.pm.add_hookcall_monitoring(_trace_before, _trace_after)


def _stage_base():
    from .api import Stage

    return Stage


def _source_base():
    from .api import Source

    return Source


def _sink_base():
    from .api import Sink

    return Sink


_BASES = {"stage": _stage_base, "source": _source_base, "sink": _sink_base}


def _spec_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("streamcnn_")]


def _describe(exc: BaseException, what: str, path: Path | None = None) -> str:
    """One line naming the exception and, for plugin code, the file and line it came from.

    A ``SyntaxError`` (also one in a module the plugin imports) is located by its own file, line and
    column: its traceback ends in the import machinery, not in the plugin. One without a file (Python
    raises "source code string cannot contain null bytes" that way, as a ValueError before 3.11.4) is
    located in ``path``, the plugin file being imported, at the line of its first NUL byte.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        col = f":{exc.offset}" if exc.offset else ""
        return f"{type(exc).__name__}: {exc.msg} at {exc.filename}:{exc.lineno}{col} (while {what})"
    nul = isinstance(exc, ValueError) and "null bytes" in str(exc)  # Python < 3.11.4 raises ValueError
    if (isinstance(exc, SyntaxError) or nul) and path is not None:
        msg = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
        return f"{type(exc).__name__}: {msg} at {path}{_nul_line(path)} (while {what})"
    return f"{type(exc).__name__}: {exc}{where(exc)} (while {what})"


def _nul_line(path: Path) -> str:
    """``:LINE:COLUMN`` of the first NUL byte in the file at ``path`` (1-based), or ``""``."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    at = data.find(b"\0")
    if at < 0:
        return ""
    start = data.rfind(b"\n", 0, at) + 1
    line = data.count(b"\n", 0, at) + 1
    return f":{line}:{at - start + 1}"


def _culprits(caller: Any, exc: BaseException) -> tuple[list[str], bool]:
    """The plugins whose implementation of ``caller``'s hook raised ``exc``, and whether that was
    found (from the traceback: the outermost frame running an implementation's code); when it was
    not (e.g. pluggy itself raised), every implementing plugin, in call order."""
    impls = caller.get_hookimpls()
    codes: dict[Any, list[str]] = {}
    for impl in impls:
        try:
            functions = {impl.function, inspect.unwrap(impl.function)}
        except ValueError:  # a __wrapped__ cycle
            functions = {impl.function}
        for fn in functions:
            code = getattr(fn, "__code__", None)
            if code is not None and impl.plugin_name not in codes.setdefault(code, []):
                codes[code].append(impl.plugin_name)
    tb = exc.__traceback__
    while tb is not None:
        names = codes.get(tb.tb_frame.f_code)
        if names:
            return names, True
        tb = tb.tb_next
    return [impl.plugin_name for impl in reversed(impls)], False


def hook_failure(caller: Any, exc: BaseException, when: str = "") -> str:
    """The message for a hook call that raised, naming the plugin whose implementation raised.

    Args:
        caller: the pluggy hook caller that was called, e.g. ``pm.hook.streamcnn_frame_done``.
        exc: what the call raised.
        when: inserted after ``raised``, e.g. ``" on frame 12"``.

    Returns:
        e.g. ``hook streamcnn_frame_done of plugin 'myplug' raised on frame 12: ValueError: bad at
        /path/myplug.py:7`` (credentials removed); when the implementation cannot be told from the
        traceback, ``of one of the plugins 'a', 'b'``.
    """
    names, found = _culprits(caller, exc)
    quoted = ", ".join(repr(n) for n in names)
    if found and len(names) == 1:
        who = f"of plugin {quoted}"
    elif names:
        who = f"of one of the plugins {quoted}"
    else:
        who = "(no plugin)"
    return redact(f"hook {caller.name} {who} raised{when}: {type(exc).__name__}: {exc}{where(exc)}")


def call_hook(caller: Any, logger: logging.Logger, context: str = "", /, **kwargs: Any) -> str | None:
    """Call a lifecycle hook; an implementation that raises is logged, never raised.

    The hook is called as usual (``caller(**kwargs)``, so hook tracing sees it). When an
    implementation raises an ``Exception``, the `hook_failure` message, prefixed by ``context``
    (e.g. ``"pipeline 'lobby'"``) and ``": "``, is logged at ERROR on ``logger`` (the traceback at
    DEBUG) and returned.

    Returns:
        None when the call returned, else the message logged.
    """
    try:
        caller(**kwargs)
    except Exception as exc:  # noqa: BLE001 - a plugin's lifecycle hook must not stop the caller
        msg = (f"{context}: " if context else "") + hook_failure(caller, exc)
        logger.error("%s", msg)
        logger.debug("traceback", exc_info=exc)
        return msg
    return None


class _TraceRepr(reprlib.Repr):
    """Short argument summaries for trace lines: no pixel arrays, a Frame as its index."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 160
        self.maxdict = self.maxlist = self.maxtuple = 12
        self.maxlevel = 3

    def repr_Frame(self, obj: Any, level: int) -> str:  # noqa: N802 - reprlib's naming scheme
        return f"Frame(index={obj.index})"

    def repr_ndarray(self, obj: Any, level: int) -> str:
        return f"array(shape={tuple(obj.shape)}, dtype={obj.dtype})"


_trace_repr = _TraceRepr()


def _trace_before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    args = ", ".join(f"{k}={_trace_repr.repr(v)}" for k, v in kwargs.items())
    plugins = ", ".join(repr(impl.plugin_name) for impl in reversed(hook_impls)) or "(no plugin implements it)"
    trace_log.info("%s", redact(f"{hook_name}({args}) on thread {threading.current_thread().name} -> {plugins}"))


def _trace_after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
    pass  # one line per call (in _trace_before, so a call that hangs is seen too)


def _trace_enabled() -> bool:
    return os.environ.get(TRACE_ENV, "").strip().lower() in ("1", "true", "yes")


def _import_file(path: Path) -> ModuleType:
    # like pytest's conftest.py: the plugin's folder is importable, so it can import its helpers
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"streamcnn_userplugin_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_plugins(refs: list[PluginRef] | tuple[()] = ()) -> Plugins:
    """Entry-point plugins plus the YAML-named ones.

    Raises:
        PluginError: a YAML-named plugin is missing or broken (entry-point failures are only recorded).
    """
    plugins = Plugins()
    if _trace_enabled():
        plugins.trace_calls()
    plugins.load_entry_points()
    for ref in refs:
        plugins.load_ref(ref)
    return plugins
