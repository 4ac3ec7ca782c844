"""Build CPIX request documents for SPEKE v1.0 (CPIX 2.0 + speke:), v2.0 (2.3) and v2.1 (2.4).

Elements come out in schema order with empty placeholders for the server to fill (speke.md §3).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from lxml import etree

from ...constants import (
    NS_CPIX,
    NS_DS,
    NS_PSKC,
    NS_SPEKE,
    NS_XENC,
    DrmSystem,
    Scheme,
    SpekeVersion,
    request_system_id,
)
from ...model import AudioFilter, KeyPeriod, VideoFilter
from .model import Placeholder, RequestedKey

__all__ = ["build_request_xml"]


def _num(v: int | float | None) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _sub(parent: etree._Element, ns: str, name: str, **attrs: str | None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{name}")
    for k, v in attrs.items():
        if v is not None:
            el.set(k, v)
    return el


def _video_filter(rule: etree._Element, f: VideoFilter) -> None:
    _sub(rule, NS_CPIX, "VideoFilter",
         minPixels=_num(f.min_pixels), maxPixels=_num(f.max_pixels),
         minFps=_num(f.min_fps), maxFps=_num(f.max_fps),
         hdr=None if f.hdr is None else ("true" if f.hdr else "false"))


def _audio_filter(rule: etree._Element, f: AudioFilter) -> None:
    _sub(rule, NS_CPIX, "AudioFilter",
         minChannels=_num(f.min_channels), maxChannels=_num(f.max_channels))


def _period_el(lst: etree._Element, p: KeyPeriod, version: SpekeVersion) -> None:
    el = _sub(lst, NS_CPIX, "ContentKeyPeriod", id=p.period_id, index=str(p.index))
    if version is SpekeVersion.V2_1:
        for k, v in (("start", p.start), ("end", p.end)):
            if v is not None:
                el.set(k, v)


def _placeholder_el(drm_el: etree._Element, ph: Placeholder) -> None:
    if ph is Placeholder.HLS_MEDIA:
        _sub(drm_el, NS_CPIX, "HLSSignalingData", playlist="media")
    elif ph is Placeholder.HLS_MASTER:
        _sub(drm_el, NS_CPIX, "HLSSignalingData", playlist="master")
    else:
        _sub(drm_el, NS_SPEKE if ph.is_speke else NS_CPIX, ph.local_name)


def build_request_xml(
    *,
    content_id: str,
    version: SpekeVersion,
    scheme: Scheme,
    keys: Sequence[RequestedKey],
    placeholders: Mapping[DrmSystem, Sequence[Placeholder]],
    delivery_cert_der: bytes | None = None,
    delivery_data_id: str | None = None,
) -> bytes:
    """The request document as UTF-8 bytes with an XML declaration."""
    nsmap: dict[str, str] = {"cpix": NS_CPIX, "pskc": NS_PSKC}
    if not version.is_v2:
        nsmap["speke"] = NS_SPEKE
    if delivery_cert_der:
        nsmap["ds"] = NS_DS
        nsmap["enc"] = NS_XENC
    root = etree.Element(f"{{{NS_CPIX}}}CPIX", nsmap=nsmap)
    if version.is_v2:
        root.set("contentId", content_id)
        root.set("version", version.cpix_version or "")
    else:
        root.set("id", content_id)

    if delivery_cert_der:
        ddl = _sub(root, NS_CPIX, "DeliveryDataList")
        dd = _sub(ddl, NS_CPIX, "DeliveryData", id=delivery_data_id)
        x509 = _sub(_sub(dd, NS_CPIX, "DeliveryKey"), NS_DS, "X509Data")
        _sub(x509, NS_DS, "X509Certificate").text = base64.b64encode(delivery_cert_der).decode()

    ckl = _sub(root, NS_CPIX, "ContentKeyList")
    for k in keys:
        _sub(ckl, NS_CPIX, "ContentKey", kid=str(k.kid),
             commonEncryptionScheme=scheme.cpix_scheme if version.is_v2 else None,
             explicitIV=None if k.explicit_iv is None
             else base64.b64encode(k.explicit_iv).decode("ascii"))

    dsl = _sub(root, NS_CPIX, "DRMSystemList")
    for k in keys:
        for drm, phs in placeholders.items():
            sid = request_system_id(drm, scheme.cpix_scheme)
            el = _sub(dsl, NS_CPIX, "DRMSystem", kid=str(k.kid), systemId=str(sid))
            for ph in phs:
                _placeholder_el(el, ph)

    periods: list[KeyPeriod] = []
    for k in keys:
        if k.period is not None and k.period not in periods:
            periods.append(k.period)
    if periods:
        pl = _sub(root, NS_CPIX, "ContentKeyPeriodList")
        for p in periods:
            _period_el(pl, p, version)

    if version.is_v2 or periods:
        rules = _sub(root, NS_CPIX, "ContentKeyUsageRuleList")
        for k in keys:
            rule = _sub(rules, NS_CPIX, "ContentKeyUsageRule", kid=str(k.kid),
                        intendedTrackType=k.track_type if version.is_v2 else None)
            if k.period is not None:
                _sub(rule, NS_CPIX, "KeyPeriodFilter", periodId=k.period.period_id)
            if version.is_v2:
                for vf in k.video_filters:
                    _video_filter(rule, vf)
                for af in k.audio_filters:
                    _audio_filter(rule, af)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
