"""Authentication towards a SPEKE key server (speke.md §10).

Each auth object signs or decorates one request at a time (``sign`` is called again for every
retry, so SigV4 signatures are always fresh) and may name a client certificate for mutual TLS.
This module does not import ``requests``; :mod:`speke_packager.keys.client` applies the result.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._io import warn_if_exposed
from ..errors import KeyAuthError, UsageError

__all__ = [
    "Auth",
    "BasicAuth",
    "DigestAuth",
    "HeaderAuth",
    "MtlsAuth",
    "NoAuth",
    "SigV4Auth",
    "parse_header",
]

log = logging.getLogger(__name__)


class Auth:
    """Base class: no authentication."""

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes
             ) -> dict[str, str]:
        """The headers to send for this attempt (a new dict; ``headers`` is not changed)."""
        return dict(headers)

    def client_cert(self) -> tuple[str, str] | None:
        """(certificate file, key file) for mutual TLS, or None."""
        return None

    def ca_bundle(self) -> str | None:
        """A CA bundle to verify the server with, or None for the default."""
        return None

    def http_auth(self) -> tuple[str, str, str] | None:
        """(``"basic"``/``"digest"``, user, password) for HTTP authentication, or None."""
        return None

    def describe(self) -> str:
        return "none"


class NoAuth(Auth):
    """No authentication (a key server on a trusted network, or auth in the URL)."""


@dataclass(frozen=True)
class DigestAuth(Auth):
    """HTTP Digest authentication (SPEKE's on-premises option; answers the server's 401
    challenge and resends the same document). The password never appears in repr or logs."""

    user: str
    password: str = field(repr=False)

    def http_auth(self) -> tuple[str, str, str] | None:
        return ("digest", self.user, self.password)

    def describe(self) -> str:
        return "digest"


@dataclass(frozen=True)
class BasicAuth(Auth):
    """HTTP Basic authentication (use over HTTPS only)."""

    user: str
    password: str = field(repr=False)

    def http_auth(self) -> tuple[str, str, str] | None:
        return ("basic", self.user, self.password)

    def describe(self) -> str:
        return "basic"


@dataclass(frozen=True)
class HeaderAuth(Auth):
    """Static extra headers: vendor API keys, ``Authorization: Basic ...``. Values are secret:
    they never appear in repr or logs."""

    headers: Mapping[str, str] = field(repr=False)

    def __post_init__(self) -> None:
        for k, v in self.headers.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k):
                raise UsageError(f"invalid HTTP header name {k!r}")
            if "\r" in v or "\n" in v:
                raise UsageError(f"header {k} contains a line break")

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes
             ) -> dict[str, str]:
        out = dict(headers)
        out.update(self.headers)
        return out

    def describe(self) -> str:
        return f"headers({', '.join(sorted(self.headers))})"


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> (name, value); raises :class:`UsageError`."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError("header must look like 'Name: value'")
    return name.strip(), value.strip()


@dataclass(frozen=True)
class MtlsAuth(Auth):
    """Mutual TLS: a client certificate and key (PEM files) and optionally a CA bundle."""

    cert_file: str
    key_file: str
    ca_bundle_file: str | None = None

    def __init__(self, cert_file: str, key_file: str, ca_bundle: str | None = None) -> None:
        for p in (cert_file, key_file, ca_bundle):
            if p is not None and not Path(p).is_file():
                raise UsageError(f"mTLS file not found: {p}")
        warn_if_exposed(key_file, "mTLS client private key")
        object.__setattr__(self, "cert_file", str(cert_file))
        object.__setattr__(self, "key_file", str(key_file))
        object.__setattr__(self, "ca_bundle_file", None if ca_bundle is None else str(ca_bundle))

    def client_cert(self) -> tuple[str, str] | None:
        return (self.cert_file, self.key_file)

    def ca_bundle(self) -> str | None:
        return self.ca_bundle_file

    def describe(self) -> str:
        return "mtls"


_APIGW_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


def region_from_url(url: str) -> str | None:
    """The region of an API Gateway URL (``<id>.execute-api.<region>.amazonaws.com``)."""
    host = urlsplit(url).hostname or ""
    m = _APIGW_HOST.match(host)
    return m.group(1) if m else None


class SigV4Auth(Auth):
    """AWS Signature Version 4 via botocore (API Gateway with IAM auth).

    Credentials: ``credentials`` (a botocore ``Credentials`` or ``(access_key, secret_key[,
    token])``), else the standard botocore chain (environment, profile, instance role...).
    With ``role_arn`` those credentials assume the role through STS first; the temporary
    credentials are refreshed five minutes before they expire."""

    def __init__(
        self,
        region: str | None,
        service: str = "execute-api",
        role_arn: str | None = None,
        credentials: Any = None,
        *,
        sts_endpoint_url: str | None = None,
    ) -> None:
        try:
            import botocore.session  # noqa: F401
        except ImportError as exc:  # pragma: no cover - botocore is a dependency
            raise KeyAuthError("SigV4 needs botocore") from exc
        self.region = region
        self.service = service
        self.role_arn = role_arn
        self._base = credentials
        self._sts_endpoint_url = sts_endpoint_url
        self._lock = threading.Lock()
        self._assumed: Any = None
        self._assumed_expiry = 0.0

    def __repr__(self) -> str:
        return f"SigV4Auth(region={self.region!r}, service={self.service!r}, role_arn=" \
               f"{self.role_arn!r})"

    def describe(self) -> str:
        return f"sigv4({self.service})"

    def _base_credentials(self) -> Any:
        from botocore.credentials import Credentials

        if self._base is None:
            import botocore.session

            creds = botocore.session.get_session().get_credentials()
            if creds is None:
                raise KeyAuthError("no AWS credentials found in the botocore credential chain")
            return creds
        if isinstance(self._base, tuple):
            return Credentials(*self._base)
        return self._base

    def _credentials(self, region: str) -> Any:
        if self.role_arn is None:
            return self._base_credentials()
        with self._lock:
            if self._assumed is not None and time.time() < self._assumed_expiry - 300:
                return self._assumed
            import botocore.session
            from botocore.credentials import Credentials
            from botocore.exceptions import BotoCoreError, ClientError

            base = self._base_credentials().get_frozen_credentials()
            session = botocore.session.get_session()
            try:
                sts = session.create_client(
                    "sts", region_name=region, aws_access_key_id=base.access_key,
                    aws_secret_access_key=base.secret_key, aws_session_token=base.token,
                    endpoint_url=self._sts_endpoint_url)
                out = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="speke-packager")
            except (BotoCoreError, ClientError) as exc:
                raise KeyAuthError(f"STS AssumeRole of {self.role_arn} failed: "
                                   f"{type(exc).__name__}") from None
            c = out["Credentials"]
            self._assumed = Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
            exp = c.get("Expiration")
            self._assumed_expiry = exp.timestamp() if hasattr(exp, "timestamp") else \
                time.time() + 900
            log.info("assumed role %s", self.role_arn)
            return self._assumed

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes
             ) -> dict[str, str]:
        from botocore.auth import SigV4Auth as BotoSigV4
        from botocore.awsrequest import AWSRequest

        region = self.region or region_from_url(url)
        if not region:
            raise UsageError("SigV4 needs a region (--region) for this URL")
        creds = self._credentials(region)
        frozen = creds.get_frozen_credentials() if hasattr(creds, "get_frozen_credentials") \
            else creds
        req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        BotoSigV4(frozen, self.service, region).add_auth(req)
        return {k: v for k, v in req.headers.items()}
