"""Build the CPIX answer to a checked :class:`~.request.SpekeRequest`, then apply faults."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from uuid import UUID

from lxml import etree

from ..constants import (
    FAIRPLAY,
    NS_CPIX,
    NS_DS,
    NS_PSKC,
    NS_SPEKE,
    NS_XENC,
)
from ._maker import Maker
from .delivery import DocumentKeys
from .faults import Faults
from .request import AES128_IDS, RequestedDrm, SpekeRequest, SpekeRequestError
from .signaling import KeyContext, content_protection_data, pssh_box, signal_value

__all__ = ["AnswerUrls", "build_answer"]

NSMAP = {"cpix": NS_CPIX, "pskc": NS_PSKC, "enc": NS_XENC, "ds": NS_DS, "speke": NS_SPEKE}
C = Maker(namespace=NS_CPIX, nsmap=NSMAP)
P = Maker(namespace=NS_PSKC)
S = Maker(namespace=NS_SPEKE)

_ORDER = ("PSSH", "ContentProtectionData", "URIExtXKey", "HLSSignalingData:media",
          "HLSSignalingData:master", "HLSSignalingData:multiVariant",
          "SmoothStreamingProtectionHeaderData", "HDSSignalingData",
          "speke:ProtectionHeader", "speke:KeyFormat", "speke:KeyFormatVersions")


@dataclass(frozen=True, slots=True)
class AnswerUrls:
    key_url: Callable[[UUID], str]
    license_url: str
    playready_la_url: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _v1_scheme(system_id: UUID) -> str:
    if system_id == FAIRPLAY:
        return "cbcs"
    if system_id in AES128_IDS:
        return "cbc1"
    return "cenc"


def _other_kid(kid: UUID) -> UUID:
    raw = bytearray(kid.bytes)
    raw[15] ^= 0xFF
    return UUID(bytes=bytes(raw))


def _placeholder_element(name: str, value: str | None) -> etree._Element:
    if name.startswith("speke:"):
        el = S(name.split(":", 1)[1])
    elif name.startswith("HLSSignalingData:"):
        el = C.HLSSignalingData(playlist=name.split(":", 1)[1])
    else:
        el = C(name)
    if value is not None:
        el.text = value
    return el


def build_answer(
    req: SpekeRequest,
    *,
    key_for: Callable[[UUID], bytes],
    urls: AnswerUrls,
    faults: Faults,
    mac_layout: str = "B",
) -> bytes:
    """The complete CPIX answer (UTF-8 bytes). Raises :class:`SpekeRequestError` (v2) when a
    requested placeholder cannot be filled for its DRM system."""
    v2 = req.version.is_v2
    keys = {k.kid: key_for(k.kid) for k in req.keys}
    encrypted = bool(req.recipients) and not faults.has("plain-key")
    doc_keys = DocumentKeys() if req.recipients else None
    layout = faults.layout or mac_layout

    root_attrs: dict[str, str] = {}
    if v2:
        root_attrs["contentId"] = req.content_id
        root_attrs["version"] = req.cpix_version or ""
    else:
        root_attrs["id"] = req.root.get("id") or req.content_id
    if faults.has("change-content-id"):
        for name in ("contentId", "id"):
            if name in root_attrs:
                root_attrs[name] += "-changed"

    children: list[etree._Element] = []
    if doc_keys is not None:
        children.append(C.DeliveryDataList(
            *(doc_keys.delivery_data(r, layout) for r in req.recipients)))

    key_elems = []
    for i, k in enumerate(req.keys):
        attrs: dict[str, str] = {"kid": str(k.kid)}
        if k.scheme:
            scheme = k.scheme
            if faults.has("change-scheme"):
                scheme = "cenc" if scheme != "cenc" else "cbcs"
            attrs["commonEncryptionScheme"] = scheme
        if k.explicit_iv is not None:
            attrs["explicitIV"] = k.explicit_iv
        if faults.has("wrong-kid") and i == 0:
            attrs["kid"] = str(_other_kid(k.kid))
        if encrypted and doc_keys is not None:
            secret = doc_keys.secret_element(keys[k.kid], bad_mac=faults.has("bad-mac") and i == 0)
        else:
            secret = P.Secret(P.PlainValue(_b64(keys[k.kid])))
        key_elems.append(C.ContentKey(C.Data(secret), **attrs))
    if faults.has("duplicate-kid") and key_elems:
        key_elems.insert(1, copy.deepcopy(key_elems[0]))
    children.append(C.ContentKeyList(*key_elems))

    by_kid = {k.kid: k for k in req.keys}
    drm_elems = [
        _drm_element(req, d, key=keys[d.kid], scheme=by_kid[d.kid].scheme,
                     explicit_iv=by_kid[d.kid].explicit_iv, urls=urls, faults=faults)
        for d in req.drm
    ]
    children.append(C.DRMSystemList(*drm_elems))

    if req.period_list is not None:
        children.append(copy.deepcopy(req.period_list))
    if req.rule_list is not None:
        rules = copy.deepcopy(req.rule_list)
        if faults.has("swap-periods"):
            path = f"{{{NS_CPIX}}}ContentKeyUsageRule/{{{NS_CPIX}}}KeyPeriodFilter"
            filters = rules.findall(path)
            if len(filters) >= 2:
                a, b = filters[0].get("periodId") or "", filters[1].get("periodId") or ""
                filters[0].set("periodId", b)
                filters[1].set("periodId", a)
        if faults.has("change-rules"):
            first = rules.find(f"{{{NS_CPIX}}}ContentKeyUsageRule")
            if first is not None:
                first.set("intendedTrackType", "CHANGED_" + (first.get("intendedTrackType") or ""))
        children.append(rules)

    root = C.CPIX(*children, **root_attrs)
    _apply_element_faults(root, faults)
    if v2:  # no unused declarations: a v2 answer must not declare the SPEKE v1 namespace
        etree.cleanup_namespaces(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _drm_element(
    req: SpekeRequest,
    d: RequestedDrm,
    *,
    key: bytes,
    scheme: str | None,
    explicit_iv: str | None,
    urls: AnswerUrls,
    faults: Faults,
) -> etree._Element:
    v2 = req.version.is_v2
    ctx = KeyContext(
        kid=d.kid, key=key, scheme=scheme or _v1_scheme(d.system_id), system_id=d.system_id,
        content_id=req.content_id,
        explicit_iv=base64.b64decode("".join(explicit_iv.split())) if explicit_iv else None,
        key_url=urls.key_url(d.kid), license_url=urls.license_url,
        playready_la_url=urls.playready_la_url,
    )
    wanted = sorted(d.placeholders, key=_ORDER.index)
    elems = []
    for name in wanted:
        value = signal_value(ctx, name)
        if value is None and v2:
            raise SpekeRequestError(f"{name} is not supported for DRMSystem {d.system_id}")
        if name == "ContentProtectionData" and faults.has("pssh-mismatch") and value is not None:
            other = replace(ctx, kid=_other_kid(ctx.kid))
            value = _b64(content_protection_data(ctx, pssh=pssh_box(other)))
        elems.append(_placeholder_element(name, value))
    return C.DRMSystem(*elems, kid=str(d.kid), systemId=str(d.system_id))


def _apply_element_faults(root: etree._Element, faults: Faults) -> None:
    if not (faults.drop or faults.empty):
        return
    for el in list(root.iter()):
        if el is root or isinstance(el, etree._Comment):
            continue
        name = etree.QName(el).localname
        if name in faults.drop:
            parent = el.getparent()
            if parent is not None:
                parent.remove(el)
        elif name in faults.empty:
            el.text = None
            for child in list(el):
                el.remove(child)
