"""Reading a source ``uri``: its scheme, the local path a ``file://`` URI names, whether a
bare name (``vtest.avi``) is a media entry of the model registry, fetched like a model, and
`uri_mistake`: what is wrong with a mistyped stream URL (checked at validate time).

`_Missing` is what the file and images sources raise when what a ``uri`` names is not there.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from streamcnn import lookup, redact, suggest

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


#: the schemes a mistyped one is compared with (the usual camera and stream protocols)
COMMON_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "srt", "udp")
#: schemes FFmpeg (or streamcnn) knows: never reported as a misspelling of a common one
KNOWN_SCHEMES = frozenset(COMMON_SCHEMES) | {
    "file", "rtmps", "rtmpt", "rtmpe", "rtmpte", "rtmpts", "rtp", "srtp", "tcp", "tls", "udplite", "rist", "mms",
    "mmsh", "mmst", "ftp", "sftp", "gopher", "gophers", "hls", "icecast", "unix", "pipe", "data", "zmq", "sctp",
    "smb", "ipfs", "ipns", "prompeg", "webrtc", "whep",
}
#: schemes whose URL must name a host (udp://@:1234 and srt://:9000 listen on every address)
_NEEDS_HOST = frozenset({"rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "rtmpt", "rtmpe", "rtmpte", "rtmpts"})
_DEFAULT_PORT = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935, "rtmps": 443}
_SHAPE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)(:?)(/*)(.*)$", re.S)


def uri_mistake(uri: str | int) -> str | None:
    """What is wrong with a mistyped stream URL, with the fix, or None when nothing is (also for
    anything that is not meant as a URL: a file path, a camera index, ``pattern``).

    Reported, each with a "did you mean …?" and every URL redacted:

    * a scheme that is a close misspelling of rtsp, rtsps, http, https, rtmp, srt or udp
      (``rstp://``, ``htps://``; a scheme FFmpeg knows, such as ``rtp://``, is never one);
    * a common scheme with its ``://`` mistyped: ``rtsp//host``, ``rtsp:/host``, ``rtsp:host``;
    * a port that is not a number or not in 1–65535 (``rtsp://host:abc/s``);
    * no host where the scheme needs one (``rtsp:///s``, ``rtsp://user:pw@/s``, ``http://:80/``).

    The stream, file, images and webcam sources call it from ``check``; the message is meant to be
    raised as a ``ValueError`` (the config loader adds the YAML file, line, column and key).
    """
    if not isinstance(uri, str):
        return None
    text = uri.strip()
    m = _SHAPE.match(text)
    if m is None:
        return None
    scheme, colon, slashes, rest = m[1], m[2], m[3], m[4]
    low = scheme.lower()
    if colon and len(slashes) >= 2:  # scheme://rest (three or more slashes: an empty host, below)
        if low not in KNOWN_SCHEMES:
            hint = suggest(low, COMMON_SCHEMES)  # " — did you mean 'rtsp'?" or ""
            fix = next((s for s in COMMON_SCHEMES if hint == f" — did you mean {s!r}?"), None)
            if fix is None:
                return None  # a scheme of its own (a third-party source type may claim it)
            return (f"unknown URL scheme {scheme!r} in {redact(text)} — did you mean "
                    f"{redact(fix + '://' + text[m.start(3) + 2:])}?")
        return _netloc_mistake(low, text, m.start(3) + 2)
    if low not in COMMON_SCHEMES and low not in _NEEDS_HOST:
        return None  # `C:video.mp4`, `clips//a.mp4`, `http/videos/a.mp4`: may be a local path
    if colon or len(slashes) >= 2:  # rtsp:host, rtsp:/host, rtsp//host (not rtsp/host: a folder name)
        fixed = f"{low}://{rest}"
        what = "'://' after the scheme is missing its ':'" if not colon else f"'{scheme}:' needs '//' after it"
        return f"{redact(text)}: {what} — did you mean {redact(fixed)}?"
    return None


def _netloc_mistake(scheme: str, text: str, start: int) -> str | None:
    """A port that is not a number or out of range, or a missing host, in the URL ``text`` whose
    ``user:pw@host:port`` part starts at ``start``."""
    netloc = re.split(r"[/?#]", text[start:], maxsplit=1)[0]
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):  # [IPv6]:port
        host, _, tail = hostport[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else (tail or None)
    else:
        host, sep, port_ = hostport.partition(":")
        port = port_ if sep else None
    example = f"{scheme}://192.0.2.10/stream1" if scheme.startswith("rtsp") else f"{scheme}://192.0.2.10/"
    if not host and scheme in _NEEDS_HOST:
        return f"{redact(text)} has no host: write {scheme}://HOST/PATH, e.g. {example}"
    if port:
        default = _DEFAULT_PORT.get(scheme)
        ports = "ports are 1 to 65535" + (f"; without one, {scheme} uses {default}" if default else "")
        if not port.isdigit():
            end = start + len(netloc)  # the port ends the netloc: drop ":PORT"
            fixed = redact(text[:end - len(port) - 1] + text[end:]) if default else None
            return (f"port {redact(port)!r} in {redact(text)} is not a number ({ports})"
                    + (f" — did you mean {fixed}?" if fixed else ""))
        if not 1 <= int(port) <= 65535:
            return f"port {int(port)} in {redact(text)} is out of range ({ports})"
    return None


def check_not_a_url(uri: str | int, type_name: str, takes: str) -> None:
    """For a local source type (``file``, ``images``, ``webcam``, ``pattern``): a mistyped URL
    (`uri_mistake`) or a network URL is a ``ValueError`` saying what to write instead.

    Args:
        uri: the ``uri`` option.
        type_name: the source type, for the message.
        takes: what the type reads, e.g. ``"a local video file"``.
    """
    mistake = uri_mistake(uri)
    if mistake is not None:
        raise ValueError(mistake)
    scheme = uri_scheme(uri)
    if scheme is not None and scheme != "file":
        raise ValueError(f"type: {type_name} reads {takes}, but {redact(str(uri).strip())} is a network stream URL: "
                         "write `type: stream`, or leave `type` out")
