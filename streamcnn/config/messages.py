"""Pydantic validation errors translated into located, plain-words `ConfigError`s."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import annotated_types as at
import yaml
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from ..errors import ConfigError
from ..words import suggest
from ..yamlpos import Positions, format_path


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
    """Plain-words description of what the field at ``loc`` accepts, e.g. 'a number in [0, 1]'
    (for ``(field, 0)`` of a list field: what an item of the list accepts)."""
    if not loc or not isinstance(loc[0], str) or loc[0] not in model.model_fields:
        return None
    info = model.model_fields[loc[0]]
    annotation, meta = info.annotation, list(info.metadata)
    for part in loc[1:]:  # into list items and mapping values
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(part, int) and origin in (list, tuple) and args:
            annotation, meta = args[0], []
        elif isinstance(part, str) and origin is dict and len(args) == 2:
            annotation, meta = args[1], []
        else:
            break
    types, extra = _unwrap(annotation)
    meta = extra + meta
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
        elif t in _SECRETS:
            words.append("a string (a secret: never shown)")
    if not words:
        return None
    # "a number in [0, 1]" instead of "an integer in [0, 1] or a number in [0, 1]"
    if any(w.startswith("a number") for w in words):
        words = [w for w in words if not w.startswith("an integer")]
    words = list(dict.fromkeys(words))
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def yaml_value(value: Any) -> str:
    """``value`` as the YAML it came from, for "got ..." in messages: ``an empty value`` for null,
    ``true``, ``'high'``, ``3``, ``a mapping ({a: 1})``, ``a list ([1, 2])`` — never Python's
    ``None``, ``{'a': 1}`` or ``True``."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float)):
        return _flow(value)
    if isinstance(value, dict):
        return f"{'an empty mapping' if not value else 'a mapping'} ({_flow(value)})"
    if isinstance(value, (list, tuple)):
        return f"{'an empty list' if not value else 'a list'} ({_flow(list(value))})"
    return repr(value)


def yaml_key(key: Any) -> str:
    """A mapping key for a message: ``'edges'``, ``null`` for an empty key, ``1`` for a number."""
    return repr(key) if isinstance(key, str) else _flow(key)


def _flow(value: Any, limit: int = 60) -> str:
    """One-line YAML flow style (``{a: 1, b: [x, null]}``), cut to ``limit`` characters."""
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    except yaml.YAMLError:
        text = repr(value)
    text = text.strip().removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        if "[key]" in err["loc"]:  # a mapping key of the wrong type (an empty key, a number)
            path = base + loc[:-1] + (err.get("input"),)
            line, col = positions.find(path)
            out.append(ConfigError(f"expected a name (a string) as the key, got {yaml_key(err.get('input'))}",
                                   file, line, col, format_path(path)))
            continue
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
            shown = "a value that is not shown (a secret)" if _secret(owner, rest) else yaml_value(given)
            if expected:
                msg = f"expected {expected}, got {shown}"
                ann = owner.model_fields[rest[0]].annotation
                if typing.get_origin(ann) is Literal and isinstance(given, str):
                    msg += suggest(given, typing.get_args(ann))
                if kind not in _TYPE_KINDS and not err["msg"].startswith("Input should be"):
                    msg += f" ({err['msg']})"
            else:
                msg = f"{err['msg']} (got {shown})"
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
        members = [t for t in typing.get_args(ann) if t is not type(None)]
        if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(members) == 1:
            ann = members[0]  # an optional section (``resources: ... | None``)
        if typing.get_origin(ann) is dict and len(typing.get_args(ann)) == 2:
            inner = typing.get_args(ann)[1]
            if isinstance(inner, type) and issubclass(inner, BaseModel) and i + 2 < len(loc):
                model, what, i = inner, f"{loc[i][:-1] if str(loc[i]).endswith('s') else loc[i]} {loc[i + 1]!r}", i + 2
                continue
        if typing.get_origin(ann) in (list, tuple) and typing.get_args(ann):
            inner = typing.get_args(ann)[0]
            if (isinstance(inner, type) and issubclass(inner, BaseModel) and i + 2 < len(loc)
                    and isinstance(loc[i + 1], int)):
                model, what, i = inner, f"{loc[i]}[{loc[i + 1]}]", i + 2
                continue
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model, what, i = ann, f"{loc[i]!r}", i + 1
            continue
        break
    return model, loc[i:], what


_SECRETS = (SecretStr, SecretBytes)


def _secret(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """True when the field at ``loc`` holds a secret (``SecretStr``): its value is never quoted."""
    if not loc or not isinstance(loc[0], str) or loc[0] not in model.model_fields:
        return False
    return any(t in _SECRETS for t in _unwrap(model.model_fields[loc[0]].annotation)[0])


_UNION_TAGS = {"int", "float", "str", "bool", "list", "dict", "tuple", "none", "bytes"}  # pydantic union branches

_TYPE_KINDS = {
    "float_parsing", "float_type", "int_parsing", "int_type", "int_from_float", "bool_parsing", "bool_type",
    "string_type", "literal_error", "greater_than", "greater_than_equal", "less_than", "less_than_equal",
    "list_type", "dict_type", "model_type", "finite_number", "union_tag_invalid",
}


__all__ = ["describe_expected", "pydantic_to_config_errors", "yaml_key", "yaml_value"]
