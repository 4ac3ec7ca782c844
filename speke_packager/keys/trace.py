"""A redacted trace of SPEKE exchanges: the support bundle a user sends to a DRM vendor.

``SpekeClient(url, trace=TraceRecorder(dir))`` (CLI: ``--trace DIR``) saves every POST, retries
included, as ``NNN-<label>-request.xml`` / ``NNN-<label>-answer.xml`` (or ``.txt`` when the answer
is not XML) and ``NNN-<label>.json`` (status, headers, timings, attempt, the server's request id,
the result), and keeps ``summary.json`` up to date after each exchange.

Masked, structure kept: ``pskc:PlainValue`` (content keys), every ``enc:CipherValue`` (encrypted
content keys, the RSA-wrapped document and MAC keys), every ``pskc:ValueMAC``, credentials in
headers (``Authorization``, tokens, API keys, cookies, any header not known to be harmless) and
URL query strings / user info. KIDs, DRM signaling, certificates and explicit IVs stay: a vendor
needs them. As a last line of defence, :meth:`TraceRecorder.scrub` rewrites the bundle without
any given key value in hex, base64 or UUID form; the client calls it with every key it obtained.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from .._redact import redact_text, redact_url
from .._xml import parse_xml
from ..constants import NS_PSKC, NS_XENC
from ..errors import OutputError, SpekePackagerError
from .server_error import request_id_of

__all__ = ["MASK", "TraceRecorder", "redact_url"]

MASK = "MASKED"
_SAFE_HEADERS = frozenset({
    "accept", "accept-encoding", "connection", "content-length", "content-type", "date", "host",
    "server", "user-agent", "x-speke-version", "x-speke-user-agent", "speke-user-agent",
    "x-amz-date", "x-amz-content-sha256", "x-amzn-requestid", "x-amz-request-id",
    "x-amz-apigw-id", "x-amzn-errortype", "x-axdrm-errormessage", "x-request-id",
    "x-correlation-id", "request-id", "retry-after", "via", "x-cache", "transfer-encoding",
    "vary", "x-fault",
})
_KEEP_SCHEME = re.compile(r"^\s*(\S+)\s")
_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def _version() -> str:
    try:
        return importlib.metadata.version("speke-packager")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _mask_header(name: str, value: str) -> str:
    if name.lower() in _SAFE_HEADERS:
        return value
    m = _KEEP_SCHEME.match(value)
    if name.lower() == "authorization" and m:
        return f"{m.group(1)} {MASK}"
    return MASK


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: _mask_header(k, v) for k, v in headers.items()}


def mask_cpix(body: bytes) -> tuple[bytes, bool]:
    """The document with key material masked, and whether it was XML at all."""
    try:
        root = parse_xml(body, what="traced document")
    except SpekePackagerError:
        return redact_text(body.decode("utf-8", errors="replace")).encode("utf-8"), False
    for tag in (f"{{{NS_PSKC}}}PlainValue", f"{{{NS_XENC}}}CipherValue",
                f"{{{NS_PSKC}}}ValueMAC"):
        for el in root.iter(tag):
            if (el.text or "").strip():
                el.text = MASK
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8")), True


def _forms(key: bytes) -> set[str]:
    """Every textual form of a 16-byte key a bundle could hold."""
    b64 = base64.b64encode(key).decode()
    url = base64.urlsafe_b64encode(key).decode()
    forms = {key.hex(), key.hex().upper(), b64, b64.rstrip("="), url, url.rstrip("=")}
    if len(key) == 16:
        u = str(uuid.UUID(bytes=key))
        forms |= {u, u.upper(), str(uuid.UUID(bytes_le=key))}
    return {f for f in forms if len(f) >= 16}


@dataclass
class _Exchange:
    id: int
    label: str
    started: str
    attempt: int
    url: str
    request_headers: dict[str, str]
    request_file: str
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    answer_file: str | None = None
    duration_ms: float = 0.0
    request_id: str | None = None
    result: str = "pending"  # ok | http-error | transport-error | invalid
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "label": self.label, "started": self.started,
            "attempt": self.attempt, "url": self.url, "status": self.status,
            "duration_ms": round(self.duration_ms, 1), "request_id": self.request_id,
            "speke_version_sent": self.request_headers.get("x-speke-version"),
            "speke_version_answered": next((v for k, v in self.response_headers.items()
                                            if k.lower() == "x-speke-version"), None),
            "result": self.result, "error": self.error,
            "request_file": self.request_file, "answer_file": self.answer_file,
            "request_headers": self.request_headers, "response_headers": self.response_headers,
        }


class TraceRecorder:
    """Writes a redacted support bundle into ``directory`` (created if needed, must be empty).
    Thread-safe."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the trace directory {self.directory}: "
                              f"{exc.strerror}") from None
        if not self.directory.is_dir():
            raise OutputError(f"trace path {self.directory} is not a directory")
        if any(self.directory.iterdir()):  # never mix two runs in one bundle
            raise OutputError(f"trace directory {self.directory} is not empty")
        self._lock = threading.Lock()
        self._local = threading.local()
        self._exchanges: list[_Exchange] = []
        self._secrets: set[str] = set()
        self._files: list[Path] = []
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self._write_summary()

    # ---- labels ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def labelled(self, label: str) -> Iterator[None]:
        """Name the exchanges made inside the block (e.g. a conformance check)."""
        old = getattr(self._local, "label", None)
        self._local.label = _LABEL.sub("-", label)[:60] or "speke"
        try:
            yield
        finally:
            self._local.label = old

    @property
    def last_id(self) -> int | None:
        """The id of the last exchange started by this thread."""
        return getattr(self._local, "last", None)

    # ---- recording (called by SpekeClient) ---------------------------------------------------

    def begin(self, url: str, headers: Mapping[str, str], body: bytes, attempt: int) -> int:
        with self._lock:
            n = len(self._exchanges) + 1
            label = getattr(self._local, "label", None) or "speke"
            name = f"{n:03d}-{label}"
            masked, _ = mask_cpix(body)
            req_file = f"{name}-request.xml"
            self._write(req_file, masked)
            ex = _Exchange(id=n, label=label, attempt=attempt, url=redact_url(url),
                           started=datetime.now(UTC).isoformat(timespec="milliseconds"),
                           request_headers=mask_headers(headers), request_file=req_file)
            self._exchanges.append(ex)
            self._local.last = n
            self._local.t0 = time.monotonic()
            self._write_meta(ex)
            self._write_summary()
            return n

    def answer(self, n: int, status: int, headers: Mapping[str, str], body: bytes) -> None:
        with self._lock:
            ex = self._exchanges[n - 1]
            ex.duration_ms = (time.monotonic() - getattr(self._local, "t0", time.monotonic())
                              ) * 1000
            ex.status = status
            ex.response_headers = mask_headers(headers)
            ex.request_id = request_id_of(headers)
            masked, is_xml = mask_cpix(body)
            ex.answer_file = f"{n:03d}-{ex.label}-answer.{'xml' if is_xml else 'txt'}"
            self._write(ex.answer_file, masked)
            ex.result = "ok" if status == 200 else "http-error"
            self._write_meta(ex)
            self._write_summary()

    def fail(self, n: int | None, error: BaseException, result: str) -> None:
        if n is None:
            return
        with self._lock:
            ex = self._exchanges[n - 1]
            if ex.status is None:
                ex.duration_ms = (time.monotonic() - getattr(self._local, "t0",
                                                             time.monotonic())) * 1000
            ex.result = result
            ex.error = redact_text(" ".join(str(error).split()))[:500]
            self._write_meta(ex)
            self._write_summary()

    def scrub(self, keys: Iterable[bytes]) -> None:
        """Remove every textual form of ``keys`` from the files written so far (and later)."""
        with self._lock:
            new = set().union(*(_forms(k) for k in keys)) - self._secrets
            if not new:
                return
            self._secrets |= new
            for path in self._files:
                self._rewrite(path)

    # ---- files -------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, MASK)
        return text

    def _write(self, name: str, data: bytes) -> None:
        path = self.directory / name
        text = self._clean(data.decode("utf-8", errors="replace"))
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write the trace file {path}: {exc.strerror}") from None
        if path not in self._files:
            self._files.append(path)

    def _rewrite(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
            cleaned = self._clean(text)
            if cleaned != text:
                path.write_text(cleaned, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot rewrite the trace file {path}: {exc.strerror}") from None

    def _write_meta(self, ex: _Exchange) -> None:
        self._write(f"{ex.id:03d}-{ex.label}.json",
                    json.dumps(ex.to_json(), indent=2).encode())

    def _write_summary(self) -> None:
        by_result: dict[str, int] = {}
        for ex in self._exchanges:
            by_result[ex.result] = by_result.get(ex.result, 0) + 1
        summary = {
            "tool": f"speke-packager {_version()}",
            "started": self.started,
            "exchanges": len(self._exchanges),
            "results": by_result,
            "retries": sum(1 for ex in self._exchanges if ex.attempt > 1),
            "request_ids": [ex.request_id for ex in self._exchanges if ex.request_id],
            "masked": "content keys (PlainValue), encrypted keys, document and MAC keys "
                      "(CipherValue), ValueMAC, credentials in headers and URL queries; KIDs, "
                      "signaling, certificates and explicit IVs are kept",
            "items": [ex.to_json() for ex in self._exchanges],
        }
        self._write("summary.json", json.dumps(summary, indent=2).encode())
