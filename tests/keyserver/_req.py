"""Test-side SPEKE request builder (lxml), independent of speke_packager.keys."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence

from lxml import etree
from lxml.builder import ElementMaker

CPIX = "urn:dashif:org:cpix"
PSKC = "urn:ietf:params:xml:ns:keyprov:pskc"
DS = "http://www.w3.org/2000/09/xmldsig#"
SPEKE = "urn:aws:amazon:com:speke"
C = ElementMaker(namespace=CPIX, nsmap={"cpix": CPIX, "pskc": PSKC, "ds": DS, "speke": SPEKE})
D = ElementMaker(namespace=DS)
S = ElementMaker(namespace=SPEKE)

WIDEVINE = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
PLAYREADY = "9a04f079-9840-4286-ab92-e65be0885f95"
FAIRPLAY = "94ce86fb-07ff-4f43-adb8-93d2fa968ca2"
CLEARKEY = "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"
DASHIF_CLEARKEY = "e2719d58-a985-b3c9-781a-b030af78d30e"
AES128 = "3ea8778f-7742-4bf9-b18b-e834b2acbd47"
AES128_V1 = "81376844-f976-481e-a84e-cc25d39b0b33"

KID_V = uuid.UUID("0b7e4a52-1c3d-4e5f-8a9b-00000000a001")
KID_A = uuid.UUID("0b7e4a52-1c3d-4e5f-8a9b-00000000a002")

V2_PLACEHOLDERS = {
    WIDEVINE: ("PSSH", "ContentProtectionData", "media", "master"),
    PLAYREADY: ("PSSH", "ContentProtectionData", "media", "master"),
    FAIRPLAY: ("media", "master"),
    CLEARKEY: ("PSSH", "ContentProtectionData", "media", "master"),
    DASHIF_CLEARKEY: ("PSSH", "ContentProtectionData"),
    AES128: ("media", "master"),
}


def _placeholders(names: Sequence[str]) -> list[etree._Element]:
    out = []
    for n in names:
        if n in ("media", "master", "multiVariant"):
            out.append(C.HLSSignalingData(playlist=n))
        elif n.startswith("speke:"):
            out.append(S(n[6:]))
        else:
            out.append(C(n))
    return out


def v2_request(*, content_id: str = "chan-7", version: str = "2.3", scheme: str | None = "cbcs",
               systems: Sequence[str] = (WIDEVINE,), placeholders: dict[str, Sequence[str]] | None
               = None, kids: Sequence[tuple[uuid.UUID, str]] = ((KID_V, "VIDEO"), (KID_A, "AUDIO")),
               period: int | None = None, cert_der: Sequence[bytes] = (),
               explicit_iv: bytes | None = None, rules: Sequence[etree._Element] | None = None,
               ) -> bytes:
    ph = {**V2_PLACEHOLDERS, **(placeholders or {})}
    children: list[etree._Element] = []
    if cert_der:
        children.append(C.DeliveryDataList(*(
            C.DeliveryData(C.DeliveryKey(D.X509Data(D.X509Certificate(
                base64.b64encode(der).decode()))), id=f"recipient{i}")
            for i, der in enumerate(cert_der))))
    keys = []
    for kid, _ in kids:
        attrs = {"kid": str(kid)}
        if scheme is not None:
            attrs["commonEncryptionScheme"] = scheme
        if explicit_iv is not None:
            attrs["explicitIV"] = base64.b64encode(explicit_iv).decode()
        keys.append(C.ContentKey(**attrs))
    children.append(C.ContentKeyList(*keys))
    children.append(C.DRMSystemList(*(
        C.DRMSystem(*_placeholders(ph[sid]), kid=str(kid), systemId=sid)
        for sid in systems for kid, _ in kids)))
    if period is not None:
        children.append(C.ContentKeyPeriodList(
            C.ContentKeyPeriod(id=f"keyPeriod_{period}", index=str(period))))
    if rules is None:
        rules = []
        for kid, track in kids:
            filt = [C.KeyPeriodFilter(periodId=f"keyPeriod_{period}")] if period is not None else []
            if track == "ALL":
                filt += [C.VideoFilter(), C.AudioFilter()]
            elif "AUDIO" in track:
                filt.append(C.AudioFilter())
            else:
                filt.append(C.VideoFilter())
            rules.append(C.ContentKeyUsageRule(*filt, kid=str(kid), intendedTrackType=track))
    children.append(C.ContentKeyUsageRuleList(*rules))
    root = C.CPIX(*children, contentId=content_id, version=version)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def v1_request(*, content_id: str = "chan-7", kid: uuid.UUID = KID_V,
               systems: dict[str, Sequence[str]] | None = None, period: int | None = 1700,
               cert_der: Sequence[bytes] = ()) -> bytes:
    systems = systems or {WIDEVINE: ("PSSH",),
                          FAIRPLAY: ("URIExtXKey", "speke:KeyFormat", "speke:KeyFormatVersions")}
    children: list[etree._Element] = []
    if cert_der:
        children.append(C.DeliveryDataList(*(
            C.DeliveryData(C.DeliveryKey(D.X509Data(D.X509Certificate(
                base64.b64encode(der).decode()))), id=f"recipient{i}")
            for i, der in enumerate(cert_der))))
    children.append(C.ContentKeyList(C.ContentKey(kid=str(kid))))
    children.append(C.DRMSystemList(*(C.DRMSystem(*_placeholders(names), kid=str(kid), systemId=sid)
                                      for sid, names in systems.items())))
    if period is not None:
        children.append(C.ContentKeyPeriodList(
            C.ContentKeyPeriod(id=f"keyPeriod_{period}", index=str(period))))
        children.append(C.ContentKeyUsageRuleList(C.ContentKeyUsageRule(
            C.KeyPeriodFilter(periodId=f"keyPeriod_{period}"), kid=str(kid))))
    root = C.CPIX(*children, id=content_id)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
