"""Remove credentials from URLs before they reach a log line or an error message."""

from __future__ import annotations

import re

# scheme://USERINFO@host: USERINFO runs to the *last* "@" before the host's "/" (passwords may
# contain "@"), so the whole of it is hidden.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s?#]*@)")
# ...?user=admin&password=secret: secret-looking query parameters (camera vendors use these)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pass|pwd|secret|token|access_token|auth|key|api_key|apikey|signature)=)"
    r"(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Hide ``user:pass@`` and secret query parameters of every URL inside ``text``.

    >>> redact("rtsp://admin:p@ss@192.0.2.10/stream1?channel=1&password=secret")
    'rtsp://***@192.0.2.10/stream1?channel=1&password=***'
    """
    text = _USERINFO.sub(lambda m: m["scheme"] + "***@", text)
    return _QUERY_SECRET.sub(lambda m: m["key"] + "***", text)
