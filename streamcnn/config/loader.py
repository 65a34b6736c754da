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

import re
from pathlib import Path

from pydantic import ValidationError

from ..api import Output
from ..errors import ConfigError, ConfigErrors, MissingAssetError, PluginError
from ..pluginmanager import PluginRef, Plugins, load_plugins
from ..words import suggest
from ..yamlpos import Positions, read_yaml_file
from .components import resolve_item, resolve_source
from .messages import pydantic_to_config_errors
from .resolved import Component, Config, PipelineConfig
from .schema import FileSpec, PipelineSpec


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
    """Two components writing the same file (or binding the same port) would clash: a configuration
    error naming both. Each component declares its outputs (``outputs`` classmethod)."""
    seen: dict[Output, Component] = {}
    for p in pipelines.values():
        for comp in [*p.stages, *p.sinks]:
            for out in comp.cls.outputs(comp.params, comp.ctx):
                first = seen.setdefault(out, comp)
                if first is comp:
                    continue
                if out.kind == "port":
                    host, _, port = out.target.rpartition(":")
                    what = f"listens on port {port} ({host}), which the {first.type_name} {first.kind} of"
                    fix = "give each its own port"
                else:
                    what = f"writes {out.target}, which the {first.type_name} {first.kind} of"
                    fix = f"give each {comp.kind} its own path"
                raise ConfigError(
                    f"{comp.type_name} {comp.kind} {what} pipeline '{first.ctx.pipeline}' ({first.path}, line "
                    f"{first.line}) {'uses' if out.kind == 'port' else 'writes'} too; {fix}",
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

    source = attempt(resolve_source, pname, pspec.source, base + ("source",), positions, file, config_dir, plugins,
                     check)
    stages = [
        attempt(resolve_item, "stage", pname, item, base + ("stages", i), positions, file, config_dir, plugins, check)
        for i, item in enumerate(pspec.stages)
    ]
    sinks = [
        attempt(resolve_item, "sink", pname, item, base + ("sinks", i), positions, file, config_dir, plugins, check)
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


__all__ = ["load_config"]
