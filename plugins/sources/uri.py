"""Reading a source ``uri``: its scheme, the local path a ``file://`` URI names, and whether a
bare name (``vtest.avi``) is a media entry of the model registry, fetched like a model.

`_Missing` is what the file and images sources raise when what a ``uri`` names is not there.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from streamcnn import lookup

_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*)://")


def uri_scheme(uri: str | int) -> str | None:
    """The lower-case scheme of a ``scheme://...`` URI (``rtsp``, ``file`` …), else None."""
    m = _SCHEME.match(uri) if isinstance(uri, str) else None
    return m[1].lower() if m else None


def local_path(uri: str) -> str:
    """A local path from a ``uri``: ``file:///abs/x.mp4`` -> ``/abs/x.mp4`` (also ``file://localhost/…``;
    ``file://rel/x.mp4`` is taken as the relative path ``rel/x.mp4``); anything else unchanged."""
    text = uri.strip()
    if uri_scheme(text) != "file":
        return text
    rest = unquote(text[text.index("://") + 3:])
    if rest.lower().startswith("localhost/"):
        rest = rest[len("localhost"):]
    return rest


def _is_bare_name(uri: str) -> bool:
    """True for a plain file name without any directory part or scheme (``vtest.avi``, ``vtest``)."""
    text = uri.strip()
    return (bool(text) and uri_scheme(text) is None and "/" not in text and "\\" not in text
            and not text.startswith("~") and text not in (".", ".."))


def _media_entry(name: str):
    entry = lookup(name)
    return entry if entry is not None and entry.kind == "media" else None


class _Missing(ValueError):
    """What a source needs is not there (``open`` turns it into a `SourceError`)."""
