"""Verify AWS Signature Version 4 (``AWS4-HMAC-SHA256``) on incoming requests.

The server recomputes the signature from the received method, path, query, signed headers and
body with the configured secret (service ``execute-api``, any region) and compares in constant
time. ``x-amz-date`` must be within 15 minutes of the server clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import parse_qsl, quote, urlsplit

from ..errors import KeyAuthError

__all__ = ["SigV4Failure", "verify_sigv4"]

MAX_SKEW = timedelta(minutes=15)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,"
    r"\s*Signature=([0-9a-fA-F]{64})\s*$"
)


class SigV4Failure(KeyAuthError):
    """Raised with the HTTP status (401 missing, 403 invalid) and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HeaderLookup(Protocol):
    def get(self, name: str) -> str | None: ...


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode("utf-8"), hashlib.sha256)


def _canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    enc = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in enc)


def verify_sigv4(
    method: str,
    target: str,
    headers: HeaderLookup,
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    now: datetime | None = None,
) -> None:
    """Raise :class:`SigV4Failure` unless the request carries a valid signature.

    ``headers.get`` must look names up case-insensitively.
    """
    auth = headers.get("authorization")
    if not auth:
        raise SigV4Failure(401, "Missing Authentication Token")
    m = _AUTH.match(auth.strip())
    if not m:
        raise SigV4Failure(403, "Malformed Authorization header")
    credential, signed_headers, signature = m.group(1), m.group(2), m.group(3).lower()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SigV4Failure(403, "Malformed credential scope")
    akid, day, region, service, _ = parts
    if not hmac.compare_digest(akid.encode(), access_key.encode()):
        raise SigV4Failure(403, "The security token included in the request is invalid")
    if service != "execute-api":
        raise SigV4Failure(403, f"Credential should be scoped to service execute-api, not "
                                f"{service}")
    amz_date = headers.get("x-amz-date") or ""
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SigV4Failure(403, "Missing or malformed X-Amz-Date") from None
    if amz_date[:8] != day:
        raise SigV4Failure(403, "Credential date does not match X-Amz-Date")
    current = now or datetime.now(UTC)
    if abs(current - when) > MAX_SKEW:
        raise SigV4Failure(403, "Signature expired")
    names = signed_headers.lower().split(";")
    if "host" not in names or names != sorted(names):
        raise SigV4Failure(403, "SignedHeaders must be sorted and include host")
    canon_headers = ""
    for name in names:
        value = headers.get(name)
        if value is None:
            raise SigV4Failure(403, f"Signed header {name} is missing")
        canon_headers += f"{name}:{' '.join(value.split())}\n"
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared and declared not in ("UNSIGNED-PAYLOAD", payload_hash):
        raise SigV4Failure(403, "X-Amz-Content-Sha256 does not match the body")
    if declared == "UNSIGNED-PAYLOAD":
        payload_hash = declared
    split = urlsplit(target)
    path = quote(split.path or "/", safe="/~")
    canonical = "\n".join([method.upper(), path, _canonical_query(split.query), canon_headers,
                           signed_headers.lower(), payload_hash])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    k = _hmac(f"AWS4{secret_key}".encode(), day)
    k = _hmac(k, region)
    k = _hmac(k, service)
    k = _hmac(k, "aws4_request")
    expected = hmac.new(k, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SigV4Failure(403, "The request signature we calculated does not match the "
                                "signature you provided")
