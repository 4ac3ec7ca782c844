"""Decode a key server's error answer: the vendor's own words, from the body and the headers.

Vendors put the real reason in different places: SPEKE v2 fixed strings in a plain-text body
(speke.md §11), JSON ``message`` (AWS API Gateway, with ``x-amzn-ErrorType`` and
``x-amzn-RequestId`` headers), ``X-AxDRM-ErrorMessage`` (Axinom) or some other ``x-…-error…``
header, XML or HTML error pages. :func:`decode_error_answer` gathers them into one short,
single-line, redacted description; nothing here raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._redact import redact_text

__all__ = [
    "SPEKE_V2_ERRORS",
    "ErrorAnswer",
    "decode_error_answer",
    "redact_text",
    "request_id_of",
]

# SPEKE v2 fixed error strings (speke.md §11); the first words are enough to recognise them.
SPEKE_V2_ERRORS = (
    "Missing CPIX@", "Unsupported CPIX@version", "Missing ContentKey@commonEncryptionScheme",
    "Non compliant ContentKey@commonEncryptionScheme", "non compatible with DRMSystem",
    "Unsupported SPEKE version", "Malformed encryption contract",
    "Requested CPIX encryption contract not supported", "Missing CPIX encryption contract",
)

MAX_PART = 300  # characters kept of one message
MAX_TOTAL = 600  # characters of the whole description
_SCAN_BYTES = 16384  # body bytes looked at

_REQUEST_ID_HEADERS = ("x-amzn-requestid", "x-amz-request-id", "x-amz-apigw-id", "x-request-id",
                       "x-correlation-id", "request-id")
_TYPE_HEADERS = ("x-amzn-errortype",)
_MESSAGE_HEADERS = ("x-axdrm-errormessage",)
_ERROR_HEADER = re.compile(r"^x-.*error", re.I)
_SECRET_HEADER = re.compile(r"auth|token|secret|password|cookie|signature|credential|api-?key",
                            re.I)

_JSON_KEYS = ("message", "Message", "errorMessage", "error_description", "error", "detail",
              "title", "reason", "description", "errors", "__type", "code")

def _one_line(text: str, limit: int = MAX_PART) -> str:
    flat = " ".join(text.split())
    flat = redact_text(flat)
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What a non-2xx answer says. Every text is one line, truncated and redacted."""

    status: int
    message: str = ""  # the server's own message (body, else a message header)
    error_type: str | None = None  # x-amzn-ErrorType and the like
    request_id: str | None = None  # quote it to the vendor
    speke_error: bool = False  # one of the SPEKE v2 fixed strings
    headers: tuple[tuple[str, str], ...] = field(default=())  # other x-*-error* headers

    def describe(self) -> str:
        """One line: message, error type, other error headers, request id."""
        parts: list[str] = []
        if self.message:
            parts.append(self.message)
        if self.error_type and self.error_type not in self.message:
            parts.append(f"[{self.error_type}]")
        for name, value in self.headers:
            if value not in self.message:
                parts.append(f"{name}: {value}")
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        text = " ".join(parts)
        return text if len(text) <= MAX_TOTAL else text[: MAX_TOTAL - 3] + "..."


def _header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    low = {k.lower(): v for k, v in headers.items()}
    for n in names:
        v = low.get(n)
        if v and v.strip():
            return v.strip()
    return None


def request_id_of(headers: Mapping[str, str]) -> str | None:
    """The server's request id (``x-amzn-RequestId`` and the like), if it sent one."""
    found = _header(headers, _REQUEST_ID_HEADERS)
    return _one_line(found, 80) if found else None


def _json_message(data: object, depth: int = 0) -> str | None:
    if depth > 3:
        return None
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        texts = [t for t in (_json_message(x, depth + 1) for x in data[:3]) if t]
        return "; ".join(texts) or None
    if isinstance(data, dict):
        for k in _JSON_KEYS:
            if k in data:
                found = _json_message(data[k], depth + 1)
                if found:
                    return found
    return None


_TAG = re.compile(r"<[^>]*>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_XML_MESSAGE = re.compile(r"<(?:\w+:)?(?:Message|message|faultstring|ErrorMessage|Reason|"
                          r"description)\b[^>]*>(.*?)</", re.S)


def _body_message(body: bytes, content_type: str) -> str:
    text = body[:_SCAN_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if not text:
        return ""
    if "json" in content_type or text[:1] in "{[":
        try:
            found = _json_message(json.loads(text))
        except ValueError:
            found = None
        if found:
            return found
    if text.startswith("<"):
        if "html" in content_type or re.match(r"(?i)<!doctype html|<html", text):
            title = _TITLE.search(text)
            visible = " ".join(_TAG.sub(" ", re.sub(r"(?is)<(script|style).*?</\1>", "",
                                                     text)).split())
            return title.group(1).strip() if title and title.group(1).strip() else visible
        m = _XML_MESSAGE.search(text)
        if m and m.group(1).strip():
            return _TAG.sub(" ", m.group(1))
        return _TAG.sub(" ", text)
    return text


def decode_error_answer(status: int, headers: Mapping[str, str], body: bytes) -> ErrorAnswer:
    """The server's own account of a non-2xx answer (status, headers, body as received)."""
    ctype = (_header(headers, ("content-type",)) or "").lower()
    message = _one_line(_body_message(body, ctype))
    header_msg = _header(headers, _MESSAGE_HEADERS)
    if header_msg:
        hm = _one_line(header_msg)
        message = hm if not message else (message if hm in message else f"{hm}; {message}")
    error_type = _header(headers, _TYPE_HEADERS)
    request_id = _header(headers, _REQUEST_ID_HEADERS)
    known = {*_TYPE_HEADERS, *_MESSAGE_HEADERS}
    extra = tuple(
        (k, _one_line(v, 160)) for k, v in headers.items()
        if _ERROR_HEADER.match(k) and k.lower() not in known and v.strip()
        and not _SECRET_HEADER.search(k)
    )[:4]
    return ErrorAnswer(
        status=status,
        message=message,
        error_type=_one_line(error_type.split(":")[0], 80) if error_type else None,
        request_id=_one_line(request_id, 80) if request_id else None,
        speke_error=any(m in message for m in SPEKE_V2_ERRORS),
        headers=extra,
    )
