"""The YAML configuration: schema, validation and user-facing error messages.

Shape::

    plugins: [./my_plugins.py]           # optional extra plugin files or modules
    pipelines:
      NAME:
        source: URI | {uri: URI, policy: latest|all, stall_timeout: 5, ...}
        stages: [{STAGE: {OPTION: VALUE}}, ...]
        sinks:  [{SINK: {OPTION: VALUE}}, ...]
        on_error: skip | stop
        in_flight: auto | N              # frames in its stateless stages at once
        batch: 1                         # frames per process_batch call of its stateless stages
    runtime:                             # optional: threads, batching, GPU (see RuntimeSpec)
      intra_op_threads: auto | N

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
from ..yamlpos import Positions, load_yaml, read_yaml_file
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
        ConfigError / ConfigErrors: every problem found in one pass, in file order, each with file,
            line, column and key path: a wrong top-level or pipeline key does not hide the errors of
            the components, and the chain and output-clash checks run for every stage and sink
            whose options are valid, also in pipelines with other errors.
    """
    file = str(file)
    data, positions, text = read_yaml_file(file)
    return _with_text(_load(data, positions, file, Path(file).resolve().parent, plugins, check, only), text, file)


def load_config_text(text: str, label: str, config_dir: Path, plugins: Plugins | None = None,
                     check: bool = True, only: list[str] | None = None) -> Config:
    """Validate and resolve a configuration given as YAML (or JSON) text, e.g. a pipeline posted to
    the control server, exactly like a file: the same messages, key paths, and lines and columns
    within ``text``; ``label`` stands for the file name in them.

    Args:
        config_dir: the folder relative paths in it are resolved against (the running file's).
        plugins: the plugins already loaded (default: load them, and ``text``'s ``plugins:``).
        only: resolve just these pipelines (as `load_config`), e.g. a cluster actor's group.

    Raises:
        ConfigError / ConfigErrors: as `load_config`.
    """
    data, positions = load_yaml(text, label)
    return _with_text(_load(data, positions, label, Path(config_dir), plugins, check, only), text, label)


def _with_text(config: Config, text: str, file: str) -> Config:
    for pipeline in config.pipelines.values():
        pipeline.text, pipeline.file = text, file
    return config


