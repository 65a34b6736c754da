"""Load YAML into plain Python objects and remember where every key and value was written.

PyYAML's composer gives nodes with start marks; we build dicts/lists ourselves so that each
key path maps to a 1-based (line, column). Tabs and duplicate keys become `ConfigError`s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

Path_ = tuple[Any, ...]


class Positions(dict):
    """``{key path tuple: (line, column)}``, 1-based. ``find`` falls back to the nearest parent."""

    def find(self, path: Path_) -> tuple[int | None, int | None]:
        path = tuple(path)
        while path:
            if path in self:
                return self[path]
            path = path[:-1]
        return self.get((), (None, None))


def format_path(path: Path_) -> str:
    """``("pipelines", "a", "stages", 0, "edges")`` → ``pipelines.a.stages[0].edges``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_constructor = yaml.constructor.SafeConstructor()


def load_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Parse ``text``; return the data and the positions of each key path.

    Raises:
        ConfigError: syntax errors (with line/column), tab indentation, duplicate keys.
    """
    positions = Positions()
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            col = len(line) - len(stripped) + 1
            raise ConfigError(
                "tab character in indentation: YAML does not allow tabs for indentation; use spaces",
                file, lineno, col,
            )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if "'\\t'" in problem:
            problem = "tab character: YAML does not allow tabs here; use spaces"
        elif "mapping values are not allowed" in problem or "expected <block end>" in problem:
            problem += " (usually wrong indentation: compare this line with the one above)"
        raise ConfigError(
            f"invalid YAML: {problem}" + (f" ({exc.context})" if exc.context else ""),
            file, mark.line + 1 if mark else None, mark.column + 1 if mark else None,
        ) from None
    if node is None:
        return None, positions
    return _build(node, (), positions, file), positions


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(node: yaml.Node, path: Path_, positions: Positions, file: str) -> Any:
    positions.setdefault(path, _mark(node))
    if isinstance(node, yaml.MappingNode):
        _constructor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _constructor.construct_object(knode, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ConfigError("mapping keys must be plain scalars", file, *_mark(knode), format_path(path))
            if key in out:
                first = positions.get(path + (key,), (None, None))[0]
                raise ConfigError(
                    f"duplicate key {key!r} (first written on line {first})",
                    file, *_mark(knode), format_path(path + (key,)),
                )
            positions[path + (key,)] = _mark(knode)
            positions[path + (key, "<value>")] = _mark(vnode)
            out[key] = _build(vnode, path + (key,), positions, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), positions, file) for i, item in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)


def read_yaml_file(path: str | Path) -> tuple[Any, Positions, str]:
    """Read and parse a YAML file. Raises: ConfigError when it is missing or not valid YAML."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found (looked at {p.resolve()})", str(path)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file: {exc}", str(path)) from None
    data, positions = load_yaml(text, str(path))
    return data, positions, text
