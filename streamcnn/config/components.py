"""Resolving one source, stage or sink entry of a pipeline: type look-up, params, checks."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..api import Context
from ..errors import ConfigError, ConfigErrors, MissingAssetError, StreamcnnError
from ..pluginmanager import Plugins
from ..redact import redact
from ..registry import DownloadDeferred
from ..words import suggest
from ..yamlpos import Positions, format_path
from .messages import pydantic_to_config_errors, yaml_key, yaml_value
from .resolved import Component

_EXAMPLE = {"stage": "edges: {kernel: sobel}", "sink": "jsonl: {path: out/x.jsonl}"}


def _ctx(name: str, pname: str, config_dir: Path) -> Context:
    return Context(name, pname, config_dir, logging.getLogger(f"streamcnn.{pname}.{name}"))


def _unknown(kind: str, name: str, plugins: Plugins) -> str:
    installed = plugins.names(kind)
    msg = (f"unknown {kind} {name!r}{suggest(name, installed) or '.'} "
           f"Installed {kind}s: {', '.join(installed) or 'none'}")
    failed = plugins.failed()
    if failed:
        msg += ". Plugins that failed to load: " + "; ".join(f"{r.name} ({r.origin}): {r.reason}" for r in failed)
    return msg


def resolve_item(
    kind: str, pname: str, item: Any, path: tuple, positions: Positions, file: str,
    config_dir: Path, plugins: Plugins, check: bool,
) -> Component:
    line, col = positions.find(path)
    if item is None and kind == "sink":
        item = "null"  # YAML reads a bare `- null` as None: that is the null sink
    if isinstance(item, dict) and None in item and kind == "sink":
        item = {("null" if k is None else k): v for k, v in item.items()}  # `- null: {}` too
    if isinstance(item, str):
        name, options, opath = item, None, path
    elif isinstance(item, dict) and item:
        keys = list(item)
        name = keys[0]
        if len(keys) > 1:
            first = item[name]
            rest = ", ".join(yaml_key(k) for k in keys[1:])
            if first is None:
                raise ConfigError(
                    f"{kind} {name!r} got no options, and the keys that follow it ({rest}) look like its "
                    f"options: indent them under {name!r} (2 more spaces than {name!r})",
                    file, line, col, format_path(path + (name,)),
                )
            raise ConfigError(
                f"a {kind} entry must have exactly one key, the {kind} name; got {', '.join(map(yaml_key, keys))}. "
                f"Start each {kind} with '- '",
                file, line, col, format_path(path),
            )
        options, opath = item[name], path + (name,)
    else:
        raise ConfigError(
            f"expected a {kind} name or a mapping {{{kind}_name: {{options}}}}, got {yaml_value(item)}",
            file, line, col, format_path(path),
        )
    if not isinstance(name, str):
        raise ConfigError(f"expected a {kind} name (a string) as the key, got {yaml_key(name)}; write e.g. "
                          f"`- {_EXAMPLE[kind]}`", file, line, col, format_path(opath))
    entry = plugins.types[kind].get(name)
    if entry is None:
        raise ConfigError(_unknown(kind, str(name), plugins), file, line, col, format_path(opath))
    if options is None:
        options = {}
    if not isinstance(options, dict):
        oline, ocol = positions.get(opath + ("<value>",), (line, col))
        raise ConfigError(
            f"options of {kind} {name!r} must be a mapping (option: value), got {yaml_value(options)}",
            file, oline, ocol, format_path(opath),
        )
    cls = entry.cls
    what = f"{kind} {name!r}"
    try:
        params = cls.Params.model_validate(options)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_to_config_errors(exc, cls.Params, opath, positions, file, what)) from None
    ctx = _ctx(name, pname, config_dir)
    comp = Component(kind, name, cls, params, ctx, format_path(opath), line, col, file, entry.plugin.name)
    if check:
        try:
            _check(comp)
            if kind == "stage":
                _build_and_close(comp)
        except (ValueError, OSError, StreamcnnError) as exc:
            msg = exc.message if isinstance(exc, ConfigError) else str(exc)
            kind_ = MissingAssetError if isinstance(exc, FileNotFoundError) else ConfigError
            error = kind_(msg, file, line, col, format_path(opath))
            error.component = comp  # its options are valid: the loader still checks the chain after it
            raise error from None
    return comp


def _check(comp: Component) -> None:
    """``comp.cls.check``; a plugin bug in it (anything but the documented ValueError, OSError and
    StreamcnnError) becomes a ConfigError naming the plugin, component and exception."""
    try:
        comp.cls.check(comp.params, comp.ctx)
    except (ValueError, OSError, StreamcnnError):
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's own bug: reported by name and YAML line
        raise comp.start_failure(exc, "failed its check") from None


def _build_and_close(comp: Component) -> None:
    """Build a stage and close it at once: everything it checks at start-up (the model loads, its
    head shapes and names fit) is then reported at its YAML line. Sessions and other expensive
    pieces are cached process-wide, so the engine's own build later costs little. A plugin bug in
    its ``__init__`` or ``close`` is a ConfigError naming the plugin, the component and the exception."""
    try:
        stage = comp.cls(comp.params, comp.ctx)
    except DownloadDeferred:
        return  # `validate` never downloads: the model is fetched when the pipeline starts
    except (ValueError, OSError, StreamcnnError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise comp.start_failure(exc) from None
    try:
        stage.close()
    except Exception as exc:  # noqa: BLE001
        raise comp.start_failure(exc, "failed to close (after a successful start)") from None


def resolve_source(
    pname: str, source: Any, path: tuple, positions: Positions, file: str, config_dir: Path, plugins: Plugins,
    check: bool = False,
) -> Component:
    line, col = positions.get(path + ("<value>",), positions.find(path))
    options = {"uri": source} if isinstance(source, (str, int)) else dict(source)
    if "uri" not in options:
        close = difflib.get_close_matches("uri", [str(k) for k in options], n=1, cutoff=0.6)
        hint = f" (got {close[0]!r} — did you mean 'uri'?)" if close else ""
        raise ConfigError(
            "source mapping needs a 'uri' (file, folder, camera index, rtsp:// URL or 'pattern')" + hint,
            file, line, col, format_path(path),
        )
    uri = options["uri"]
    if not isinstance(uri, (str, int)) or isinstance(uri, bool) or (isinstance(uri, str) and not uri.strip()):
        ul, uc = positions.get(path + ("uri", "<value>"), (line, col))
        raise ConfigError(
            f"expected a uri (a file, folder, camera index, rtsp:// URL or 'pattern'), got {yaml_value(uri)}",
            file, ul, uc, format_path(path + ("uri",) if isinstance(source, dict) else path),
        )
    types = plugins.types["source"]
    type_name = options.get("type")
    if type_name is None:
        type_name = pick_source_type(options["uri"], {n: e.cls for n, e in types.items()}, config_dir)
        if type_name is None:
            raise ConfigError(
                f"no installed source type accepts {redact(yaml_value(options['uri']))}; installed source types: "
                f"{', '.join(sorted(types)) or 'none'}",
                file, line, col, format_path(path),
            )
    elif type_name not in types:
        tl, tc = positions.get(path + ("type", "<value>"), (line, col))
        raise ConfigError(_unknown("source", str(type_name), plugins), file, tl, tc, format_path(path + ("type",)))
    cls = types[type_name].cls
    options["type"] = type_name
    try:
        params = cls.Params.model_validate(options)
    except ValidationError as exc:
        raise ConfigErrors(
            pydantic_to_config_errors(exc, cls.Params, path, positions, file, f"source type {type_name!r}")
        ) from None
    ctx = _ctx("source", pname, config_dir)
    comp = Component("source", type_name, cls, params, ctx, format_path(path), line, col, file,
                     types[type_name].plugin.name)
    if check:
        try:
            _check(comp)
        except (ValueError, OSError, ConfigError) as exc:
            msg = exc.message if isinstance(exc, ConfigError) else str(exc)
            kind_ = MissingAssetError if isinstance(exc, FileNotFoundError) else ConfigError
            raise kind_(msg, file, line, col, format_path(path)) from None
    return comp


def pick_source_type(uri: str | int, types: dict[str, type], config_dir: Path | None = None) -> str | None:
    """The source type name for ``uri`` when YAML gives no ``type``, or None when no type claims it.

    Every registered class is asked ``claims(uri)``; among those that claim it the highest
    ``priority`` wins (built-ins: ``stream`` 40, ``webcam`` 30, ``pattern`` 20, ``images`` 10,
    third-party default 0, ``file`` −100 as the catch-all; ties go to the first registered). A
    relative path is also offered resolved against ``config_dir`` (so a folder next to the YAML
    file is recognised as ``images``). A class whose ``claims`` raises counts as not claiming.
    """
    probe: Any = uri
    if (config_dir is not None and isinstance(uri, str) and "://" not in uri
            and not uri.strip().isdigit() and not Path(uri).expanduser().is_absolute()):
        probe = str(Path(config_dir) / uri)
    claimants: list[tuple[int, int, str]] = []
    for order, (name, cls) in enumerate(types.items()):
        try:
            if cls.claims(probe) or (probe is not uri and cls.claims(uri)):
                claimants.append((int(getattr(cls, "priority", 0)), -order, name))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break type picking
            logging.getLogger("streamcnn.config").warning(
                "source type %r: claims() raised %s: %s", name, type(exc).__name__, redact(str(exc)))
    return max(claimants)[2] if claimants else None


__all__ = ["pick_source_type", "resolve_item", "resolve_source"]
