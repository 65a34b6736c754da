"""The ``streamcnn`` command: ``run``, ``validate``, ``plugins``.

Exit codes: 0 success, 2 configuration error (YAML, plugins, options), 1 runtime failure;
interrupted while starting (before any pipeline ran): 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
(`streamcnn._startup`). User mistakes are printed as one message per problem, without a traceback.
"""

from __future__ import annotations

import logging
import os

from . import _startup  # first: from here on a signal while starting is one line and exit 128 + signal

# OpenCV's and FFmpeg's own console lines ("[ WARN:0@0.1] global cap.cpp ...", "[tcp @ 0x...] Connection
# refused") repeat what streamcnn reports in its own words; keep them quiet unless asked (`-v` or the
# variables set by the user). Read by OpenCV when it is first imported / when a capture opens.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import signal
import sys
import threading
from pathlib import Path

import click
import yaml

from .config import load_config
from .engine import Engine
from .errors import StreamcnnError
from .pluginmanager import KINDS, PluginRef, load_plugins
from .redact import RedactingFormatter, redact
from .registry import downloads_deferred
from .yamlpos import read_yaml_file

log = logging.getLogger("streamcnn")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    if verbose:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "24"  # FFmpeg warnings, for debugging cameras
        _opencv_log_level(3)  # LOG_LEVEL_WARNING
        import av.logging  # network streams: PyAV's FFmpeg warnings, through the `libav` loggers

        av.logging.set_level(av.logging.WARNING)
    else:  # cv2 was imported (by streamcnn) before OPENCV_LOG_LEVEL above could apply: set it now
        _opencv_log_level(2)  # LOG_LEVEL_ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _opencv_log_level(level: int) -> None:
    """Set OpenCV's own log level (3 = ``LOG_LEVEL_WARNING`` for ``-v``, 2 = ``LOG_LEVEL_ERROR``
    otherwise): ``cv2.utils.logging.setLogLevel`` in OpenCV 5, ``cv2.setLogLevel`` in OpenCV 4."""
    import cv2

    logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
    set_level = getattr(logging_mod, "setLogLevel", None) or getattr(cv2, "setLogLevel", None)
    if set_level is not None:
        set_level(level)


