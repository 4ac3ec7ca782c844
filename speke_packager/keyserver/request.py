"""Read and check an incoming SPEKE request (CPIX document) on the key server side.

Failures raise :class:`SpekeRequestError` carrying the HTTP status and the plain-text reason
sent on the wire; v2 reasons are the fixed strings of the SPEKE v2 API (speke.md §11).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from uuid import UUID

from lxml import etree

from .._xml import parse_xml
from ..constants import (
    CLEARKEY_AES128,
    CLEARKEY_SAMPLE_AES,
    DASHIF_CLEARKEY,
    FAIRPLAY,
    HLS_AES128_UNOFFICIAL,
    NS_CPIX,
    NS_DS,
    NS_SPEKE,
    PLAYREADY,
    W3C_COMMON,
    WIDEVINE,
    SpekeVersion,
)
from ..errors import CpixError

__all__ = [
    "DeliveryRecipient",
    "ReceivedRequest",
    "RequestedDrm",
    "RequestedKey",
    "SpekeRequest",
    "SpekeRequestError",
    "parse_request",
    "speke_version_from_header",
]

AES128_IDS = frozenset({CLEARKEY_AES128, HLS_AES128_UNOFFICIAL, CLEARKEY_SAMPLE_AES})
CLEARKEY_IDS = frozenset({W3C_COMMON, DASHIF_CLEARKEY})
KNOWN_SYSTEMS = frozenset({WIDEVINE, PLAYREADY, FAIRPLAY}) | AES128_IDS | CLEARKEY_IDS
SCHEMES = ("cenc", "cbc1", "cens", "cbcs")
MAX_KEYS = 256

# Placeholders (local names; HLSSignalingData carries its playlist).
PLACEHOLDERS_CPIX = ("PSSH", "ContentProtectionData", "URIExtXKey", "HLSSignalingData",
                     "SmoothStreamingProtectionHeaderData", "HDSSignalingData")
PLACEHOLDERS_SPEKE = ("ProtectionHeader", "KeyFormat", "KeyFormatVersions")

MALFORMED = "Malformed encryption contract"
NOT_SUPPORTED = "Requested CPIX encryption contract not supported"
MISSING_CONTRACT = "Missing CPIX encryption contract"


class SpekeRequestError(CpixError):
    """The request cannot be answered; ``status`` and ``reason`` go on the wire."""

    def __init__(self, reason: str, *, status: int = 422) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A SPEKE request as the server received it, for :meth:`KeyServer.speke_requests`
    (requests carry no content keys)."""

    path: str
    version_header: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class RequestedKey:
    kid: UUID
    kid_text: str
    scheme: str | None
    explicit_iv: str | None  # as sent (base64 text), echoed unchanged


@dataclass(frozen=True, slots=True)
class RequestedDrm:
    kid: UUID
    system_id: UUID
    system_id_text: str
    placeholders: tuple[str, ...]  # 'PSSH', 'HLSSignalingData:media', 'speke:KeyFormat', ...


@dataclass(frozen=True, slots=True)
class DeliveryRecipient:
    id: str | None
    certificate_der: bytes
    element: etree._Element  # the request's DeliveryData (its DeliveryKey is echoed)


@dataclass(frozen=True, slots=True)
class SpekeRequest:
    version: SpekeVersion
    version_header: str | None  # exactly as received
    root: etree._Element
    content_id: str
    cpix_version: str | None
    keys: tuple[RequestedKey, ...]
    drm: tuple[RequestedDrm, ...]
    recipients: tuple[DeliveryRecipient, ...]
    period_list: etree._Element | None
    rule_list: etree._Element | None

    @property
    def scheme(self) -> str | None:
        return self.keys[0].scheme if self.keys else None


def speke_version_from_header(value: str | None) -> SpekeVersion:
    """``X-Speke-Version`` -> version; absent = v1; else 422 ``Unsupported SPEKE version``."""
    if value is None:
        return SpekeVersion.V1_0
    v = value.strip()
    if v == "2.0":
        return SpekeVersion.V2_0
    if v == "2.1":
        return SpekeVersion.V2_1
    raise SpekeRequestError("Unsupported SPEKE version")


def _cpix(name: str) -> str:
    return f"{{{NS_CPIX}}}{name}"


def _uuid(text: str | None, what: str, status: int) -> UUID:
    if text is None:
        raise SpekeRequestError(f"Missing {what}", status=status)
    try:
        return UUID(text.strip())
    except ValueError:
        raise SpekeRequestError(f"Invalid {what} {text!r}", status=status) from None