def _load(data, positions: Positions, file: str, config_dir: Path, plugins: Plugins | None, check: bool,
          only: list[str] | None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with a 'pipelines:' key at the top level", file, 1, 1)
    # top-level keys starting with "x-" are free (e.g. `x-defaults: &cam {...}` for YAML anchors)
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    spec, errors = _validate_file(data, positions, file)
    if spec is None:
        raise ConfigErrors(_sorted(errors))
    if not spec.pipelines and not errors:
        raise ConfigError("'pipelines:' is empty: define at least one pipeline", file, *positions.find(("pipelines",)))

    if check:  # models are loaded by the checks: with the run's thread budget, so the run reuses them
        from ..budget import apply, plan

        chosen = [n for n in (only or spec.pipelines) if n in spec.pipelines]
        apply(plan(spec.runtime, {n: (spec.pipelines[n].in_flight, True) for n in chosen}), spec.runtime, quiet=True)

    if plugins is None:
        plugins = load_plugins()
        for i, s in enumerate(spec.plugins):
            try:
                plugins.load_ref(PluginRef(s, file, *positions.find(("plugins", i)), config_dir=config_dir))
            except PluginError as exc:  # reported with the rest; its stages are then unknown types
                errors.append(exc)
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
    for pname in spec.pipelines:
        if "/" in pname or not pname.strip() or any(ord(c) < 32 for c in pname):
            errors.append(ConfigError(
                f"pipeline name {pname!r}: a name cannot be empty nor hold '/' or control characters (it names "
                "output paths, metrics and the API's /api/pipelines/NAME)", file, *positions.find(("pipelines", pname)),
                f"pipelines.{pname}"))
    pipelines: dict[str, PipelineConfig] = {}
    skipped: dict[str, str] = {}
    resolved: list[Component] = []  # every stage and sink that resolved, also in failed pipelines
    for pname, pspec in spec.pipelines.items():
        if only is not None and pname not in only:
            continue
        base = ("pipelines", pname)
        pipeline, parts, found = _resolve_pipeline(pname, pspec, base, positions, file, config_dir, plugins, check)
        if not found:
            pipelines[pname] = pipeline
        elif pspec.optional and only is None and all(isinstance(e, MissingAssetError) for e in found):
            skipped[pname] = "; ".join(e.message for e in found)
            continue
        errors.extend(found)
        resolved.extend(parts)
    errors.extend(_check_outputs(resolved, file))
    if errors:
        raise ConfigErrors(_sorted(errors))
    return Config(file, config_dir, pipelines, plugins, positions, skipped, spec.runtime,
                  getattr(spec, "cluster", None))


def _sorted(errors: list[ConfigError]) -> list[ConfigError]:
    """In file order (errors without a line first), each message once."""
    unique = {e.format(): e for e in errors}
    return sorted(unique.values(), key=lambda e: (e.line or 0, e.column or 0))


def _validate_file(data: dict, positions: Positions, file: str) -> tuple[FileSpec | None, list[ConfigError]]:
    """The file's shape: its spec and no errors; or, when some keys are wrong, their errors and a
    spec of what can still be resolved (every pipeline with its valid keys; a wrong key gets its
    default, a wrong ``source`` is left out), so that all the file's errors are found in one run.
    None when not even the pipelines can be told apart."""
    try:
        return FileSpec.model_validate(data), []
    except ValidationError as exc:
        errors = pydantic_to_config_errors(exc, FileSpec, (), positions, file, "the configuration file")
        locs = [tuple(err["loc"]) for err in exc.errors()]
    for e in errors:  # nicer wording for the top-level and pipeline keys
        e.message = re.sub(r"\boption(s?)\b", r"key\1", e.message)
    raw = data.get("pipelines")
    if not isinstance(raw, dict) or ("pipelines",) in locs:
        return None, errors  # `pipelines:` missing or not a mapping
    plugins = data.get("plugins")
    refs = [s for s in plugins if isinstance(s, str)] if isinstance(plugins, list) else []
    specs: dict[str, PipelineSpec] = {}
    for name, pipeline in raw.items():
        if not isinstance(pipeline, dict):
            continue  # reported: a pipeline must be a mapping
        bad = {loc[2] for loc in locs if loc[:2] == ("pipelines", name)}
        kept = {k: v for k, v in pipeline.items() if k not in bad}
        source = kept.pop("source", None)
        spec = PipelineSpec.model_validate({**kept, "source": "pattern"})
        specs[str(name)] = spec.model_copy(update={"source": source})  # None: not resolved
    return FileSpec.model_construct(plugins=refs, pipelines=specs), errors


def _check_outputs(components: list[Component], file: str) -> list[ConfigError]:
    """Two components writing the same file (or binding the same port) would clash: a configuration
    error naming both, for each clash. Each component declares its outputs (``outputs`` classmethod)."""
    errors: list[ConfigError] = []
    seen: dict[Output, Component] = {}
    for comp in components:
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
            errors.append(ConfigError(
                f"{comp.type_name} {comp.kind} {what} pipeline '{first.ctx.pipeline}' ({first.path}, line "
                f"{first.line}) {'uses' if out.kind == 'port' else 'writes'} too; {fix}",
                file, comp.line, comp.column, comp.path,
            ))
    return errors


def _resolve_pipeline(
    pname: str, pspec: PipelineSpec, base: tuple, positions: Positions, file: str,
    config_dir: Path, plugins: Plugins, check: bool,
) -> tuple[PipelineConfig | None, list[Component], list[ConfigError]]:
    """One pipeline: its config (None when it has errors), the stages and sinks that resolved (for
    the output clash check), and every error found: of its source, of each stage and sink, and of
    the chain checks of every stage whose options are valid and all of whose predecessors' are."""
    errors: list[ConfigError] = []

    def attempt(fn, *args) -> tuple[Component | None, Component | None]:
        """(the component, or None on an error; the component with valid options, also when its
        check failed, for the chain checks)."""
        try:
            comp = fn(*args)
            return comp, comp
        except ConfigError as exc:
            errors.extend(exc.errors if isinstance(exc, ConfigErrors) else [exc])
            return None, getattr(exc, "component", None)

    source = None
    if pspec.source is not None:
        source, _ = attempt(resolve_source, pname, pspec.source, base + ("source",), positions, file, config_dir,
                            plugins, check)
    stages = [
        attempt(resolve_item, "stage", pname, item, base + ("stages", i), positions, file, config_dir, plugins, check)
        for i, item in enumerate(pspec.stages)
    ]
    sinks = [
        attempt(resolve_item, "sink", pname, item, base + ("sinks", i), positions, file, config_dir, plugins, check)
        for i, item in enumerate(pspec.sinks)
    ]
    if check:
        for i, (_, comp) in enumerate(stages):
            if comp is None or any(c is None for _, c in stages[:i]):
                continue  # options not valid here or before: the chain cannot be judged
            before = [(c.type_name, c.cls, c.params) for _, c in stages[:i]]
            try:
                comp.cls.check_chain(comp.params, comp.ctx, before)
            except ValueError as exc:
                errors.append(ConfigError(str(exc), file, comp.line, comp.column, comp.path))
    parts = [c for c, _ in stages + sinks if c is not None]
    if errors or source is None:
        return None, parts, errors
    return PipelineConfig(pname, source, [c for c, _ in stages], [c for c, _ in sinks], pspec.on_error,
                          pspec.optional, pspec.in_flight, pspec.batch, pspec.resources, pspec.group), parts, errors


__all__ = ["load_config"]