def _fail(exc: StreamcnnError) -> None:
    click.echo(redact(str(exc)), err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamcnn")
@click.option("-v", "--verbose", count=True, help="More log output (debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """streamcnn: run YAML pipelines of CNN plugins over videos, cameras and RTSP streams."""
    _setup_logging(verbose, quiet)


def _log_options(fn):
    """``-v``/``-q`` after the command too (``streamcnn run x.yaml -v``), like before it."""

    def apply(ctx: click.Context, param: click.Parameter, value: object) -> object:
        if param.name == "verbose" and value:
            _setup_logging(int(value), False)
        elif param.name == "quiet" and value:
            _setup_logging(0, True)
        return value

    fn = click.option("-v", "--verbose", count=True, expose_value=False, callback=apply,
                      help="More log output (debug).")(fn)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=apply,
                        help="Only warnings and errors.")(fn)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_log_options
@click.option("-p", "--pipeline", "pipelines", multiple=True, metavar="NAME",
              help="Run only this pipeline (repeatable). Default: all pipelines in FILE.")
@click.option("-n", "--max-frames", type=click.IntRange(min=1), default=None,
              help="Stop each pipeline after N processed frames.")
@click.option("--serve", metavar="[HOST:]PORT", default=None,
              help="Serve the control plane (/metrics, /healthz, /readyz, /api/pipelines) on HOST:PORT "
                   "(127.0.0.1 unless given; another address needs STREAMCNN_TOKEN or --token-file). The run "
                   "then goes on until Ctrl-C/SIGTERM, also after its pipelines ended (more can be added).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the control plane's bearer token (instead of STREAMCNN_TOKEN).")
@click.option("--watch", is_flag=True, default=False,
              help="Apply edits of FILE while running: new pipelines start, removed ones stop, changed ones "
                   "restart, the others run on; an invalid edit is reported and ignored. Runs until Ctrl-C.")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run each pipeline (or group:) as a Ray actor on a cluster: auto (the cluster of this "
                   "machine), local (start Ray here), HOST:PORT or ray://HOST:PORT. Overrides cluster: in "
                   "FILE. Needs the ray extra: pip install -e '.[ray]'.")
def run(file: str, pipelines: tuple[str, ...], max_frames: int | None, serve: str | None = None,
        token_file: str | None = None, watch: bool = False, ray_address: str | None = None) -> None:
    """Run the pipelines in FILE until their sources end or Ctrl-C / SIGTERM.

    On Ctrl-C or SIGTERM the sources stop, queued frames are processed and every sink is
    flushed and closed (a second Ctrl-C skips the queued frames). SIGHUP (a closed terminal or ssh
    session) is handled like SIGTERM. A signal while starting, before any pipeline ran, ends the
    process at once (exit code 128 + the signal's number, 130 for Ctrl-C).
    """
    _startup.note = " while starting: no pipeline ran, no file was written"
    try:
        config = load_config(file, check=True, only=list(dict.fromkeys(pipelines)) or None)
    except StreamcnnError as exc:
        _fail(exc)
    for name, why in config.skipped.items():
        log.warning("optional pipeline '%s' left out: %s", name, redact(why))
    if not config.pipelines:
        click.echo("no pipeline to run: every pipeline in the file is optional and lacks its models or media",
                   err=True)
        _exit(1)
    cluster = getattr(config, "cluster", None)
    address = ray_address or (cluster.ray if cluster is not None else None)
    if address is not None:
        from .cluster.driver import ClusterEngine

        engine = ClusterEngine(config, address, max_frames, list(dict.fromkeys(pipelines)) or None,
                               cluster.max_restarts if cluster is not None else 3,
                               cluster.namespace if cluster is not None else "streamcnn")
        try:
            engine.connect()
        except StreamcnnError as exc:
            _fail(exc)
    else:
        engine = Engine(config, None, max_frames, insist=bool(pipelines))
    server = None
    if serve is not None:
        from .metrics import Metrics
        from .server import ControlServer, EngineControl, load_token, parse_address

        try:
            host, port = parse_address(serve)
            metrics = Metrics()
            metrics.attach(engine.runs)
            engine.metrics = metrics
            for r in engine.runs:
                r.metrics = metrics
            control = EngineControl(engine, config)
            server = ControlServer(control.runs, metrics, host, port, load_token(host, token_file), control).start()
        except StreamcnnError as exc:
            _fail(exc)

    def on_signal(signum: int, _frame: object) -> None:
        if engine.stopping:
            log.warning("%s received again: skipping queued frames, closing sinks", signal.Signals(signum).name)
        else:
            log.warning("%s received: stopping (flushing sinks; again to skip queued frames)",
                        signal.Signals(signum).name)
        engine.stop()  # a second call skips the queued frames

    if threading.current_thread() is threading.main_thread():
        for sig in _startup.SIGNALS:  # SIGINT, SIGTERM, SIGHUP
            signal.signal(sig, on_signal)
    engine.start()
    watcher = None
    if watch:
        from .watch import ConfigWatcher

        watcher = ConfigWatcher(file, engine, config).start()
    # serving or watching: until Ctrl-C/SIGTERM (pipelines may be added)
    engine.wait(forever=server is not None or watcher is not None)
    if watcher is not None:
        watcher.stop()
    if server is not None:
        server.stop()
    if address is not None:
        engine.shutdown()
    failed = engine.failed
    for r in failed:
        err = redact(r.stats.error or "")
        click.echo(err if err.startswith(f"pipeline '{r.name}'") else f"pipeline '{r.name}' failed: {err}", err=True)
    for r in engine.runs:
        s = r.stats
        if s.left_out:
            click.echo(f"{r.name}: left out (optional; its model or media could not be had)", err=True)
            continue
        click.echo(
            f"{r.name}: {s.frames} frames in {s.seconds:.1f} s ({s.fps:.1f} frames/s), "
            f"{s.skipped} skipped, {s.dropped} dropped, {s.reconnects} reconnects"
            + (f", {s.pts_discontinuities} pts discontinuities" if s.pts_discontinuities else ""), err=True,
        )
    _exit(_exit_code(failed))


def _exit_code(failed: list) -> int:
    """0 when no pipeline failed; 2 when one failed because a plugin's component could not be built
    (a configuration problem, as ``validate`` reports it); else 1."""
    if not failed:
        return 0
    built = [c for r in failed for c in (r.cfg.source, *r.cfg.stages, *r.cfg.sinks)]
    return 2 if any(getattr(c, "failure", None) is not None for c in built) else 1


def _exit(code: int) -> None:
    """Leave without running interpreter finalisation.

    Every sink is closed and flushed by now. A camera thread may still sit inside FFmpeg's
    ``read()`` (it returns only after its read timeout); finalising the interpreter under it can
    abort the process (SIGABRT, "FATAL: exception not rethrown"), so end the process directly.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_log_options
def validate(file: str) -> None:
    """Check FILE without running it: YAML, plugins, stage/source/sink options, model files."""
    try:
        with downloads_deferred():  # validate never downloads; what is downloadable is fine
            config = load_config(file, check=True)
    except StreamcnnError as exc:
        _fail(exc)
    for name, why in config.skipped.items():
        click.echo(f"{name}: left out (optional; {redact(why)})")
    for name, p in config.pipelines.items():
        stages = " → ".join(c.type_name for c in p.stages) or "(no stages)"
        sinks = ", ".join(c.type_name for c in p.sinks) or "(no sinks)"
        uri = redact(str(p.source.params.uri))
        src = uri if uri == p.source.type_name else f"{p.source.type_name} {uri}"
        click.echo(f"{name}: {src} → {stages} → {sinks}")
    click.echo(f"{file}: OK ({len(config.pipelines)} pipeline(s) ready"
               + (f", {len(config.skipped)} optional one(s) left out)" if config.skipped else ")"))


@main.command("plugins")
@click.option("-c", "--config", "file", type=click.Path(dir_okay=False), default=None,
              help="Also load the plugins listed in this YAML file.")
@click.option("-o", "--options", "show", metavar="NAME", default=None,
              help="Show the YAML options of one stage, source or sink type (with defaults), or 'all'.")
def plugins_cmd(file: str | None, show: str | None) -> None:
    """List every stage, source and sink type and every lifecycle hook implementation (kind
    ``hook``: which plugin implements e.g. ``streamcnn_frame_done``), where it came from and its
    status; plugins that failed to load are listed with the reason."""
    plugins = load_plugins()
    errors: list[str] = []
    if file:
        try:
            data, positions, _ = read_yaml_file(file)
        except StreamcnnError as exc:
            _fail(exc)
        names = data.get("plugins") if isinstance(data, dict) else None
        config_dir = Path(file).resolve().parent
        for i, spec in enumerate(names if isinstance(names, list) else []):
            try:
                plugins.load_ref(PluginRef(str(spec), file, *positions.find(("plugins", i)), config_dir=config_dir))
            except StreamcnnError as exc:
                errors.append(str(exc))
    if show is not None:
        _show_options(plugins, show, file)
        return
    rows = []
    for kind in KINDS:
        for name, entry in sorted(plugins.types[kind].items()):
            rows.append((kind, name, entry.plugin.origin, "loaded"))
    for rec, hooks in plugins.lifecycle_hooks():
        # a plugin whose type hook failed stays registered: its lifecycle hooks are still called
        status = "loaded" if rec.status == "loaded" else "called, but the plugin failed (see below)"
        rows += [("hook", hook, rec.origin, status) for hook in hooks]
    for rec in plugins.failed():
        rows.append(("plugin", rec.name, rec.origin, f"failed: {rec.reason}"))
    widths = [max(len(r[i]) for r in rows + [("KIND", "NAME", "FROM", "STATUS")]) for i in range(3)]
    click.echo(f"{'KIND':<{widths[0]}}  {'NAME':<{widths[1]}}  {'FROM':<{widths[2]}}  STATUS")
    for kind, name, origin, status in rows:
        click.echo(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {origin:<{widths[2]}}  {status}")
    for msg in plugins.conflicts:
        click.echo(f"conflict: {msg}")
    for msg in errors:
        click.echo(msg, err=True)
    if plugins.conflicts or errors:
        sys.exit(2)


def _show_options(plugins, show: str, file: str | None = None) -> None:
    from .words import suggest

    entries = [e for kind in KINDS for e in plugins.types[kind].values() if show in ("all", e.name)]
    if not entries:
        names = sorted({n for kind in KINDS for n in plugins.types[kind]})
        hint = "" if file else (f". A type from a plugin file is known only with the YAML file that lists it in "
                                f"plugins: `streamcnn plugins -c FILE -o {show}`")
        click.echo(f"no stage, source or sink named {show!r}{suggest(show, names) or '.'} "
                   f"Known: {', '.join(names)}{hint}", err=True)
        sys.exit(2)
    for e in sorted(entries, key=lambda e: (KINDS.index(e.kind), e.name)):
        model = e.cls.Params
        doc = (e.cls.__doc__ or "").strip().splitlines()
        click.echo(f"{e.kind} {e.name}" + (f" — {doc[0]}" if doc else ""))
        _echo_options(model, "    ")
        click.echo("")


def _echo_options(model: type, indent: str) -> None:
    """One line per option of ``model``; the options of an item of a list of mappings (``zones:``)
    indented under it."""
    import typing

    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    from .config.messages import describe_expected

    for fname, info in model.model_fields.items():
        if info.default is PydanticUndefined and info.default_factory is None:
            default = "required"
        elif info.default_factory is not None or info.default is None:
            default = "optional"
        else:
            default = f"default {yaml.safe_dump(info.default, default_flow_style=True).splitlines()[0]}"
        expected = describe_expected(model, (fname,)) or "any value"  # never a Python type name
        args = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is list else ()
        item = args[0] if args and isinstance(args[0], type) and issubclass(args[0], BaseModel) else None
        if item is not None:
            expected = "a list of mappings, each with the options below"
        desc = f" — {info.description}" if info.description else ""
        click.echo(f"{indent}{fname}: {expected}; {default}{desc}")
        if item is not None:
            _echo_options(item, indent + "    ")


@main.command("models")
def models_cmd() -> None:
    """List the model and sample-media registry: licence and whether each file is available locally."""
    from .registry import cache_dir, entries_with_status

    statuses = entries_with_status()
    rows = [(st.entry.name, st.entry.kind, st.entry.family,
             " ".join(filter(None, [str(st.path) if st.path else ("" if st.refused else "not downloaded"),
                                    f"({st.refused}: see below)" if st.refused else ""])), st.entry.licence)
            for st in statuses]
    heads = ("NAME", "KIND", "FAMILY", "LOCAL FILE", "LICENCE")
    widths = [max(len(r[i]) for r in rows + [heads]) for i in range(4)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(heads, widths + [0])).rstrip())
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths + [0])).rstrip())
    assets = os.environ.get("STREAMCNN_ASSETS") or "not set"
    click.echo(f"\nsearched: STREAMCNN_ASSETS folders (flat, models/, media/; now: {assets}), then the cache "
               f"{cache_dir()} (STREAMCNN_CACHE); missing files are downloaded on first use (sha256-checked) "
               "unless STREAMCNN_OFFLINE=1")
    problems = [st for st in statuses if st.problem]
    if problems:
        click.echo("\nrefused local files:")
        for st in problems:
            click.echo(f"  {st.entry.name}: {st.problem}")


from .cli_faces import faces  # noqa: E402  (sub-command group, issue 4)

main.add_command(faces)

if __name__ == "__main__":
    main()
