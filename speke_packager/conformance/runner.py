"""Run the registered checks against a key server: send the battery, then examine the answers.

Request checks run first, in registration order, and record :class:`Exchange` values on the
:class:`RunContext`; answer checks then look at every answer of the version. The first request of
a version decides whether the server speaks it at all: a v2 request refused as an unsupported
version, or answered with a SPEKE v1 document, makes every check of that version "not supported".
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from lxml import etree

from .._redact import redact_url
from ..constants import DrmSystem, Packaging, Scheme, SpekeVersion
from ..errors import (
    CpixValidationError,
    KeyAcquisitionError,
    KeyServerHTTPError,
    SpekePackagerError,
    UsageError,
)
from ..keys.client import SpekeClient
from ..keys.cpix.parse import parse_cpix
from ..keys.envelope import DeliveryKey, decrypt_content_keys, strict_b64decode
from ..keys.request import EncryptionContract
from ..keys.validate import validate_response
from .model import (
    REGISTRY,
    Check,
    CheckFailed,
    CheckResult,
    CheckSkipped,
    CheckWarning,
    ConformanceReport,
    Exchange,
    NotSupported,
    Outcome,
)

__all__ = ["ConformanceOptions", "RunContext", "ephemeral_delivery_key", "run_conformance"]

DEFAULT_DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY, DrmSystem.CLEARKEY,
                DrmSystem.AES128)
DEFAULT_PACKAGING = (Packaging.DASH, Packaging.HLS_FMP4, Packaging.HLS_TS)
_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ConformanceOptions:
    """What to test. ``delivery_key`` None: a throw-away RSA-2048 certificate is made for the
    encrypted-keys checks. ``checks``: names to run (None: all registered)."""

    versions: tuple[SpekeVersion, ...] = tuple(SpekeVersion)
    drm: tuple[DrmSystem, ...] = DEFAULT_DRMS
    packaging: tuple[Packaging, ...] = DEFAULT_PACKAGING
    delivery_key: DeliveryKey | None = None
    budget: float = 5.0  # seconds an answer may take
    content_id: str = "conformance"
    checks: tuple[str, ...] | None = None


def ephemeral_delivery_key() -> DeliveryKey:
    """A fresh self-signed RSA-2048 delivery certificate (SPEKE's size) for one run."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "speke-packager conformance")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return DeliveryKey(cert.public_bytes(serialization.Encoding.DER), key)


class RunContext:
    """What checks use: the clients, the options and the exchanges recorded so far."""

    def __init__(self, client: SpekeClient, options: ConformanceOptions) -> None:
        self.options = options
        self.client = copy.copy(client)
        self.client.delivery_key = None
        self.delivery_key = options.delivery_key or client.delivery_key
        self._delivery_client: SpekeClient | None = None
        self.exchanges: list[Exchange] = []

    # ---- building requests -------------------------------------------------------------------

    def drms(self, *wanted: DrmSystem) -> tuple[DrmSystem, ...]:
        """The selected DRM systems among ``wanted`` (in the user's order)."""
        return tuple(d for d in self.options.drm if d in wanted)

    def wants(self, packaging: Packaging) -> bool:
        return packaging in self.options.packaging

    def contract(self, check: str, version: SpekeVersion, drm: Sequence[DrmSystem],
                 packaging: Sequence[Packaging], scheme: Scheme, **kw: object
                 ) -> EncryptionContract:
        """A contract with a content id of its own per check and version."""
        if not drm:
            raise CheckSkipped("no selected DRM system fits this request")
        cid = _ID.sub("-", f"{self.options.content_id}-{check}-v{version.value}")
        return EncryptionContract(cid, tuple(drm), tuple(packaging), scheme, version,
                                  **kw)  # type: ignore[arg-type]

    def delivery_client(self) -> SpekeClient:
        if self._delivery_client is None:
            if self.delivery_key is None:
                self.delivery_key = ephemeral_delivery_key()
            self._delivery_client = copy.copy(self.client)
            self._delivery_client.delivery_key = self.delivery_key
        return self._delivery_client

    # ---- sending -----------------------------------------------------------------------------

    def send(self, check: str, version: SpekeVersion, contract: EncryptionContract, *,
             mutate: Callable[[etree._Element], None] | None = None,
             headers: dict[str, str] | None = None, negative: bool = False,
             encrypted: bool = False) -> Exchange:
        """Send ``contract`` (its document changed by ``mutate``, its headers replaced by
        ``headers``), record and return the exchange. Never raises for the server's faults."""
        client = self.delivery_client() if encrypted else self.client
        try:
            req = client.prepare(contract)
        except UsageError as exc:
            raise CheckSkipped(f"cannot build this request: {exc}") from None
        if mutate is not None:
            root = etree.fromstring(req.body)
            mutate(root)
            req = replace(req, body=etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
        if headers is not None:
            req = replace(req, headers=MappingProxyType(headers))
        ex = Exchange(check=check, version=version, request=req, negative=negative)
        t0 = time.monotonic()
        with self._labelled(f"{check}-v{version.value}"):
            try:
                body, rheaders = client.post(req)
                ex.status, ex.headers, ex.body = 200, rheaders, body
            except KeyServerHTTPError as exc:
                ex.status, ex.error = exc.status, _said(exc)
            except KeyAcquisitionError as exc:
                ex.error = str(exc)
            ex.seconds = time.monotonic() - t0
            if ex.status == 200 and not negative:
                self._interpret(ex, client)
        self.exchanges.append(ex)
        return ex

    @contextlib.contextmanager
    def _labelled(self, label: str) -> Iterator[None]:
        trace = self.client.trace
        if trace is None:
            yield
            return
        with trace.labelled(label):
            yield

    def _interpret(self, ex: Exchange, client: SpekeClient) -> None:
        try:
            ex.doc = parse_cpix(ex.body, max_bytes=client.max_response_bytes)
        except SpekePackagerError as exc:
            ex.parse_error = str(exc)
            return
        ex.keys = _keys_of(ex, client.delivery_key)
        try:
            ex.keyset = validate_response(ex.request, ex.doc, headers=ex.headers,
                                          delivery_key=client.delivery_key)
        except SpekePackagerError as exc:
            ex.validation_error = str(exc)
            ex.validation_check = exc.check if isinstance(exc, CpixValidationError) else None
            if client.trace is not None:
                client.trace.fail(client.trace.last_id, exc, "invalid")
        if client.trace is not None and ex.keys:
            client.trace.scrub(ex.keys.values())

    # ---- reading what was recorded -----------------------------------------------------------

    def of(self, version: SpekeVersion, check: str | None = None) -> list[Exchange]:
        return [e for e in self.exchanges
                if e.version is version and (check is None or e.check == check)]

    def answers(self, version: SpekeVersion) -> list[Exchange]:
        """Every answered (200, parsed) request that was meant to succeed."""
        return [e for e in self.of(version) if e.answered and not e.negative]


def _said(exc: KeyServerHTTPError) -> str:
    """The server's own account: its message, error type and request id (all redacted)."""
    text = exc.server_message or str(exc)
    if exc.error_type and exc.error_type not in text:
        text += f" [{exc.error_type}]"
    if exc.request_id:
        text += f" (request id {exc.request_id})"
    return text


def _keys_of(ex: Exchange, delivery_key: DeliveryKey | None) -> dict[str, bytes]:
    """Content keys of an answer, by lower-case KID, independent of strict validation."""
    assert ex.doc is not None
    out: dict[str, bytes] = {}
    for ck in ex.doc.content_keys:
        if ck.plain_value:
            with contextlib.suppress(SpekePackagerError):
                out[ck.kid.strip().lower()] = strict_b64decode(ck.plain_value, "PlainValue")
    if delivery_key is not None and any(ck.encrypted for ck in ex.doc.content_keys):
        with contextlib.suppress(SpekePackagerError):
            out.update({k.strip().lower(): v
                        for k, v in decrypt_content_keys(ex.doc, delivery_key).items()})
    return out


def _unsupported(ex: Exchange) -> str | None:
    """Why the server does not speak ``ex.version`` (None: it does)."""
    if not ex.version.is_v2:
        return None
    text = (ex.error or "").lower()
    if ex.status is not None and 400 <= ex.status < 500 and "version" in text:
        return f"HTTP {ex.status}: {ex.error}"
    if ex.answered and ex.doc is not None and ex.doc.version is None \
            and ex.doc.content_id is None and ex.header("x-speke-version") is None:
        return "answered a SPEKE v2 request with a SPEKE v1 document"
    return None


def _run_one(check: Check, ctx: RunContext, version: SpekeVersion) -> CheckResult:
    res = CheckResult(check=check.name, version=version.value, outcome=Outcome.PASS,
                      required=check.required, title=check.title)
    t0 = time.monotonic()
    try:
        note = check.fn(ctx, version)
        res.reason = note or ""
    except CheckWarning as w:
        res.outcome, res.reason, res.hint = Outcome.WARN, w.reason, w.hint or check.hint
    except CheckFailed as f:
        res.outcome, res.reason, res.hint = Outcome.FAIL, f.reason, f.hint or check.hint
    except NotSupported as n:
        res.outcome, res.reason = Outcome.NOT_SUPPORTED, str(n)
    except CheckSkipped as s:
        res.outcome, res.reason = Outcome.SKIPPED, str(s)
    except SpekePackagerError as exc:
        res.outcome, res.reason, res.hint = Outcome.FAIL, str(exc), check.hint
    except Exception as exc:  # a user's check with a bug must not end the run
        res.outcome = Outcome.FAIL
        res.reason = f"check crashed: {type(exc).__name__}: {exc}"
    res.reason = " ".join(res.reason.split())[:400]
    res.seconds = time.monotonic() - t0
    return res


def run_conformance(client: SpekeClient, options: ConformanceOptions | None = None
                    ) -> ConformanceReport:
    """Run every registered check (or ``options.checks``) against ``client``'s key server (the
    package's ``__init__`` registers the built-in checks)."""

    opts = options or ConformanceOptions()
    if opts.checks is not None:
        unknown = sorted(set(opts.checks) - set(REGISTRY))
        if unknown:
            raise UsageError(f"unknown conformance check(s): {', '.join(unknown)}")
    if opts.budget <= 0:
        raise UsageError("the time budget must be positive")
    ctx = RunContext(client, opts)
    chosen = [c for c in REGISTRY.values() if opts.checks is None or c.name in opts.checks]
    report = ConformanceReport(url=redact_url(client.url),
                               versions=tuple(v.value for v in opts.versions))
    t0 = time.monotonic()
    for version in opts.versions:
        results: list[CheckResult] = []
        unsupported: str | None = None
        decided = False
        for check in [c for c in chosen if c.kind == "request"] + \
                     [c for c in chosen if c.kind == "answer"]:
            if version not in check.versions:
                continue
            if unsupported is not None:
                results.append(CheckResult(check.name, version.value, Outcome.NOT_SUPPORTED,
                                           unsupported, required=check.required,
                                           title=check.title))
                continue
            results.append(_run_one(check, ctx, version))
            sent = [e for e in ctx.of(version) if not e.negative]
            if not decided and sent:
                decided = True
                unsupported = _unsupported(sent[0])
                if unsupported is not None:
                    unsupported = f"SPEKE {version.value} not supported: {unsupported}"
                    results[-1] = replace(results[-1], outcome=Outcome.NOT_SUPPORTED,
                                          reason=unsupported[:400], hint="")
        report.results.extend(results)
    report.seconds = time.monotonic() - t0
    return report
