"""Verify AWS Signature Version 4 (``AWS4-HMAC-SHA256``) on incoming requests.

The server parses the ``Authorization`` header, then lets botocore recompute the signature the
client should have sent (the same code that signs our own requests) from the received method,
path, query, the headers named in ``SignedHeaders`` and the body, with the configured secret
(service ``execute-api``, any region), and compares in constant time. ``x-amz-date`` must be
within 15 minutes of the server clock; the body must be signed (its SHA-256, not
``UNSIGNED-PAYLOAD``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

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
                                f"{service[:64]}")
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
    received: dict[str, str] = {}
    for name in names:
        value = headers.get(name)
        if value is None:
            raise SigV4Failure(403, f"Signed header {name} is missing")
        received[name] = value
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared.strip().lower() != payload_hash:
        raise SigV4Failure(403, "X-Amz-Content-Sha256 does not match the body")
    signer = SigV4Auth(Credentials(akid, secret_key), service, region)
    try:
        request = AWSRequest(method=method.upper(), url=f"http://{received['host']}{target}",
                             data=body, headers=received)
        request.context["timestamp"] = amz_date
        if signer.signed_headers(signer.headers_to_sign(request)) != ";".join(names):
            raise SigV4Failure(403, "SignedHeaders names a header that cannot be signed")
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
    except (ValueError, TypeError, UnicodeError):  # a target botocore cannot canonicalise
        raise SigV4Failure(403, "The request cannot be canonicalised") from None
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SigV4Failure(403, "The request signature we calculated does not match the "
                                "signature you provided")
