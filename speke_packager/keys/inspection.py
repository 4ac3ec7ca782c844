"""Offline check of any CPIX document (no request to compare with): the ``cpix`` command.

Structural and cross-reference rules of speke.md §5 that hold for every document; filled
signaling elements are decoded and checked like in an answer; encrypted keys are decrypted when
a delivery key is given (MAC checked first).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..constants import DrmSystem, Scheme, SpekeVersion
from ..errors import CpixError, CpixValidationError
from ..model import DrmSignal
from .cpix.model import CpixDocument, Placeholder
from .cpix.parse import parse_cpix
from .cpix.schema import schema_errors
from .drm_signals import canon_kid, decode_b64, decode_drm, drm_signal, fail
from .envelope import DeliveryKey, decrypt_content_keys

__all__ = ["CpixReport", "KeyReport", "inspect_cpix"]

_SCHEMES = {"cenc": Scheme.CENC, "cbcs": Scheme.CBCS, "cbc1": Scheme.AES_128,
            "cens": Scheme.CENC}


@dataclass(frozen=True)
class KeyReport:
    kid: str
    scheme: str | None
    track_type: str | None
    periods: tuple[int | None, ...]
    value: str  # 'plain', 'encrypted', 'decrypted', 'none'
    key: bytes | None = field(default=None, repr=False)
    iv: bytes | None = None
    drm: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (systemId, name, filled elements)
    signals: tuple[DrmSignal, ...] = ()


@dataclass(frozen=True)
class CpixReport:
    kind: str  # 'request' or 'response'
    speke_version: str  # '1.0', '2.0', '2.1'
    content_id: str | None
    cpix_version: str | None
    recipients: int
    keys: tuple[KeyReport, ...]
    schema_errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _speke_version(doc: CpixDocument) -> str:
    return {"2.3": "2.0", "2.4": "2.1"}.get(doc.version or "", "1.0" if doc.version is None
                                             else doc.version)


def _check_refs(doc: CpixDocument) -> dict[str, str]:
    kids = [canon_kid(ck.kid) for ck in doc.content_keys]
    dup = [k for k, n in Counter(kids).items() if n > 1]
    if dup:
        raise fail("duplicate-kid", "a KID is listed twice in ContentKeyList", dup[0])
    known = set(kids)
    for d in doc.drm_systems:
        k = canon_kid(d.kid)
        if k not in known:
            raise fail("drm-system", "DRMSystem refers to an unknown KID", k)
    pairs = Counter((canon_kid(d.kid), d.system_id.lower()) for d in doc.drm_systems)
    for (k, sid), n in pairs.items():
        if n > 1:
            raise fail("drm-system", f"{n} DRMSystem elements for system {sid}", k)
    pids = {p.id for p in doc.periods}
    for r in doc.usage_rules:
        k = canon_kid(r.kid)
        if k not in known:
            raise fail("usage-rules", "usage rule refers to an unknown KID", k)
        for pid in r.period_ids:
            if pid not in pids:
                raise fail("usage-rules", f"KeyPeriodFilter refers to undeclared period "
                                          f"{pid!r}", k)
    if doc.version is not None:
        types = [r.intended_track_type for r in doc.usage_rules]
        periods_of: dict[tuple[str | None, tuple[str, ...]], list[str]] = {}
        for r in doc.usage_rules:
            periods_of.setdefault((r.intended_track_type, r.period_ids), []).append(r.kid)
        for (tt, _), ks in periods_of.items():
            if len(ks) > 1:
                raise fail("usage-rules", f"intendedTrackType {tt!r} is used by several keys",
                           canon_kid(ks[1]))
        if any(t is None for t in types):
            raise fail("usage-rules", "a v2 usage rule has no intendedTrackType")
        schemes = {ck.common_encryption_scheme for ck in doc.content_keys}
        if len(schemes) > 1:
            raise fail("scheme", "keys use different commonEncryptionScheme values")
    return {k: k for k in kids}


def inspect_cpix(data: bytes, delivery_key: DeliveryKey | None = None) -> CpixReport:
    """Parse and check ``data``; raises :class:`CpixError`/:class:`CpixValidationError`/
    :class:`CpixIntegrityError` naming the problem."""
    doc = parse_cpix(data)
    warnings: list[str] = []
    _check_refs(doc)
    sv = _speke_version(doc)
    if sv not in ("1.0", "2.0", "2.1"):
        warnings.append(f"CPIX@version {doc.version!r} is not a SPEKE version (2.3 or 2.4)")
    schema: list[str] = []
    if doc.version in ("2.3", "2.4"):
        try:
            schema = schema_errors(data, "2.3")
        except CpixError as exc:
            schema = [str(exc)]
    filled = any(ck.value_count for ck in doc.content_keys)
    decrypted: dict[str, bytes] = {}
    if any(ck.encrypted for ck in doc.content_keys):
        if delivery_key is None:
            warnings.append("content keys are encrypted; give --delivery-key to decrypt them")
        else:
            decrypted = {canon_kid(k): v for k, v in decrypt_content_keys(doc, delivery_key)
                         .items()}
    reports: list[KeyReport] = []
    periods = {p.id: p.index for p in doc.periods}
    for ck in doc.content_keys:
        kid = canon_kid(ck.kid)
        key: bytes | None = None
        value = "none"
        if ck.secret_count > 1 or ck.value_count > 1:
            raise fail("key-value", "content key has more than one secret value", kid)
        if ck.plain_value is not None:
            key = decode_b64(ck.plain_value, "base64", "PlainValue", kid)
            value = "plain"
        elif ck.encrypted is not None:
            key = decrypted.get(kid)
            value = "decrypted" if key is not None else "encrypted"
        if key is not None and len(key) != 16:
            raise fail("key-length", f"content key is {len(key)} bytes, not 16", kid)
        iv = None
        if ck.explicit_iv is not None:
            iv = decode_b64(ck.explicit_iv, "explicit-iv", "explicitIV", kid)
            if len(iv) != 16:
                raise fail("explicit-iv", f"explicitIV is {len(iv)} bytes, not 16", kid)
            if key is not None and iv == key:
                raise fail("explicit-iv", "explicitIV equals the content key", kid)
        scheme: Scheme | None = _SCHEMES.get(ck.common_encryption_scheme or "")
        rules = doc.rule_for(kid)
        drm_info = []
        signals = []
        for d in doc.drm_for(kid):
            drm = d.drm
            present = tuple(sorted({e.placeholder for e in d.elements
                                    if e.placeholder is not None and e.text},
                                   key=list(Placeholder).index))
            drm_info.append((d.system_id.lower(), drm.label if drm else "unknown",
                             tuple(p.value for p in present)))
            if drm is None or not present:
                continue
            is_v2 = doc.version is not None
            version = _version_enum(sv) if sv in ("1.0", "2.0", "2.1") else SpekeVersion.V2_0
            if is_v2 and scheme is Scheme.CBCS and drm is DrmSystem.AES128:
                scheme = Scheme.SAMPLE_AES
            decoded = decode_drm(d, drm, present, version=version, scheme=scheme, kid=kid)
            signals.append(drm_signal(drm, decoded, version=version, scheme=scheme or Scheme.CBCS,
                                      iv=iv, want_hls=False))
        reports.append(KeyReport(
            kid=kid, scheme=ck.common_encryption_scheme,
            track_type=rules[0].intended_track_type if rules else None,
            periods=tuple(periods.get(pid) for r in rules for pid in r.period_ids),
            value=value, key=key, iv=iv, drm=tuple(drm_info), signals=tuple(signals)))
    recipients = len(doc.delivery_data)
    return CpixReport(
        kind="response" if filled else "request", speke_version=sv, content_id=doc.content_id
        or doc.id, cpix_version=doc.version, recipients=recipients, keys=tuple(reports),
        schema_errors=tuple(schema), warnings=tuple(warnings))


def _version_enum(sv: str) -> SpekeVersion:
    try:
        return SpekeVersion(sv)
    except ValueError:
        raise CpixValidationError(f"[version] unsupported CPIX version for SPEKE ({sv!r})",
                                  check="version") from None
