"""The YAML configuration: schema, validation and user-facing error messages.

Shape::

    plugins: [./my_plugins.py]           # optional extra plugin files or modules
    pipelines:
      NAME:
        source: URI | {uri: URI, policy: latest|all, stall_timeout: 5, ...}
        stages: [{STAGE: {OPTION: VALUE}}, ...]
        sinks:  [{SINK: {OPTION: VALUE}}, ...]
        on_error: skip | stop

Every error names file, line, column, key path and what was expected, and suggests the
closest valid name (difflib).
"""

from __future__ import annotations

import difflib
import logging
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .api import Context
from .errors import ConfigError, ConfigErrors, MissingAssetError, PluginError, StreamcnnError
from .models import DownloadDeferred
from .pluginmanager import PluginRef, Plugins, load_plugins
from .redact import redact
from .yamlpos import Positions, format_path, read_yaml_file


class PipelineSpec(BaseModel):
    """One entry of ``pipelines:`` before its components are resolved."""

    model_config = ConfigDict(extra="forbid")
    source: str | int | dict[str, Any]
    stages: list[Any] = Field(default_factory=list)
    sinks: list[Any] = Field(default_factory=list)
    on_error: Literal["skip", "stop"] = "skip"
    optional: bool = False  # when running all pipelines: skip it (one warning) if its models/media are missing


class FileSpec(BaseModel):
    """The whole file before resolution."""

    model_config = ConfigDict(extra="forbid")
    plugins: list[str] = Field(default_factory=list)
    pipelines: dict[str, PipelineSpec]


@dataclass
class Component:
    """A resolved stage, source or sink: its class, validated params and context."""

    kind: str
    type_name: str
    cls: type
    params: Any
    ctx: Context
    path: str
    line: int | None = None
    column: int | None = None
    instance: Any = None  # a stage already built by the checks (handed to the engine, see take())

    def take(self) -> Any:
        """The stage instance built while checking, once (then None), or None."""
        inst, self.instance = self.instance, None
        return inst


@dataclass
class PipelineConfig:
    name: str
    source: Component
    stages: list[Component]
    sinks: list[Component]
    on_error: str = "skip"
    optional: bool = False


@dataclass
class Config:
    """A validated configuration file.

    Attributes:
        file: the YAML path as given; ``config_dir`` its directory.
        pipelines: ``{name: PipelineConfig}`` in file order.
        plugins: the loaded plugins (entry points + YAML ``plugins:``).
    """

    file: str
    config_dir: Path
    pipelines: dict[str, PipelineConfig]
    plugins: Plugins
    positions: Positions = field(default_factory=Positions)
    skipped: dict[str, str] = field(default_factory=dict)  # optional pipelines left out, and why

    def close(self) -> None:
        """Close the stages built while checking that no engine took (``validate``)."""
        for p in self.pipelines.values():
            for comp in p.stages:
                inst = comp.take()
                if inst is not None:
                    inst.close()


# -- error helpers ---------------------------------------------------------------------------
def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """`` — did you mean 'x'?`` for the closest choice (case-insensitive), or an empty string."""
    options = [str(c) for c in choices]
    by_lower = {c.lower(): c for c in options}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" — did you mean {by_lower[close[0]]!r}?" if close else ""


def _unwrap(annotation: Any) -> tuple[list[Any], list[Any]]:
    """Flatten Optional/Union/Annotated into (types, constraint metadata)."""
    meta: list[Any] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        inner, m = _unwrap(base)
        return inner, m + list(extra)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        types: list[Any] = []
        for arg in typing.get_args(annotation):
            t, m = _unwrap(arg)
            types += t
            meta += m
        return types, meta
    return [annotation], meta


def _number_range(meta: list[Any]) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for m in meta:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '≥'} {lo}"
    if hi is not None:
        return f" {'<' if hi_open else '≤'} {hi}"
    return ""


