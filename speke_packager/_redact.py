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


# Secrets that may leak into an error text. Order matters: key=value forms first.
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(authorization|x-amz-security-token|x-amz-signature|signature|"
                r"credential|token|access[_-]?token|api[_-]?key|apikey|password|passwd|secret|"
                r"session[_-]?token|key)\b(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)"),
     r"\1\2<redacted>"),
    (re.compile(r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 <redacted>"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "<redacted-aws-key-id>"),
    # 16-byte values in base64 (content keys, IVs) and bare 32-digit hex (keys; KIDs keep their
    # 8-4-4-4-12 form and stay readable)
    (re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{22}==(?![A-Za-z0-9+/=])"), "<redacted>"),
    (re.compile(r"(?<![0-9A-Fa-f-])(?:0[xX])?[0-9A-Fa-f]{32}(?![0-9A-Fa-f-])"), "<redacted>"),
    # long opaque tokens (JWTs, signatures, session tokens)
    (re.compile(r"[A-Za-z0-9_\-+/]{40,}={0,2}(?:\.[A-Za-z0-9_\-+/]{10,}={0,2}){0,2}"),
     "<redacted>"),
)


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
    """``text`` (an error message of requests/urllib3, a key server's error answer) with every
    URL in it redacted, query values of bare request targets (``/speke?token=...``) hidden, and
    credentials, tokens and 16-byte key-like values replaced."""
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    text = _BARE_QUERY.sub(f"?{HIDDEN}", text)
    text = _QUERY_VALUE.sub(rf"\1={HIDDEN}", text)
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text
