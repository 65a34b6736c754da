"""Words for user-facing messages: close-match suggestions and indefinite articles."""

from __future__ import annotations

import difflib
import logging
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


class NameWatch:
    """Warns once when names an option gave (e.g. ``classes: [persons]``) never appear among the
    names a stage sees on its frames (a typo that would otherwise count nothing, silently).

    Args:
        what: how the message names the option, e.g. ``"track: classes"``.
        wanted: the configured names (None: nothing to watch).
        log: where the warning goes.
        frames: after how many frames to judge (and again at `done`, for a shorter stream).
    """

    def __init__(self, what: str, wanted: Iterable[str] | None, log: logging.Logger, frames: int = 100) -> None:
        self.what, self.log, self.frames = what, log, frames
        self.wanted = None if wanted is None else list(dict.fromkeys(str(w) for w in wanted))
        self.seen: set[str] = set()
        self.count = 0

    def see(self, names: Iterable[str]) -> None:
        """The class names on one frame (call once per frame)."""
        if self.wanted is None:
            return
        self.seen.update(names)
        self.count += 1
        if self.count == self.frames:
            self.done()

    def done(self) -> None:
        """Judge now: one warning naming the wanted names never seen (with the closest seen one)."""
        if self.wanted is None:
            return
        missing = [w for w in self.wanted if w not in self.seen]
        if missing and self.seen:
            shown = ", ".join(f"{w!r}{suggest(w, sorted(self.seen))}" for w in missing)
            self.log.warning("%s: no detection of %s in the first %d frames (seen: %s); check the class names",
                             self.what, shown, self.count, ", ".join(sorted(self.seen)))
        self.wanted = None  # once


__all__ = ["NameWatch", "a_an", "closest", "suggest"]
