"""Words for user-facing messages: close-match suggestions and indefinite articles."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` — did you mean 'x'?`` for the closest choice (case-insensitive, difflib ratio ≥ 0.6), or ``""``.

    Args:
        word: what the user wrote.
        choices: the valid names.
    """
    close = closest(word, choices)
    return f" — did you mean {close!r}?" if close is not None else ""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (case-insensitive, difflib ratio ≥ 0.6), or None.

    Args:
        word: what the user wrote.
        choices: the valid names.
    """
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def a_an(word: str) -> str:
    """``word`` with its indefinite article: ``"a yolo"``, ``"an embedding"`` (by the first letter)."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


__all__ = ["a_an", "closest", "suggest"]