def describe_expected(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """Plain-words description of what the field at ``loc`` accepts, e.g. 'a number in [0, 1]'."""
    if not loc or not isinstance(loc[0], str) or loc[0] not in model.model_fields:
        return None
    info = model.model_fields[loc[0]]
    types, meta = _unwrap(info.annotation)
    meta = meta + list(info.metadata)
    words = []
    for t in types:
        if t is type(None):
            continue
        if t is bool:
            words.append("true or false")
        elif t is int:
            words.append("an integer" + _number_range(meta))
        elif t is float:
            words.append("a number" + _number_range(meta))
        elif t is str:
            words.append("a string")
        elif typing.get_origin(t) is Literal:
            words.append("one of " + ", ".join(repr(a) for a in typing.get_args(t)))
        elif typing.get_origin(t) in (list, tuple) or t in (list, tuple):
            words.append("a list")
        elif typing.get_origin(t) is dict or t is dict:
            words.append("a mapping")
        elif isinstance(t, type) and issubclass(t, BaseModel):
            words.append("a mapping")
    if not words:
        return None
    # "a number in [0, 1]" instead of "an integer in [0, 1] or a number in [0, 1]"
    if any(w.startswith("a number") for w in words):
        words = [w for w in words if not w.startswith("an integer")]
    return " or ".join(dict.fromkeys(words))


def pydantic_to_config_errors(
    exc: ValidationError,
    model: type[BaseModel],
    base: tuple[Any, ...],
    positions: Positions,
    file: str,
    what: str,
) -> list[ConfigError]:
    """Translate a pydantic ``ValidationError`` into located, plain-words `ConfigError`s.

    Args:
        model: the model that was validated (for option names and constraints).
        base: key path of the validated mapping inside the YAML.
        what: how to name the owner in messages, e.g. ``stage 'edges'``.
    """
    out: list[ConfigError] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (
            "[" in p or p.startswith(("function-", "constrained-")) or p in _UNION_TAGS)))
        kind = err["type"]
        if loc in seen and kind not in ("extra_forbidden", "missing"):
            continue  # one message per location (unions produce several)
        seen.add(loc)
        path = base + loc
        owner, rest, owner_what = _model_at(model, loc, what)
        options = sorted(owner.model_fields)
        if kind == "extra_forbidden":
            name = loc[-1]
            msg = f"unknown option {name!r} for {owner_what}{suggest(name, options)} (options: {', '.join(options)})"
            line, col = positions.find(path)
        elif kind == "missing":
            msg = f"missing required option {loc[-1]!r} for {owner_what}"
            line, col = positions.find(base + loc[:-1])
        elif kind in ("value_error", "assertion_error"):
            # a plugin's own validator: its message already says what is wrong
            msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            line, col = positions.get(path + ("<value>",), positions.find(path)) if loc else positions.find(base)
        else:
            expected = describe_expected(owner, rest)
            given = err.get("input")
            if expected:
                msg = f"expected {expected}, got {given!r}"
                ann = owner.model_fields[rest[0]].annotation
                if typing.get_origin(ann) is Literal and isinstance(given, str):
                    msg += suggest(given, typing.get_args(ann))
                if kind not in _TYPE_KINDS and not err["msg"].startswith("Input should be"):
                    msg += f" ({err['msg']})"
            else:
                msg = f"{err['msg']} (got {given!r})"
            line, col = positions.get(path + ("<value>",), positions.find(path))
        out.append(ConfigError(msg, file, line, col, format_path(path)))
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...], what: str) -> tuple[type[BaseModel], tuple, str]:
    """The innermost model that owns ``loc[-1]``, the rest of ``loc`` relative to it, and its name."""
    i = 0
    while i < len(loc) - 1:
        info = model.model_fields.get(loc[i]) if isinstance(loc[i], str) else None
        if info is None:
            break
        ann = info.annotation
        if typing.get_origin(ann) is dict and len(typing.get_args(ann)) == 2:
            inner = typing.get_args(ann)[1]
            if isinstance(inner, type) and issubclass(inner, BaseModel) and i + 2 < len(loc):
                model, what, i = inner, f"{loc[i][:-1] if str(loc[i]).endswith('s') else loc[i]} {loc[i + 1]!r}", i + 2
                continue
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model, what, i = ann, f"{loc[i]!r}", i + 1
            continue
        break
    return model, loc[i:], what


_UNION_TAGS = {"int", "float", "str", "bool", "list", "dict", "tuple", "none", "bytes"}  # pydantic union branches

_TYPE_KINDS = {
    "float_parsing", "float_type", "int_parsing", "int_type", "int_from_float", "bool_parsing", "bool_type",
    "string_type", "literal_error", "greater_than", "greater_than_equal", "less_than", "less_than_equal",
    "list_type", "dict_type", "model_type", "finite_number", "union_tag_invalid",
}


