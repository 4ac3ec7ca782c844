"""W3C ClearKey licence exchange (EME §9.1.4): request JSON in, JWK set out.

Request ``{"kids": ["<base64url KID>", ...], "type": "temporary"}``; answer
``{"keys": [{"kty": "oct", "kid": "...", "k": "..."}], "type": "temporary"}``, base64url without
padding (Chromium rejects ``=``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from uuid import UUID

from .request import SpekeRequestError

__all__ = ["b64url", "b64url_decode", "key_route_kid", "license_response",
           "parse_license_request"]

MAX_KIDS = 64


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text + pad, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SpekeRequestError(f"KID {text!r} is not base64url", status=400) from None


def key_route_kid(name: str) -> UUID | None:
    """The KID of a raw-key route ``/keys/<kid>`` (32 hex digits or a dashed UUID, an optional
    extension such as ``.key``), or None: the one reading of that route for the key server and
    ``serve``."""
    stem = name.strip("/").split(".", 1)[0].replace("-", "")
    if len(stem) != 32:
        return None
    try:
        return UUID(hex=stem)
    except ValueError:
        return None


def parse_license_request(body: bytes) -> tuple[list[UUID], str]:
    """KIDs and session type of a ClearKey licence request; 400 when malformed."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SpekeRequestError("licence request is not JSON", status=400) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("kids"), list):
        raise SpekeRequestError('licence request needs a "kids" list', status=400)
    kids_raw = doc["kids"]
    if not kids_raw or len(kids_raw) > MAX_KIDS:
        raise SpekeRequestError(f"licence request must name 1 to {MAX_KIDS} KIDs", status=400)
    kids: list[UUID] = []
    for item in kids_raw:
        if not isinstance(item, str):
            raise SpekeRequestError("licence request KIDs must be strings", status=400)
        raw = b64url_decode(item)
        if len(raw) != 16:
            raise SpekeRequestError(f"KID {item!r} is not 16 bytes", status=400)
        kids.append(UUID(bytes=raw))
    session = doc.get("type", "temporary")
    if session not in ("temporary", "persistent-license"):
        raise SpekeRequestError(f"unsupported session type {session!r}", status=400)
    return kids, str(session)


def license_response(kids: list[UUID], session: str,
                     lookup: Callable[[UUID], bytes | None]) -> bytes | None:
    """JSON licence for the KIDs ``lookup`` knows; None when it knows none of them."""
    keys = []
    for kid in kids:
        key = lookup(kid)
        if key is not None:
            keys.append({"kty": "oct", "kid": b64url(kid.bytes), "k": b64url(key)})
    if not keys:
        return None
    return json.dumps({"keys": keys, "type": session}, separators=(",", ":")).encode("utf-8")
