"""Remove credentials from URLs before they reach a log line or an error message."""

from __future__ import annotations

import logging
import re

# SCHEME://USERINFO@host, and the mistyped shapes `rtsp//u:p@h`, `rtsp:/u:p@h`, `rtsp:///u:p@h`:
# USERINFO runs to the *last* "@" before the host's "/" (passwords may contain "@"), so the whole
# of it is hidden. Any scheme, so a misspelt one (`rstp://`) too.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*(?::/{1,3}|//))(?P<userinfo>[^/\s?#'\"]*@)")
# `user:pw@host` with no scheme at all (also inside a path, where a mistyped URL was resolved as a
# file: `/cfg/rtsp/user:pw@host/s`): a name, a colon, anything up to the last "@" before "/".
_BARE_USERINFO = re.compile(r"(?<![^\s/'\"(\[=,<])[^\s/@:'\"]+:(?!\*\*\*@)[^\s/'\"]*@")  # not twice
# ...?user=admin&password=secret: secret-looking query parameters (camera vendors use these)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pass|pwd|secret|token|access_token|auth|key|api_key|apikey|signature)=)"
    r"(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Hide ``user:pass@`` and secret query parameters of every URL inside ``text``, whatever the
    URL's shape: ``rtsp://``, a mistyped scheme (``rstp://``, ``rtsp//``, ``rtsp:/``), or no scheme
    at all (``user:pass@host/s``). A plain ``name@host`` without a scheme (an e-mail address) stays.

    >>> redact("rtsp://admin:p@ss@192.0.2.10/stream1?channel=1&password=secret")
    'rtsp://***@192.0.2.10/stream1?channel=1&password=***'
    >>> redact("video file rtsp//admin:pw@cam/s not found (resolved to /cfg/rtsp/admin:pw@cam/s)")
    'video file rtsp//***@cam/s not found (resolved to /cfg/rtsp/***@cam/s)'
    """
    text = _USERINFO.sub(lambda m: m["scheme"] + "***@", text)
    text = _BARE_USERINFO.sub("***@", text)
    return _QUERY_SECRET.sub(_hide_value, text)


def _hide_value(m: re.Match) -> str:
    """``key=***``, keeping punctuation that ends the sentence rather than the value (``…?key=s, 0``)."""
    value = m["value"]
    return m["key"] + "***" + value[len(value.rstrip(",.;:)]'\"")):]


class RedactingFormatter(logging.Formatter):
    """A log formatter that passes every line through `redact` (no credentials in any log), in
    streamcnn's format: ``HH:MM:SS LEVEL   logger: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