def parse_request(body: bytes, version_header: str | None, *, max_bytes: int) -> SpekeRequest:
    """Parse and check one SPEKE request; raises :class:`SpekeRequestError`."""
    version = speke_version_from_header(version_header)
    v2 = version.is_v2
    bad = 422 if v2 else 400
    try:
        root = parse_xml(body, max_bytes=max_bytes, what="CPIX request")
    except CpixError as exc:
        raise SpekeRequestError(str(exc), status=400) from None
    if root.tag != _cpix("CPIX"):
        raise SpekeRequestError(f"Not a CPIX document (root element {root.tag})", status=400)

    cpix_version = root.get("version")
    if v2:
        content_id = (root.get("contentId") or "").strip()
        if not content_id:
            raise SpekeRequestError("Missing CPIX@contentId")
        if cpix_version is None or not cpix_version.strip():
            raise SpekeRequestError("Missing CPIX@version")
        if cpix_version.strip() not in ("2.3", "2.4"):
            raise SpekeRequestError("Unsupported CPIX@version")
    else:
        content_id = (root.get("id") or root.get("contentId") or "").strip()
        if not content_id:
            raise SpekeRequestError("Missing CPIX@id", status=400)

    def single(name: str, required: bool) -> etree._Element | None:
        found = root.findall(_cpix(name))
        if len(found) > 1:
            raise SpekeRequestError(f"More than one {name}", status=bad)
        if not found and required:
            raise SpekeRequestError(
                MISSING_CONTRACT if name == "ContentKeyUsageRuleList" else f"Missing {name}",
                status=bad)
        return found[0] if found else None

    key_list = single("ContentKeyList", True)
    drm_list = single("DRMSystemList", v2)
    period_list = single("ContentKeyPeriodList", False)
    rule_list = single("ContentKeyUsageRuleList", v2)
    delivery_list = single("DeliveryDataList", False)
    assert key_list is not None

    keys = _read_keys(key_list, v2, bad)
    kids = {k.kid for k in keys}
    drm = _read_drm(drm_list, kids, bad) if drm_list is not None else ()
    if v2:
        # every key is for some DRM system: a v2 request without one is malformed (AWS's SPEKE
        # v2 verification suite, test_mandatory_elements_missing_in_request[DRMSystem])
        if not drm:
            raise SpekeRequestError("Missing DRMSystem")
        orphans = sorted(str(k) for k in kids - {d.kid for d in drm})
        if orphans:
            raise SpekeRequestError(f"Missing DRMSystem for KID {orphans[0]}")
    recipients = _read_recipients(delivery_list) if delivery_list is not None else ()
    period_ids = _read_periods(period_list, bad) if period_list is not None else set()
    if v2:
        _check_schemes(keys, drm)
        assert rule_list is not None
        _check_contract(rule_list, kids, period_ids)
    elif rule_list is not None:
        _check_v1_rules(rule_list, kids, period_ids)
    elif period_ids:
        raise SpekeRequestError("ContentKeyPeriodList without usage rules (KeyPeriodFilter)",
                                status=400)
    return SpekeRequest(
        version=version, version_header=version_header, root=root, content_id=content_id,
        cpix_version=cpix_version, keys=keys, drm=drm, recipients=recipients,
        period_list=period_list, rule_list=rule_list,
    )


