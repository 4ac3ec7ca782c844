"""URLs as they may appear in messages and logs: userinfo and query values hidden.

SPEKE endpoints often carry credentials in the URL (``https://user:pass@host/...``,
``?api_key=...``, pre-signed query strings). Every message and log line that shows a URL, or
relays a library's error text that may contain one, goes through :func:`redact_url` or
:func:`redact_text`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

HIDDEN = "***"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_QUERY_VALUE = re.compile(r"(?<=[?&;])([^=&;?#\s'\"()<>]*)=([^&;#\s'\"()<>]*)")
_BARE_QUERY = re.compile(r"(?<=\S)\?(?![^\s'\"()<>]*=)[^\s'\"()<>]+")


def redact_url(url: str) -> str:
    """``url`` with user name and password replaced by ``***`` and every query value (and a
    fragment) hidden; the scheme, host, port, path and query names are kept."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if "@" in parts.netloc:
        netloc = f"{HIDDEN}@{netloc}"
    query = _QUERY_VALUE.sub(rf"\1={HIDDEN}", "?" + parts.query)[1:] if parts.query else ""
    if query and "=" not in query:
        query = HIDDEN  # a bare token (?SECRET)
    return urlunsplit((parts.scheme, netloc, parts.path, query, HIDDEN if parts.fragment else ""))


def redact_text(text: str) -> str:
    """``text`` (an error message of requests/urllib3, say) with every URL in it redacted, and
    query values of bare request targets (``/speke?token=...``) hidden."""
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    text = _BARE_QUERY.sub(f"?{HIDDEN}", text)
    return _QUERY_VALUE.sub(rf"\1={HIDDEN}", text)