# -- loading ---------------------------------------------------------------------------------
def load_config(
    file: str | Path, plugins: Plugins | None = None, check: bool = False, only: list[str] | None = None
) -> Config:
    """Read, validate and resolve a pipelines YAML file.

    Args:
        file: path of the YAML file.
        plugins: already-loaded plugins (default: load entry points + the file's ``plugins:``).
        check: also run each stage's/sink's ``check`` (model files exist, ...), as ``validate`` does.
        only: resolve and check just these pipelines (``run --pipeline``); the others are only
            schema-checked. Without it, an ``optional: true`` pipeline whose models or media are
            missing is left out (listed in ``Config.skipped``) instead of failing the file.

    Raises:
        ConfigError / ConfigErrors: every problem found, each with file, line, column and key path.
    """
    file = str(file)
    data, positions, _ = read_yaml_file(file)
    config_dir = Path(file).resolve().parent
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with a 'pipelines:' key at the top level", file, 1, 1)
    # top-level keys starting with "x-" are free (e.g. `x-defaults: &cam {...}` for YAML anchors)
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        spec = FileSpec.model_validate(data)
    except ValidationError as exc:
        errs = pydantic_to_config_errors(exc, FileSpec, (), positions, file, "the configuration file")
        for e in errs:  # nicer wording for the top-level and pipeline keys
            e.message = re.sub(r"\boption(s?)\b", r"key\1", e.message)
        raise ConfigErrors(sorted(errs, key=lambda e: (e.line or 0, e.column or 0))) from None

    if not spec.pipelines:
        raise ConfigError("'pipelines:' is empty: define at least one pipeline", file, *positions.find(("pipelines",)))

    if plugins is None:
        refs = [
            PluginRef(s, file, *positions.find(("plugins", i)), config_dir=config_dir)
            for i, s in enumerate(spec.plugins)
        ]
        plugins = load_plugins(refs)
    try:
        plugins.check_conflicts()
    except PluginError as exc:
        line, col = positions.find(("plugins",)) if spec.plugins else (None, None)
        raise PluginError(exc.message, file, line, col) from None

    for name in only or []:
        if name not in spec.pipelines:
            raise ConfigError(
                f"no pipeline named {name!r}{suggest(name, spec.pipelines) or '.'} "
                f"Pipelines in {file}: {', '.join(spec.pipelines)}", file,
            )
    errors: list[ConfigError] = []
    pipelines: dict[str, PipelineConfig] = {}
    skipped: dict[str, str] = {}
    for pname, pspec in spec.pipelines.items():
        if only is not None and pname not in only:
            continue
        base = ("pipelines", pname)
        try:
            pipelines[pname] = _resolve_pipeline(pname, pspec, base, positions, file, config_dir, plugins, check)
        except ConfigError as exc:
            found = exc.errors if isinstance(exc, ConfigErrors) else [exc]
            if pspec.optional and only is None and all(isinstance(e, MissingAssetError) for e in found):
                skipped[pname] = "; ".join(e.message for e in found)
                continue
            errors.extend(found)
    if errors:
        raise ConfigErrors(sorted(errors, key=lambda e: (e.line or 0, e.column or 0)))
    _check_outputs(pipelines, file)
    return Config(file, config_dir, pipelines, plugins, positions, skipped)


def _check_outputs(pipelines: dict[str, PipelineConfig], file: str) -> None:
    """Two sinks writing the same file would overwrite each other: a configuration error."""
    seen: dict[str, Component] = {}
    for p in pipelines.values():
        for comp in p.sinks:
            target = getattr(comp.params, "path", None)
            port = getattr(comp.params, "port", None)
            if isinstance(port, int) and port > 0 and not isinstance(target, str):
                host = getattr(comp.params, "host", "")
                first = seen.setdefault(f"port {port}", comp)
                if first is not comp:
                    raise ConfigError(
                        f"{comp.type_name} sink listens on port {port} ({host}), which the {first.type_name} sink of "
                        f"pipeline '{first.ctx.pipeline}' ({first.path}, line {first.line}) uses too; give each its "
                        "own port", file, comp.line, comp.column, comp.path,
                    )
                continue
            if not isinstance(target, str):
                continue
            key = str(comp.ctx.output_path(target).resolve())
            first = seen.setdefault(key, comp)
            if first is not comp:
                raise ConfigError(
                    f"{comp.type_name} sink writes {key}, which the {first.type_name} sink of pipeline "
                    f"'{first.ctx.pipeline}' ({first.path}, line {first.line}) writes too; give each sink its own path",
                    file, comp.line, comp.column, comp.path,
                )


