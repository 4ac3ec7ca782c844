"""Parse any CPIX document (v1/CPIX 2.0 with speke:, 2.3, 2.4; request or response).

Parsing is hardened (:func:`speke_packager._xml.parse_xml`: no DTD, no entities, no network, size
cap) and tolerant of order and prefixes; strict answer checks live in ``keys/validate.py``.
"""

from __future__ import annotations

from lxml import etree

from ..._xml import MAX_XML_BYTES, parse_xml
from ...constants import NS_CPIX, NS_DS, NS_PSKC, NS_SPEKE, NS_XENC
from ...errors import CpixError
from ...model import AudioFilter, VideoFilter
from .model import (
    CpixContentKey,
    CpixDeliveryData,
    CpixDocument,
    CpixDrmSystem,
    CpixPeriod,
    CpixUsageRule,
    EncryptedSecret,
    Placeholder,
    SignalElement,
)

__all__ = ["parse_cpix"]

_LISTS = (
    "DeliveryDataList",
    "ContentKeyList",
    "DRMSystemList",
    "ContentKeyPeriodList",
    "ContentKeyUsageRuleList",
)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _c(name: str) -> str:
    return _q(NS_CPIX, name)


def _text(el: etree._Element | None) -> str:
    if el is None:
        return ""
    return "".join(str(t) for t in el.itertext()).strip()


def _children(el: etree._Element, tag: str) -> list[etree._Element]:
    return [ch for ch in el if isinstance(ch.tag, str) and ch.tag == tag]


def _first(el: etree._Element, tag: str) -> etree._Element | None:
    found = _children(el, tag)
    return found[0] if found else None


def _int(el: etree._Element, attr: str, where: str) -> int | None:
    v = el.get(attr)
    if v is None:
        return None
    try:
        return int(v.strip())
    except ValueError:
        raise CpixError(f"{where}/@{attr} is not an integer: {v[:40]!r}", xpath=where) from None


def _float(el: etree._Element, attr: str, where: str) -> float | None:
    v = el.get(attr)
    if v is None:
        return None
    try:
        return float(v.strip())
    except ValueError:
        raise CpixError(f"{where}/@{attr} is not a number: {v[:40]!r}", xpath=where) from None


def _bool(el: etree._Element, attr: str, where: str) -> bool | None:
    v = el.get(attr)
    if v is None:
        return None
    t = v.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise CpixError(f"{where}/@{attr} is not a boolean: {v[:40]!r}", xpath=where)


def _encrypted_value(holder: etree._Element) -> EncryptedSecret | None:
    """``holder`` has enc:EncryptionMethod + enc:CipherData directly (layout A) or a
    pskc:EncryptedValue child (layout B / PSKC secrets)."""
    ev = _first(holder, _q(NS_PSKC, "EncryptedValue"))
    target = ev if ev is not None else holder
    cd = _first(target, _q(NS_XENC, "CipherData"))
    if cd is None:
        return None
    method = _first(target, _q(NS_XENC, "EncryptionMethod"))
    mac = _first(holder, _q(NS_PSKC, "ValueMAC"))
    return EncryptedSecret(
        algorithm=method.get("Algorithm") if method is not None else None,
        cipher_value=_text(_first(cd, _q(NS_XENC, "CipherValue"))),
        value_mac=_text(mac) if mac is not None else None,
    )


def _secret(data: etree._Element | None) -> etree._Element | None:
    if data is None:
        return None
    return _first(data, _q(NS_PSKC, "Secret"))


def _delivery_data(el: etree._Element) -> CpixDeliveryData:
    cert = None
    dk = _first(el, _c("DeliveryKey"))
    if dk is not None:
        x509 = _first(dk, _q(NS_DS, "X509Data"))
        if x509 is not None:
            c = _first(x509, _q(NS_DS, "X509Certificate"))
            cert = _text(c) if c is not None else None
    doc_key_alg = None
    doc_key = None
    dkey = _first(el, _c("DocumentKey"))
    if dkey is not None:
        doc_key_alg = dkey.get("Algorithm")
        sec = _secret(_first(dkey, _c("Data")))
        if sec is not None:
            doc_key = _encrypted_value(sec)
    mac_alg = None
    mac_key = None
    mm = _first(el, _c("MACMethod"))
    if mm is not None:
        mac_alg = mm.get("Algorithm")
        key_el = _first(mm, _c("Key"))
        if key_el is None:
            key_el = _first(mm, _c("MACKey"))
        if key_el is not None:
            mac_key = _encrypted_value(key_el)
    return CpixDeliveryData(
        id=el.get("id"),
        certificate_b64=cert,
        document_key_algorithm=doc_key_alg,
        document_key=doc_key,
        mac_algorithm=mac_alg,
        mac_key=mac_key,
        has_mac_method=mm is not None,
    )


def _content_key(el: etree._Element, where: str) -> CpixContentKey:
    kid = el.get("kid")
    if kid is None:
        raise CpixError(f"{where} has no kid attribute", xpath=where)
    datas = _children(el, _c("Data"))
    secrets = [s for d in datas for s in _children(d, _q(NS_PSKC, "Secret"))]
    plain = None
    enc = None
    count = 0
    if secrets:
        sec = secrets[0]
        pv = _children(sec, _q(NS_PSKC, "PlainValue"))
        ev = _children(sec, _q(NS_PSKC, "EncryptedValue"))
        count = len(pv) + len(ev)
        if pv:
            plain = _text(pv[0])
        if ev:
            enc = _encrypted_value(sec)
    return CpixContentKey(
        kid=kid.strip(),
        common_encryption_scheme=el.get("commonEncryptionScheme"),
        explicit_iv=el.get("explicitIV"),
        secret_count=len(secrets),
        plain_value=plain,
        encrypted=enc,
        value_count=count,
    )


