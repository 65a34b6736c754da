"""Remove credentials from URLs before they reach a log line or an error message."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]*@)")


def redact(text: str) -> str:
    """Replace ``user:pass@`` in every URL inside ``text`` with ``***@``.

    >>> redact("rtsp://admin:secret@192.0.2.10/stream1")
    'rtsp://***@192.0.2.10/stream1'
    """
    return _USERINFO.sub(lambda m: m["scheme"] + "***@", text)
