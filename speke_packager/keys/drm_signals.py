"""One CPIX ``DRMSystem``'s signaling decoded and checked (speke.md §5): pssh, PlayReady
objects, ContentProtectionData, HLS signaling and the SPEKE v1 elements, turned into a
:class:`~speke_packager.model.DrmSignal` (v1 answers take the v2 shape here).

Shared by the answer check (:mod:`.validate`) and the offline document check
(:mod:`.inspection`), and by the conformance checks (the same rules). Every failed check raises
:class:`~speke_packager.errors.CpixValidationError` (see :func:`fail`).
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from uuid import UUID

from .._hls_attrs import (
    AttrValue,
    Quoted,
    format_attribute_list,
    parse_attribute_list,
    parse_hex,
)
from .._xml import parse_xml
from ..constants import (
    DASHIF_CLEARKEY,
    DRM_KEYFORMAT,
    KEYFORMAT_CLEARKEY,
    KEYFORMAT_FAIRPLAY,
    KEYFORMAT_IDENTITY,
    NS_CENC,
    NS_MSPR,
    W3C_COMMON,
    DrmSystem,
    Scheme,
    SpekeVersion,
)
from ..drm.pssh import PsshError, parse_pssh
from ..errors import CpixError, CpixValidationError, ManifestError
from ..model import DrmSignal
from .cpix.model import CpixDrmSystem, Placeholder

__all__ = [
    "DecodedDrm",
    "build_hls_line",
    "canon_kid",
    "check_hls",
    "check_playready_object",
    "cpd_pssh",
    "decode_b64",
    "decode_drm",
    "drm_signal",
    "fail",
    "hls_iv",
    "parse_hls_attributes",
]

_V1_HLS = (Placeholder.URI_EXT_X_KEY, Placeholder.SPEKE_KEY_FORMAT,
           Placeholder.SPEKE_KEY_FORMAT_VERSIONS)
_NOT_V2 = (*_V1_HLS, Placeholder.SPEKE_PROTECTION_HEADER)


def fail(check: str, message: str, kid: str | None = None, xpath: str | None = None
         ) -> CpixValidationError:
    who = f" (KID {kid})" if kid else ""
    return CpixValidationError(f"[{check}] {message}{who}", check=check, kid=kid, xpath=xpath)


def decode_b64(text: str, check: str, what: str, kid: str | None = None) -> bytes:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise fail(check, f"{what} is not valid base64", kid) from None


def canon_kid(text: str, kid_for_msg: str | None = None) -> str:
    try:
        u = UUID(text)
    except ValueError:
        raise fail("kid", f"KID {text[:60]!r} is not a UUID", kid_for_msg) from None
    if len(text.strip()) != 36:
        raise fail("kid", f"KID {text[:60]!r} is not in 8-4-4-4-12 form", kid_for_msg)
    return str(u)


# ---- PlayReady object (structural) ---------------------------------------------------------


def check_playready_object(data: bytes, *, kid: str | None = None, what: str = "PRO") -> None:
    """u32le length = size, u16le record count, a type-1 record holding UTF-16LE <WRMHEADER."""
    if len(data) < 10:
        raise fail("playready-pro", f"{what} is only {len(data)} bytes", kid)
    total, count = struct.unpack_from("<IH", data, 0)
    if total != len(data):
        raise fail("playready-pro", f"{what} length field {total} != size {len(data)}", kid)
    pos = 6
    header_found = False
    for _ in range(count):
        if pos + 4 > len(data):
            raise fail("playready-pro", f"{what} record table is truncated", kid)
        rtype, rlen = struct.unpack_from("<HH", data, pos)
        pos += 4
        if pos + rlen > len(data):
            raise fail("playready-pro", f"{what} record overruns the object", kid)
        if rtype == 1:
            head = data[pos : pos + rlen].decode("utf-16-le", errors="replace").lstrip("\ufeff")
            if not head.lstrip().startswith("<WRMHEADER"):
                raise fail("playready-pro", f"{what} header record is not a WRMHEADER", kid)
            header_found = True
        pos += rlen
    if pos != len(data):
        raise fail("playready-pro", f"{what} has {len(data) - pos} trailing bytes", kid)
    if not header_found:
        raise fail("playready-pro", f"{what} has no rights-management header record", kid)


# ---- HLS -----------------------------------------------------------------------------------

def parse_hls_attributes(line: str) -> dict[str, str]:
    """Attribute list of an ``#EXT-X-KEY:``/``#EXT-X-SESSION-KEY:`` line (quotes removed), read
    by the one HLS attribute-list reader; a malformed list raises :class:`CpixError`."""
    _, _, rest = line.partition(":")
    try:
        return parse_attribute_list(rest)
    except ManifestError as exc:
        raise CpixError(f"cannot parse HLS attribute list: {exc}") from None


def build_hls_line(
    tag: str,
    *,
    method: str,
    uri: str,
    keyformat: str | None = None,
    keyformatversions: str | None = None,
    iv: bytes | None = None,
) -> str:
    """One ``#EXT-X-KEY``/``#EXT-X-SESSION-KEY`` line; empty/None attributes are omitted.
    A value HLS cannot carry (a quote or line break in the URI...) raises :class:`CpixError`."""
    attrs: list[tuple[str, AttrValue]] = [("METHOD", method), ("URI", Quoted(uri))]
    if iv is not None:
        attrs.append(("IV", iv))
    if keyformat:
        attrs.append(("KEYFORMAT", Quoted(keyformat)))
    if keyformatversions:
        attrs.append(("KEYFORMATVERSIONS", Quoted(keyformatversions)))
    try:
        return f"{tag}:{format_attribute_list(attrs)}"
    except ManifestError as exc:
        raise CpixError(f"cannot write the HLS line: {exc}") from None


def _accepted_keyformats(drm: DrmSystem) -> set[str]:
    if drm is DrmSystem.AES128:
        return {KEYFORMAT_IDENTITY, ""}
    if drm is DrmSystem.CLEARKEY:
        return {KEYFORMAT_CLEARKEY, f"urn:uuid:{W3C_COMMON}", f"urn:uuid:{DASHIF_CLEARKEY}"}
    return {DRM_KEYFORMAT[drm]}


def check_hls(media: str, master: str, drm: DrmSystem, scheme: Scheme | None, kid: str
              ) -> None:
    pairs = (("media", media, "#EXT-X-KEY:"), ("master", master, "#EXT-X-SESSION-KEY:"))
    attrs: dict[str, dict[str, str]] = {}
    for name, text, prefix in pairs:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise fail("hls", f"{drm.label} HLSSignalingData {name} is empty", kid)
        for ln in lines:
            if not ln.startswith(prefix):
                raise fail("hls", f"{drm.label} HLSSignalingData {name} line does not start "
                                  f"with {prefix}", kid)
        try:
            attrs[name] = parse_hls_attributes(lines[0])
        except CpixError as exc:
            raise fail("hls", f"{drm.label} HLSSignalingData {name}: {exc}", kid) from None
    a, b = attrs["media"], attrs["master"]
    for field in ("METHOD", "URI", "KEYFORMAT", "KEYFORMATVERSIONS"):
        if a.get(field) != b.get(field):
            raise fail("hls", f"{drm.label} media and master lines differ in {field}", kid)
    method = a.get("METHOD", "")
    if scheme is not None and method != scheme.hls_method:
        raise fail("hls", f"{drm.label} METHOD={method} does not fit scheme {scheme.value} "
                          f"(expected {scheme.hls_method})", kid)
    if not a.get("URI"):
        raise fail("hls", f"{drm.label} HLS line has no URI", kid)
    kf = a.get("KEYFORMAT", "")
    if kf not in _accepted_keyformats(drm):
        raise fail("hls", f"{drm.label} KEYFORMAT {kf!r} does not fit the DRM system", kid)
    if drm is DrmSystem.PLAYREADY:
        uri = a["URI"]
        _, sep, payload = uri.partition("base64,")
        if uri.startswith("data:") and sep:
            pro = decode_b64(payload, "hls", "PlayReady HLS URI payload", kid)
            check_playready_object(pro, kid=kid, what="PlayReady HLS URI object")


def hls_iv(signals: list[DrmSignal], kid: str) -> bytes | None:
    """The IV the key server wrote in its HLS lines (``IV=`` of the first non-FairPlay,
    non-CTR key tag, 16 bytes: a shorter hexadecimal-sequence is zero-padded on the left, as
    HLS reads it), or None. Read here, once, so that no later stage parses this text for it."""
    for sig in signals:
        for text in (sig.hls_media, sig.hls_master):
            for ln in (text or "").splitlines():
                if not ln.strip():
                    continue
                try:
                    attrs = parse_hls_attributes(ln.strip())
                except CpixError as exc:
                    raise fail("hls", f"{sig.drm.label} HLSSignalingData: {exc}", kid) from None
                if ("IV" not in attrs or attrs.get("KEYFORMAT") == KEYFORMAT_FAIRPLAY
                        or attrs.get("METHOD") == "SAMPLE-AES-CTR"):
                    continue
                try:
                    iv = parse_hex(attrs["IV"], what="IV")
                except ManifestError as exc:
                    raise fail("hls", f"{sig.drm.label} HLS {exc}", kid) from None
                if len(iv) > 16:
                    raise fail("hls", f"{sig.drm.label} HLS IV is {len(iv)} bytes, not 16",
                               kid)
                return iv.rjust(16, b"\x00")
    return None


# ---- per-DRM signaling -----------------------------------------------------------------------


@dataclass
class DecodedDrm:
    pssh: bytes | None = None
    cpd: str | None = None
    hls_media: str | None = None
    hls_master: str | None = None
    uri: str | None = None
    key_format: str | None = None
    key_format_versions: str | None = None
    protection_header: bytes | None = None
    ssph: bytes | None = None


def _text_value(raw: bytes, check: str, what: str, kid: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(check, f"{what} is not UTF-8 text", kid) from None


def cpd_pssh(cpd: str, kid: str) -> tuple[list[bytes], list[bytes]]:
    wrapped = (f'<w xmlns:cenc="{NS_CENC}" xmlns:mspr="{NS_MSPR}">{cpd}</w>').encode()
    try:
        root = parse_xml(wrapped, what="ContentProtectionData")
    except CpixError as exc:
        raise fail("cpd", f"ContentProtectionData is not an XML fragment: {exc}", kid) from None
    psshs = [decode_b64("".join(str(t) for t in el.itertext()), "cpd", "cenc:pssh", kid)
             for el in root.iter(f"{{{NS_CENC}}}pssh")]
    pros = [decode_b64("".join(str(t) for t in el.itertext()), "cpd", "mspr:pro", kid)
            for el in root.iter(f"{{{NS_MSPR}}}pro")]
    return psshs, pros


def decode_drm(
    ds: CpixDrmSystem, drm: DrmSystem, wanted: tuple[Placeholder, ...], *,
    version: SpekeVersion, scheme: Scheme | None, kid: str,
) -> DecodedDrm:
    out = DecodedDrm()
    for ph in Placeholder:
        found = ds.find(ph)
        if version.is_v2 and ph in _NOT_V2 and found and ph not in wanted:
            raise fail("placeholder", f"{drm.label} answer has {ph.value}, not a SPEKE v2 "
                                      "element", kid)
        if ph not in wanted:
            continue
        if len(found) != 1:
            raise fail("placeholder", f"{drm.label} {ph.value} occurs {len(found)} times, "
                                      "expected once", kid)
        text = found[0].text
        if not text:
            raise fail("placeholder", f"{drm.label} {ph.value} is empty", kid)
        raw = decode_b64(text, "base64", f"{drm.label} {ph.value}", kid)
        if ph is Placeholder.PSSH:
            out.pssh = raw
        elif ph is Placeholder.CONTENT_PROTECTION_DATA:
            out.cpd = _text_value(raw, "cpd", "ContentProtectionData", kid)
        elif ph is Placeholder.HLS_MEDIA:
            out.hls_media = _text_value(raw, "hls", "HLSSignalingData media", kid)
        elif ph is Placeholder.HLS_MASTER:
            out.hls_master = _text_value(raw, "hls", "HLSSignalingData master", kid)
        elif ph is Placeholder.URI_EXT_X_KEY:
            out.uri = _text_value(raw, "placeholder", "URIExtXKey", kid)
        elif ph is Placeholder.SPEKE_KEY_FORMAT:
            out.key_format = _text_value(raw, "placeholder", "speke:KeyFormat", kid)
        elif ph is Placeholder.SPEKE_KEY_FORMAT_VERSIONS:
            out.key_format_versions = _text_value(raw, "placeholder", "KeyFormatVersions", kid)
        elif ph is Placeholder.SPEKE_PROTECTION_HEADER:
            out.protection_header = raw
        elif ph is Placeholder.SMOOTH_STREAMING:
            out.ssph = raw

    if out.pssh is not None:
        try:
            box = parse_pssh(out.pssh)
        except PsshError as exc:
            raise fail("pssh", f"{drm.label} PSSH is not a valid box: {exc}", kid) from None
        if box.system_id != drm.system_id and not (
            drm is DrmSystem.CLEARKEY and box.system_id in (W3C_COMMON, DASHIF_CLEARKEY)
        ):
            raise fail("pssh", f"{drm.label} PSSH box SystemID {box.system_id} does not match "
                               f"@systemId {ds.system_id}", kid)
        if drm is DrmSystem.PLAYREADY:
            check_playready_object(box.data, kid=kid, what="PlayReady PSSH data")
    if out.cpd is not None:
        psshs, pros = cpd_pssh(out.cpd, kid)
        if out.pssh is not None:
            if not psshs:
                raise fail("cpd", f"{drm.label} ContentProtectionData has no cenc:pssh", kid)
            if any(p != out.pssh for p in psshs):
                raise fail("pssh-cpd", f"{drm.label} ContentProtectionData pssh differs from "
                                       "PSSH", kid)
        for pro in pros:
            check_playready_object(pro, kid=kid, what="mspr:pro")
    if out.hls_media is not None or out.hls_master is not None:
        if out.hls_media is None or out.hls_master is None:
            raise fail("hls", f"{drm.label} needs both media and master HLSSignalingData", kid)
        check_hls(out.hls_media, out.hls_master, drm, scheme, kid)
    if out.key_format and out.key_format not in _accepted_keyformats(drm):
        raise fail("hls", f"{drm.label} speke:KeyFormat {out.key_format[:60]!r} does not fit "
                          "the DRM system", kid)
    if out.protection_header is not None:
        check_playready_object(out.protection_header, kid=kid, what="speke:ProtectionHeader")
    if out.ssph is not None:
        check_playready_object(out.ssph, kid=kid, what="SmoothStreamingProtectionHeaderData")
    return out


def _pssh_data(box: bytes | None) -> bytes | None:
    return parse_pssh(box).data if box is not None else None


def drm_signal(drm: DrmSystem, d: DecodedDrm, *, version: SpekeVersion, scheme: Scheme,
               iv: bytes | None, want_hls: bool) -> DrmSignal:
    pro: bytes | None = None
    if drm is DrmSystem.PLAYREADY:
        pro = d.protection_header or d.ssph or _pssh_data(d.pssh)
    cpd = d.cpd
    media, master = d.hls_media, d.hls_master
    if not version.is_v2:
        if d.pssh is not None:
            cpd = _v1_cpd(d.pssh, pro)
        if d.uri is not None:
            media, master = _v1_hls(d, scheme, iv)
        elif want_hls and d.pssh is not None and drm in (DrmSystem.WIDEVINE,
                                                          DrmSystem.PLAYREADY):
            media, master = _v1_hls_from_pssh(drm, d.pssh, pro, scheme)
    return DrmSignal(
        drm=drm, system_id=drm.system_id, pssh=d.pssh, content_protection_data=cpd,
        hls_media=media, hls_master=master, playready_object=pro, uri_ext_x_key=d.uri,
        key_format=d.key_format, key_format_versions=d.key_format_versions,
        smooth_streaming_header=d.ssph or d.protection_header,
    )


def _v1_cpd(pssh: bytes, pro: bytes | None) -> str:
    from lxml import etree

    parts = []
    el = etree.Element(f"{{{NS_CENC}}}pssh", nsmap={"cenc": NS_CENC})
    el.text = base64.b64encode(pssh).decode()
    parts.append(etree.tostring(el, encoding="unicode"))
    if pro is not None:
        el = etree.Element(f"{{{NS_MSPR}}}pro", nsmap={"mspr": NS_MSPR})
        el.text = base64.b64encode(pro).decode()
        parts.append(etree.tostring(el, encoding="unicode"))
    return "".join(parts)


def _v1_hls(d: DecodedDrm, scheme: Scheme, iv: bytes | None) -> tuple[str, str]:
    kw = {"method": scheme.hls_method, "uri": d.uri or "", "keyformat": d.key_format,
          "keyformatversions": d.key_format_versions, "iv": iv}
    return build_hls_line("#EXT-X-KEY", **kw), build_hls_line(  # type: ignore[arg-type]
        "#EXT-X-SESSION-KEY", **kw)  # type: ignore[arg-type]


def _v1_hls_from_pssh(drm: DrmSystem, pssh: bytes, pro: bytes | None, scheme: Scheme
                      ) -> tuple[str, str]:
    if drm is DrmSystem.PLAYREADY and pro is not None:
        uri = "data:text/plain;charset=UTF-16;base64," + base64.b64encode(pro).decode()
    else:
        uri = "data:text/plain;base64," + base64.b64encode(pssh).decode()
    kf = DRM_KEYFORMAT[drm]
    return (build_hls_line("#EXT-X-KEY", method=scheme.hls_method, uri=uri, keyformat=kf,
                           keyformatversions="1"),
            build_hls_line("#EXT-X-SESSION-KEY", method=scheme.hls_method, uri=uri,
                           keyformat=kf, keyformatversions="1"))