def _resolve_pipeline(
    pname: str, pspec: PipelineSpec, base: tuple, positions: Positions, file: str,
    config_dir: Path, plugins: Plugins, check: bool,
) -> PipelineConfig:
    errors: list[ConfigError] = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
        return None

    source = attempt(_resolve_source, pname, pspec.source, base + ("source",), positions, file, config_dir, plugins,
                     check)
    stages = [
        attempt(_resolve_item, "stage", pname, item, base + ("stages", i), positions, file, config_dir, plugins, check)
        for i, item in enumerate(pspec.stages)
    ]
    sinks = [
        attempt(_resolve_item, "sink", pname, item, base + ("sinks", i), positions, file, config_dir, plugins, check)
        for i, item in enumerate(pspec.sinks)
    ]
    if not errors and check:
        for i, comp in enumerate(stages):
            before = [(c.type_name, c.cls, c.params) for c in stages[:i]]
            try:
                comp.cls.check_chain(comp.params, comp.ctx, before)
            except ValueError as exc:
                errors.append(ConfigError(str(exc), file, comp.line, comp.column, comp.path))
    if errors:
        raise ConfigErrors(errors)
    return PipelineConfig(pname, source, stages, sinks, pspec.on_error, pspec.optional)


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


def _resolve_item(
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
            rest = ", ".join(repr(k) for k in keys[1:])
            if first is None:
                raise ConfigError(
                    f"{kind} {name!r} got no options, and the keys that follow it ({rest}) look like its "
                    f"options: indent them under {name!r} (2 more spaces than {name!r})",
                    file, line, col, format_path(path + (name,)),
                )
            raise ConfigError(
                f"a {kind} entry must have exactly one key, the {kind} name; got {', '.join(map(repr, keys))}. "
                f"Start each {kind} with '- '",
                file, line, col, format_path(path),
            )
        options, opath = item[name], path + (name,)
    else:
        raise ConfigError(
            f"expected a {kind} name or a mapping {{{kind}_name: {{options}}}}, got {item!r}",
            file, line, col, format_path(path),
        )
    entry = plugins.types[kind].get(name)
    if entry is None:
        raise ConfigError(_unknown(kind, str(name), plugins), file, line, col, format_path(opath))
    if options is None:
        options = {}
    if not isinstance(options, dict):
        oline, ocol = positions.get(opath + ("<value>",), (line, col))
        raise ConfigError(
            f"options of {kind} {name!r} must be a mapping (option: value), got {options!r}",
            file, oline, ocol, format_path(opath),
        )
    cls = entry.cls
    what = f"{kind} {name!r}"
    try:
        params = cls.Params.model_validate(options)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_to_config_errors(exc, cls.Params, opath, positions, file, what)) from None
    ctx = _ctx(name, pname, config_dir)
    instance = None
    if check:
        try:
            cls.check(params, ctx)
            if kind == "stage":
                # everything a stage checks at start-up (model loads, head shapes, names...) is
                # checked now, at its YAML line; the engine then uses this instance
                try:
                    instance = cls(params, ctx)
                except DownloadDeferred:
                    instance = None  # `validate`: its model is fetched when the pipeline starts
        except (ValueError, OSError, StreamcnnError) as exc:
            msg = exc.message if isinstance(exc, ConfigError) else str(exc)
            kind_ = MissingAssetError if isinstance(exc, FileNotFoundError) else ConfigError
            raise kind_(msg, file, line, col, format_path(opath)) from None
    return Component(kind, name, cls, params, ctx, format_path(opath), line, col, instance)


def _resolve_source(
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
    types = plugins.types["source"]
    type_name = options.get("type")
    if type_name is None:
        type_name = pick_source_type(options["uri"], {n: e.cls for n, e in types.items()}, config_dir)
        if type_name is None:
            raise ConfigError(
                f"no installed source type accepts {options['uri']!r}; installed source types: "
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
    if check:
        try:
            cls.check(params, ctx)
        except (ValueError, FileNotFoundError, ConfigError) as exc:
            msg = exc.message if isinstance(exc, ConfigError) else str(exc)
            kind_ = MissingAssetError if isinstance(exc, FileNotFoundError) else ConfigError
            raise kind_(msg, file, line, col, format_path(path)) from None
    return Component("source", type_name, cls, params, ctx, format_path(path), line)


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


__all__ = ["Config", "Component", "PipelineConfig", "PluginError", "load_config", "pick_source_type", "suggest"]
