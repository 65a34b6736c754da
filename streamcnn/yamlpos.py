"""Load YAML into plain Python objects and remember where every key and value was written.

PyYAML's composer gives nodes with start marks; we build dicts/lists ourselves so that each
key path maps to a 1-based (line, column). Tabs, literal duplicate keys, unknown tags, recursive
aliases and anything else PyYAML would raise on become `ConfigError`s.

Numbers are YAML 1.2 decimal ones only (no hex or octal, no ``_`` or ``:`` in them): ``0x0``,
``1:30`` and ``2024-01-01`` stay strings and ``010`` is 10 (YAML 1.1 would read ``size: 0x0`` as
the hex number 0 and ``1:30`` as 90). Merge keys (``<<: *anchor``, ``<<: [*a, *b]``) work as in
YAML 1.1: keys written in the mapping override merged ones, and earlier mappings of a merge list
override later ones; only literal duplicate keys are errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

Path_ = tuple[Any, ...]

_TAG = "tag:yaml.org,2002:"
_INT, _FLOAT, _MERGE = _TAG + "int", _TAG + "float", _TAG + "merge"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
MAX_DEPTH = 100  #: nesting levels a file may have
MAX_VALUES = 200_000  #: values a file may expand to (aliases included): stops "billion laughs" files


class Positions(dict):
    """``{key path tuple: (line, column)}``, 1-based. ``find`` falls back to the nearest parent."""

    def find(self, path: Path_) -> tuple[int | None, int | None]:
        """The position of ``path``, or of its nearest ancestor that has one."""
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
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("null" if part is None else str(part))
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema numbers and no implicit timestamps or ``=`` values."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _TAG + "timestamp", _TAG + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


class _Constructor(yaml.constructor.SafeConstructor):
    """Decimal integers only (``010`` is 10, not octal 8; ``0x10`` is not a number)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        return int(self.construct_scalar(node))


_Constructor.add_constructor(_INT, _Constructor.construct_yaml_int)
_constructor = _Constructor()


def load_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Parse ``text``; return the data and the positions of each key path.

    Raises:
        ConfigError: syntax errors (with line/column), tab indentation, literal duplicate keys,
            unsupported tags, recursive aliases, too deep or too large documents.
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
        node = yaml.compose(text, Loader=_Loader)
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
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise ConfigError(f"invalid YAML: the control character U+{ord(char):04X} is not allowed in a YAML file",
                          file, line, col) from None
    except RecursionError:
        raise ConfigError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep", file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file) from None
    if node is None:
        return None, positions
    return _Builder(positions, file).build(node, ()), positions


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


class _Builder:
    """Builds plain objects from a node graph, recording positions (one per `load_yaml` call)."""

    def __init__(self, positions: Positions, file: str) -> None:
        self.positions, self.file = positions, file
        self.active: set[int] = set()  # collection nodes being built: an alias to one is a cycle
        self.values = 0

    def error(self, message: str, node: yaml.Node, path: Path_) -> ConfigError:
        return ConfigError(message, self.file, *_mark(node), format_path(path))

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.error(f"the file expands to more than {MAX_VALUES} values (aliases repeated inside "
                             "aliases?); write the values out or use fewer aliases", node, path)
        self.positions.setdefault(path, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            raise self.error("recursive alias: this anchor is used inside itself", node, path)
        if len(self.active) >= MAX_DEPTH:
            raise ConfigError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep", self.file, *_mark(node))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        if node.tag == _MERGE:
            raise self.error("'<<' (a merge key) only works as a key, e.g. `<<: *defaults`", node, path)
        if node.tag not in _SCALAR_TAGS:
            raise self.error(f"unsupported YAML tag {_tag_name(node.tag)!r}: write a plain value (a string, number, "
                             "true/false or null) without a tag", node, path)
        try:
            return _constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, ArithmeticError):
            raise self.error(f"{node.value!r} is not a valid {_tag_name(node.tag)} value", node, path) from None

    def key(self, knode: yaml.Node, path: Path_) -> Any:
        if not isinstance(knode, yaml.ScalarNode):
            raise ConfigError("mapping keys must be plain scalars", self.file, *_mark(knode), format_path(path))
        return self.scalar(knode, path)

    def pairs(self, node: yaml.MappingNode, path: Path_) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
        """``{key: (key node, value node)}`` of a mapping with its merge keys applied; literal
        duplicate keys (and a second ``<<``) are errors, keys overriding merged ones are not."""
        own: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        merged: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        merge_node: yaml.Node | None = None
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                if merge_node is not None:
                    raise self.error(f"duplicate key '<<' (first written on line {_mark(merge_node)[0]}); merge "
                                     "several mappings with one list: `<<: [*a, *b]`", knode, path + ("<<",))
                merge_node = knode
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise self.error("'<<' (a merge key) needs a mapping or a list of mappings, e.g. "
                                         "`<<: *defaults` or `<<: [*a, *b]`", knode, path + ("<<",))
                    if id(src) in self.active or len(self.active) >= MAX_DEPTH:
                        # an alias node carries its anchor's position: point at the `<<` key instead
                        raise self.error("recursive alias: this anchor is merged into itself", knode, path + ("<<",))
                    self.active.add(id(src))
                    try:
                        for k, pair in self.pairs(src, path).items():
                            merged.setdefault(k, pair)  # earlier mappings of the list win
                    finally:
                        self.active.discard(id(src))
                continue
            key = self.key(knode, path)
            if key in own:
                first = _mark(own[key][0])[0]
                shown = "null" if key is None else key
                raise self.error(f"duplicate key {shown!r} (first written on line {first})", knode, path + (key,))
            own[key] = (knode, vnode)
        return {**merged, **own}

    def mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, (knode, vnode) in self.pairs(node, path).items():
            self.positions[path + (key,)] = _mark(knode)
            self.positions[path + (key, "<value>")] = _mark(vnode)
            out[key] = self.build(vnode, path + (key,))
        return out


def read_yaml_file(path: str | Path) -> tuple[Any, Positions, str]:
    """Read and parse a YAML file. Raises: ConfigError when it is missing or not valid YAML."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found (looked at {p.resolve()})", str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a YAML file", str(path)) from None
    except PermissionError:
        raise ConfigError("cannot read configuration file: permission denied", str(path)) from None
    except UnicodeDecodeError as exc:
        before = p.read_bytes()[: exc.start]
        line = before.count(b"\n") + 1
        raise ConfigError(f"not a text file: byte {exc.object[exc.start]:#04x} at byte offset {exc.start} is not "
                          "UTF-8 (a YAML file must be UTF-8 text)", str(path), line) from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror or exc}", str(path)) from None
    data, positions = load_yaml(text, str(path))
    return data, positions, text