_CPIX_PLACEHOLDERS = {
    "PSSH": Placeholder.PSSH,
    "ContentProtectionData": Placeholder.CONTENT_PROTECTION_DATA,
    "URIExtXKey": Placeholder.URI_EXT_X_KEY,
    "SmoothStreamingProtectionHeaderData": Placeholder.SMOOTH_STREAMING,
}
_SPEKE_PLACEHOLDERS = {
    "ProtectionHeader": Placeholder.SPEKE_PROTECTION_HEADER,
    "KeyFormat": Placeholder.SPEKE_KEY_FORMAT,
    "KeyFormatVersions": Placeholder.SPEKE_KEY_FORMAT_VERSIONS,
}


def _signal(ch: etree._Element) -> SignalElement:
    qn = etree.QName(ch)
    ns = qn.namespace or ""
    name = qn.localname
    playlist = ch.get("playlist")
    ph: Placeholder | None = None
    if ns == NS_CPIX:
        if name == "HLSSignalingData":
            p = (playlist or "media").strip()
            ph = Placeholder.HLS_MASTER if p in ("master", "multiVariant") else (
                Placeholder.HLS_MEDIA if p == "media" else None)
        else:
            ph = _CPIX_PLACEHOLDERS.get(name)
    elif ns == NS_SPEKE:
        ph = _SPEKE_PLACEHOLDERS.get(name)
    return SignalElement(namespace=ns, name=name, text=_text(ch), playlist=playlist,
                         placeholder=ph)


def _drm_system(el: etree._Element, where: str) -> CpixDrmSystem:
    kid = el.get("kid")
    sid = el.get("systemId")
    if kid is None or sid is None:
        raise CpixError(f"{where} needs kid and systemId attributes", xpath=where)
    elements = tuple(_signal(ch) for ch in el if isinstance(ch.tag, str))
    return CpixDrmSystem(kid=kid.strip(), system_id=sid.strip(), elements=elements)


def _usage_rule(el: etree._Element, where: str) -> CpixUsageRule:
    kid = el.get("kid")
    if kid is None:
        raise CpixError(f"{where} has no kid attribute", xpath=where)
    pids = tuple((f.get("periodId") or "").strip() for f in _children(el, _c("KeyPeriodFilter")))
    vfs = []
    for i, f in enumerate(_children(el, _c("VideoFilter")), 1):
        w = f"{where}/VideoFilter[{i}]"
        vfs.append(VideoFilter(
            min_pixels=_int(f, "minPixels", w), max_pixels=_int(f, "maxPixels", w),
            min_fps=_float(f, "minFps", w), max_fps=_float(f, "maxFps", w),
            hdr=_bool(f, "hdr", w)))
    afs = []
    for i, f in enumerate(_children(el, _c("AudioFilter")), 1):
        w = f"{where}/AudioFilter[{i}]"
        afs.append(AudioFilter(min_channels=_int(f, "minChannels", w),
                               max_channels=_int(f, "maxChannels", w)))
    return CpixUsageRule(kid=kid.strip(), intended_track_type=el.get("intendedTrackType"),
                         period_ids=pids, video_filters=tuple(vfs), audio_filters=tuple(afs))


def parse_cpix(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> CpixDocument:
    """Parse a CPIX document. Raises :class:`~speke_packager.errors.CpixError` on malformed XML,
    a DTD/entity payload, a wrong root element or malformed attributes."""
    root = parse_xml(data, max_bytes=max_bytes, what="CPIX document")
    if root.tag != _c("CPIX"):
        raise CpixError(f"root element is {root.tag!r}, not {{{NS_CPIX}}}CPIX", xpath="/")
    counts = {name: len(_children(root, _c(name))) for name in _LISTS}

    def items(list_name: str, item: str) -> list[tuple[etree._Element, str]]:
        out = []
        for lst in _children(root, _c(list_name)):
            for i, el in enumerate(_children(lst, _c(item)), 1):
                out.append((el, f"/CPIX/{list_name}/{item}[{i}]"))
        return out

    periods = []
    for el, where in items("ContentKeyPeriodList", "ContentKeyPeriod"):
        periods.append(CpixPeriod(
            id=el.get("id"), index=_int(el, "index", where), start=el.get("start"),
            end=el.get("end"), start_offset=el.get("startOffset"),
            end_offset=el.get("endOffset")))
    return CpixDocument(
        id=root.get("id"),
        content_id=root.get("contentId"),
        version=root.get("version"),
        delivery_data=tuple(_delivery_data(el) for el, _ in
                            items("DeliveryDataList", "DeliveryData")),
        content_keys=tuple(_content_key(el, w) for el, w in
                           items("ContentKeyList", "ContentKey")),
        drm_systems=tuple(_drm_system(el, w) for el, w in items("DRMSystemList", "DRMSystem")),
        periods=tuple(periods),
        usage_rules=tuple(_usage_rule(el, w) for el, w in
                          items("ContentKeyUsageRuleList", "ContentKeyUsageRule")),
        list_counts=counts,
        has_delivery_data_list=counts["DeliveryDataList"] > 0,
    )