def _read_keys(key_list: etree._Element, v2: bool, bad: int) -> tuple[RequestedKey, ...]:
    keys: list[RequestedKey] = []
    seen: set[UUID] = set()
    for el in key_list.findall(_cpix("ContentKey")):
        kid = _uuid(el.get("kid"), "ContentKey@kid", bad)
        if kid in seen:
            raise SpekeRequestError(f"Duplicate ContentKey@kid {kid}", status=bad)
        seen.add(kid)
        if el.find(_cpix("Data")) is not None:
            raise SpekeRequestError(f"ContentKey {kid} already carries Data", status=bad)
        iv = el.get("explicitIV")
        if iv is not None:
            try:
                raw = base64.b64decode(re.sub(r"\s+", "", iv), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 16:
                raise SpekeRequestError(f"ContentKey@explicitIV for KID {kid} is not 16 bytes",
                                        status=bad)
        scheme = el.get("commonEncryptionScheme")
        if v2 and not scheme:
            raise SpekeRequestError(
                f"Missing ContentKey@commonEncryptionScheme for KID {el.get('kid')}")
        keys.append(RequestedKey(kid=kid, kid_text=el.get("kid") or "", scheme=scheme,
                                 explicit_iv=iv))
    if not keys:
        raise SpekeRequestError("No ContentKey in the request", status=bad)
    if len(keys) > MAX_KEYS:
        raise SpekeRequestError(f"More than {MAX_KEYS} content keys", status=413)
    return tuple(keys)


def _read_drm(drm_list: etree._Element, kids: set[UUID], bad: int) -> tuple[RequestedDrm, ...]:
    out: list[RequestedDrm] = []
    seen: set[tuple[UUID, UUID]] = set()
    for el in drm_list.findall(_cpix("DRMSystem")):
        kid = _uuid(el.get("kid"), "DRMSystem@kid", bad)
        if kid not in kids:
            raise SpekeRequestError(f"DRMSystem@kid {kid} names no ContentKey", status=bad)
        sid_text = el.get("systemId") or ""
        sid = _uuid(el.get("systemId"), "DRMSystem@systemId", bad)
        if sid not in KNOWN_SYSTEMS:
            raise SpekeRequestError(f"Unsupported DRMSystem@systemId {sid}", status=bad)
        if (kid, sid) in seen:
            raise SpekeRequestError(f"Duplicate DRMSystem for KID {kid} and system {sid}",
                                    status=bad)
        seen.add((kid, sid))
        wanted: list[str] = []
        for child in el:
            if isinstance(child, etree._Comment):
                continue
            qn = etree.QName(child)
            if qn.namespace == NS_CPIX and qn.localname in PLACEHOLDERS_CPIX:
                name = qn.localname
                if name == "HLSSignalingData":
                    playlist = (child.get("playlist") or "").strip()
                    if playlist not in ("media", "master", "multiVariant"):
                        raise SpekeRequestError(
                            f"HLSSignalingData@playlist {playlist!r} is not media or master",
                            status=bad)
                    name = f"HLSSignalingData:{playlist}"
            elif qn.namespace == NS_SPEKE and qn.localname in PLACEHOLDERS_SPEKE:
                name = f"speke:{qn.localname}"
            else:
                continue  # unknown extension elements are ignored
            if name in wanted:
                raise SpekeRequestError(f"{name} requested twice for KID {kid}", status=bad)
            wanted.append(name)
        out.append(RequestedDrm(kid=kid, system_id=sid, system_id_text=sid_text,
                                placeholders=tuple(wanted)))
    return tuple(out)


def _read_recipients(delivery_list: etree._Element) -> tuple[DeliveryRecipient, ...]:
    out: list[DeliveryRecipient] = []
    for dd in delivery_list.findall(_cpix("DeliveryData")):
        cert = dd.find(f"{_cpix('DeliveryKey')}/{{{NS_DS}}}X509Data/{{{NS_DS}}}X509Certificate")
        if cert is None or not (cert.text or "").strip():
            raise SpekeRequestError("DeliveryData without DeliveryKey/X509Data/X509Certificate",
                                    status=422)
        try:
            der = base64.b64decode(re.sub(r"\s+", "", cert.text or ""), validate=True)
        except (binascii.Error, ValueError):
            raise SpekeRequestError("DeliveryKey certificate is not base64", status=422
                                    ) from None
        out.append(DeliveryRecipient(id=dd.get("id"), certificate_der=der, element=dd))
    if not out:
        raise SpekeRequestError("DeliveryDataList without DeliveryData", status=422)
    return tuple(out)


def _read_periods(period_list: etree._Element, bad: int) -> set[str]:
    ids: set[str] = set()
    for el in period_list.findall(_cpix("ContentKeyPeriod")):
        pid = el.get("id")
        if not pid:
            raise SpekeRequestError("ContentKeyPeriod without id", status=bad)
        if pid in ids:
            raise SpekeRequestError(f"Duplicate ContentKeyPeriod@id {pid}", status=bad)
        index = el.get("index")
        if index is not None and not re.match(r"^\s*[+-]?\d+\s*$", index):
            raise SpekeRequestError(f"ContentKeyPeriod@index {index!r} is not an integer",
                                    status=bad)
        ids.add(pid)
    return ids


def _check_v1_rules(rule_list: etree._Element, kids: set[UUID], period_ids: set[str]) -> None:
    """SPEKE v1 usage rules: each names a requested key; with key periods (rotation, one or
    several per request) every key has one rule whose ``KeyPeriodFilter`` names a declared
    period, and no two keys share a period."""
    ruled: dict[UUID, str] = {}
    for rule in rule_list.iter(_cpix("ContentKeyUsageRule")):
        rkid = _uuid(rule.get("kid"), "ContentKeyUsageRule@kid", 400)
        if rkid not in kids:
            raise SpekeRequestError(f"ContentKeyUsageRule@kid {rkid} names no ContentKey",
                                    status=400)
        filters = [f.get("periodId") or "" for f in rule.findall(_cpix("KeyPeriodFilter"))]
        for pid in filters:
            if pid not in period_ids:
                raise SpekeRequestError(f"KeyPeriodFilter@periodId {pid!r} names no "
                                        "ContentKeyPeriod", status=400)
        if period_ids:
            if len(filters) != 1 or rkid in ruled:
                raise SpekeRequestError(f"key {rkid} needs exactly one usage rule with one "
                                        "KeyPeriodFilter", status=400)
            ruled[rkid] = filters[0]
    if period_ids:
        if set(ruled) != kids:
            raise SpekeRequestError("every key needs a usage rule with a KeyPeriodFilter",
                                    status=400)
        if len(set(ruled.values())) != len(ruled):
            raise SpekeRequestError("two keys are for the same key period", status=400)


def _check_schemes(keys: tuple[RequestedKey, ...], drm: tuple[RequestedDrm, ...]) -> None:
    schemes = {k.scheme for k in keys}
    if len(schemes) != 1 or not schemes <= set(SCHEMES):
        raise SpekeRequestError("Non compliant ContentKey@commonEncryptionScheme combination")
    scheme = next(iter(schemes))
    for d in drm:
        ok: tuple[str, ...]
        if d.system_id == FAIRPLAY:
            ok = ("cbcs",)
        elif d.system_id in AES128_IDS:
            ok = ("cbc1", "cbcs")
        else:
            ok = ("cenc", "cbcs")
        if scheme not in ok:
            raise SpekeRequestError(
                "ContentKey@commonEncryptionScheme non compatible with DRMSystem "
                f"{d.system_id_text or d.system_id}")


def _int_attr(el: etree._Element, name: str) -> int | None:
    v = el.get(name)
    if v is None:
        return None
    if not re.match(r"^\s*\d+\s*$", v):
        raise SpekeRequestError(MALFORMED)
    return int(v)


def _check_contract(rule_list: etree._Element, kids: set[UUID], period_ids: set[str]) -> None:
    rules = rule_list.findall(_cpix("ContentKeyUsageRule"))
    if not rules:
        raise SpekeRequestError(MISSING_CONTRACT)
    types: set[str] = set()
    ruled: set[UUID] = set()
    shared = False
    video_rules = audio_rules = 0
    for rule in rules:
        kid = _uuid(rule.get("kid"), "ContentKeyUsageRule@kid", 422)
        if kid not in kids:
            raise SpekeRequestError(MALFORMED)
        ruled.add(kid)
        track = (rule.get("intendedTrackType") or "").strip()
        if not track:
            raise SpekeRequestError(MALFORMED)
        if track in types:
            raise SpekeRequestError(MALFORMED)
        types.add(track)
        for kpf in rule.findall(_cpix("KeyPeriodFilter")):
            if period_ids and kpf.get("periodId") not in period_ids:
                raise SpekeRequestError(MALFORMED)
            if not period_ids:
                raise SpekeRequestError(MALFORMED)
        if period_ids and rule.find(_cpix("KeyPeriodFilter")) is None:
            raise SpekeRequestError(MALFORMED)
        vfs = rule.findall(_cpix("VideoFilter"))
        afs = rule.findall(_cpix("AudioFilter"))
        if not vfs and not afs:
            raise SpekeRequestError(MISSING_CONTRACT)
        for vf in vfs:
            lo, hi = _int_attr(vf, "minPixels"), _int_attr(vf, "maxPixels")
            if lo is not None and hi is not None and lo > hi:
                raise SpekeRequestError(MALFORMED)
        for af in afs:
            lo, hi = _int_attr(af, "minChannels"), _int_attr(af, "maxChannels")
            if lo is not None and hi is not None and lo > hi:
                raise SpekeRequestError(MALFORMED)
        if track == "ALL":
            shared = True
            bare = all(not f.attrib for f in (*vfs, *afs))
            if len(vfs) != 1 or len(afs) != 1 or not bare:
                raise SpekeRequestError(NOT_SUPPORTED)
        video_rules += bool(vfs)
        audio_rules += bool(afs)
    if shared and len(rules) > 1:
        raise SpekeRequestError(NOT_SUPPORTED)
    if ruled != kids:
        raise SpekeRequestError(MISSING_CONTRACT)
