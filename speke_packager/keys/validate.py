"""Strict validation of a SPEKE answer against its request (speke.md §5) -> :class:`KeySet`.

Every failed check raises :class:`~speke_packager.errors.CpixValidationError` whose ``check``
names the rule (``version-echo``, ``kid``, ``pssh`` ...) and whose ``kid`` names the key.
"""

from __future__ import annotations

import base64
import binascii
import logging
import struct
from collections.abc import Mapping
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
    SPEKE_USER_AGENT_HEADER,
    SPEKE_VERSION_HEADER,
    SYSTEM_ID_TO_DRM,
    W3C_COMMON,
    DrmSystem,
    Scheme,
    SpekeVersion,
)
from ..drm.pssh import PsshError, parse_pssh
from ..errors import CpixError, CpixValidationError, ManifestError
from ..model import ContentKey, DrmSignal, KeyEntry, KeySet
from .cpix.model import CpixContentKey, CpixDocument, CpixDrmSystem, Placeholder
from .envelope import DeliveryKey, decrypt_content_keys, select_delivery_data
from .request import SpekeRequest

__all__ = [
    "build_hls_line",
    "check_playready_object",
    "parse_hls_attributes",
    "validate_response",
]

log = logging.getLogger(__name__)

_V1_HLS = (Placeholder.URI_EXT_X_KEY, Placeholder.SPEKE_KEY_FORMAT,
           Placeholder.SPEKE_KEY_FORMAT_VERSIONS)
_NOT_V2 = (*_V1_HLS, Placeholder.SPEKE_PROTECTION_HEADER)


def _fail(check: str, message: str, kid: str | None = None, xpath: str | None = None
          ) -> CpixValidationError:
    who = f" (KID {kid})" if kid else ""
    return CpixValidationError(f"[{check}] {message}{who}", check=check, kid=kid, xpath=xpath)


def _b64(text: str, check: str, what: str, kid: str | None = None) -> bytes:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(check, f"{what} is not valid base64", kid) from None


def _canon_kid(text: str, kid_for_msg: str | None = None) -> str:
    try:
        u = UUID(text)
    except ValueError:
        raise _fail("kid", f"KID {text[:60]!r} is not a UUID", kid_for_msg) from None
    if len(text.strip()) != 36:
        raise _fail("kid", f"KID {text[:60]!r} is not in 8-4-4-4-12 form", kid_for_msg)
    return str(u)


# ---- PlayReady object (structural) ---------------------------------------------------------


def check_playready_object(data: bytes, *, kid: str | None = None, what: str = "PRO") -> None:
    """u32le length = size, u16le record count, a type-1 record holding UTF-16LE <WRMHEADER."""
    if len(data) < 10:
        raise _fail("playready-pro", f"{what} is only {len(data)} bytes", kid)
    total, count = struct.unpack_from("<IH", data, 0)
    if total != len(data):
        raise _fail("playready-pro", f"{what} length field {total} != size {len(data)}", kid)
    pos = 6
    header_found = False
    for _ in range(count):
        if pos + 4 > len(data):
            raise _fail("playready-pro", f"{what} record table is truncated", kid)
        rtype, rlen = struct.unpack_from("<HH", data, pos)
        pos += 4
        if pos + rlen > len(data):
            raise _fail("playready-pro", f"{what} record overruns the object", kid)
        if rtype == 1:
            head = data[pos : pos + rlen].decode("utf-16-le", errors="replace").lstrip("\ufeff")
            if not head.lstrip().startswith("<WRMHEADER"):
                raise _fail("playready-pro", f"{what} header record is not a WRMHEADER", kid)
            header_found = True
        pos += rlen
    if pos != len(data):
        raise _fail("playready-pro", f"{what} has {len(data) - pos} trailing bytes", kid)
    if not header_found:
        raise _fail("playready-pro", f"{what} has no rights-management header record", kid)


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


def _check_hls(media: str, master: str, drm: DrmSystem, scheme: Scheme | None, kid: str
               ) -> None:
    pairs = (("media", media, "#EXT-X-KEY:"), ("master", master, "#EXT-X-SESSION-KEY:"))
    attrs: dict[str, dict[str, str]] = {}
    for name, text, prefix in pairs:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise _fail("hls", f"{drm.label} HLSSignalingData {name} is empty", kid)
        for ln in lines:
            if not ln.startswith(prefix):
                raise _fail("hls", f"{drm.label} HLSSignalingData {name} line does not start "
                                   f"with {prefix}", kid)
        try:
            attrs[name] = parse_hls_attributes(lines[0])
        except CpixError as exc:
            raise _fail("hls", f"{drm.label} HLSSignalingData {name}: {exc}", kid) from None
    a, b = attrs["media"], attrs["master"]
    for field in ("METHOD", "URI", "KEYFORMAT", "KEYFORMATVERSIONS"):
        if a.get(field) != b.get(field):
            raise _fail("hls", f"{drm.label} media and master lines differ in {field}", kid)
    method = a.get("METHOD", "")
    if scheme is not None and method != scheme.hls_method:
        raise _fail("hls", f"{drm.label} METHOD={method} does not fit scheme {scheme.value} "
                           f"(expected {scheme.hls_method})", kid)
    if not a.get("URI"):
        raise _fail("hls", f"{drm.label} HLS line has no URI", kid)
    kf = a.get("KEYFORMAT", "")
    if kf not in _accepted_keyformats(drm):
        raise _fail("hls", f"{drm.label} KEYFORMAT {kf!r} does not fit the DRM system", kid)
    if drm is DrmSystem.PLAYREADY:
        uri = a["URI"]
        _, sep, payload = uri.partition("base64,")
        if uri.startswith("data:") and sep:
            pro = _b64(payload, "hls", "PlayReady HLS URI payload", kid)
            check_playready_object(pro, kid=kid, what="PlayReady HLS URI object")


def _hls_iv(signals: list[DrmSignal], kid: str) -> bytes | None:
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
                    raise _fail("hls", f"{sig.drm.label} HLSSignalingData: {exc}", kid) from None
                if ("IV" not in attrs or attrs.get("KEYFORMAT") == KEYFORMAT_FAIRPLAY
                        or attrs.get("METHOD") == "SAMPLE-AES-CTR"):
                    continue
                try:
                    iv = parse_hex(attrs["IV"], what="IV")
                except ManifestError as exc:
                    raise _fail("hls", f"{sig.drm.label} HLS {exc}", kid) from None
                if len(iv) > 16:
                    raise _fail("hls", f"{sig.drm.label} HLS IV is {len(iv)} bytes, not 16",
                                kid)
                return iv.rjust(16, b"\x00")
    return None


# ---- per-DRM signaling -----------------------------------------------------------------------


@dataclass
class _Decoded:
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
        raise _fail(check, f"{what} is not UTF-8 text", kid) from None


def _cpd_pssh(cpd: str, kid: str) -> tuple[list[bytes], list[bytes]]:
    wrapped = (f'<w xmlns:cenc="{NS_CENC}" xmlns:mspr="{NS_MSPR}">{cpd}</w>').encode()
    try:
        root = parse_xml(wrapped, what="ContentProtectionData")
    except CpixError as exc:
        raise _fail("cpd", f"ContentProtectionData is not an XML fragment: {exc}", kid) from None
    psshs = [_b64("".join(str(t) for t in el.itertext()), "cpd", "cenc:pssh", kid)
             for el in root.iter(f"{{{NS_CENC}}}pssh")]
    pros = [_b64("".join(str(t) for t in el.itertext()), "cpd", "mspr:pro", kid)
            for el in root.iter(f"{{{NS_MSPR}}}pro")]
    return psshs, pros


def _decode_drm(
    ds: CpixDrmSystem, drm: DrmSystem, wanted: tuple[Placeholder, ...], *,
    version: SpekeVersion, scheme: Scheme | None, kid: str,
) -> _Decoded:
    out = _Decoded()
    for ph in Placeholder:
        found = ds.find(ph)
        if version.is_v2 and ph in _NOT_V2 and found and ph not in wanted:
            raise _fail("placeholder", f"{drm.label} answer has {ph.value}, not a SPEKE v2 "
                                       "element", kid)
        if ph not in wanted:
            continue
        if len(found) != 1:
            raise _fail("placeholder", f"{drm.label} {ph.value} occurs {len(found)} times, "
                                       "expected once", kid)
        text = found[0].text
        if not text:
            raise _fail("placeholder", f"{drm.label} {ph.value} is empty", kid)
        raw = _b64(text, "base64", f"{drm.label} {ph.value}", kid)
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
            raise _fail("pssh", f"{drm.label} PSSH is not a valid box: {exc}", kid) from None
        if box.system_id != drm.system_id and not (
            drm is DrmSystem.CLEARKEY and box.system_id in (W3C_COMMON, DASHIF_CLEARKEY)
        ):
            raise _fail("pssh", f"{drm.label} PSSH box SystemID {box.system_id} does not match "
                                f"@systemId {ds.system_id}", kid)
        if drm is DrmSystem.PLAYREADY:
            check_playready_object(box.data, kid=kid, what="PlayReady PSSH data")
    if out.cpd is not None:
        psshs, pros = _cpd_pssh(out.cpd, kid)
        if out.pssh is not None:
            if not psshs:
                raise _fail("cpd", f"{drm.label} ContentProtectionData has no cenc:pssh", kid)
            if any(p != out.pssh for p in psshs):
                raise _fail("pssh-cpd", f"{drm.label} ContentProtectionData pssh differs from "
                                        "PSSH", kid)
        for pro in pros:
            check_playready_object(pro, kid=kid, what="mspr:pro")
    if out.hls_media is not None or out.hls_master is not None:
        if out.hls_media is None or out.hls_master is None:
            raise _fail("hls", f"{drm.label} needs both media and master HLSSignalingData", kid)
        _check_hls(out.hls_media, out.hls_master, drm, scheme, kid)
    if out.key_format and out.key_format not in _accepted_keyformats(drm):
        raise _fail("hls", f"{drm.label} speke:KeyFormat {out.key_format[:60]!r} does not fit "
                           "the DRM system", kid)
    if out.protection_header is not None:
        check_playready_object(out.protection_header, kid=kid, what="speke:ProtectionHeader")
    if out.ssph is not None:
        check_playready_object(out.ssph, kid=kid, what="SmoothStreamingProtectionHeaderData")
    return out


def _pssh_data(box: bytes | None) -> bytes | None:
    return parse_pssh(box).data if box is not None else None


def _signal(drm: DrmSystem, d: _Decoded, *, version: SpekeVersion, scheme: Scheme,
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


def _v1_hls(d: _Decoded, scheme: Scheme, iv: bytes | None) -> tuple[str, str]:
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


# ---- the whole answer ------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    low = name.lower()
    for k, v in headers.items():
        if k.lower() == low:
            return v
    return None


def _check_root(req: SpekeRequest, doc: CpixDocument) -> None:
    v = req.version
    if v.is_v2:
        if doc.content_id != req.content_id:
            raise _fail("content-id", f"CPIX@contentId {doc.content_id!r} is not the requested "
                                      f"{req.content_id!r}")
        if doc.version != v.cpix_version:
            raise _fail("version-echo", f"CPIX@version {doc.version!r} is not the requested "
                                        f"{v.cpix_version!r}")
        for name in ("ContentKeyList", "DRMSystemList", "ContentKeyUsageRuleList"):
            n = doc.list_counts.get(name, 0)
            if n != 1:
                raise _fail("lists", f"answer has {n} {name} elements, expected exactly one")
    elif doc.id != req.content_id:
        raise _fail("content-id", f"CPIX@id {doc.id!r} is not the requested {req.content_id!r}")


def _map_kids(req: SpekeRequest, doc: CpixDocument) -> dict[str, str]:
    """answer KID -> requested KID (both canonical lower case), honouring KID override."""
    requested = {str(k.kid): k for k in req.keys}
    got = [_canon_kid(ck.kid) for ck in doc.content_keys]
    if len(got) != len(set(got)):
        dup = next(k for k in got if got.count(k) > 1)
        raise _fail("duplicate-kid", "the answer lists a KID twice", dup)
    if len(got) != len(requested):
        extra = [k for k in got if k not in requested]
        raise _fail("key-count", f"answer has {len(got)} content keys, {len(requested)} "
                                 "were requested", extra[0] if extra else None)
    mapping: dict[str, str] = {k: k for k in got if k in requested}
    unmapped_req = [k for k in requested if k not in mapping.values()]
    for k in got:
        if k in mapping:
            continue
        if not req.version.is_v2:
            if len(unmapped_req) == 1:
                mapping[k] = unmapped_req[0]
                continue
            raise _fail("kid", "unexpected KID in the answer", k)
        rules = doc.rule_for(k)
        ttypes = {r.intended_track_type for r in rules}
        cands = [r for r in unmapped_req if requested[r].track_type in ttypes]
        if len(cands) != 1:
            raise _fail("kid", "answer KID matches no requested key (or several)", k)
        mapping[k] = cands[0]
        unmapped_req.remove(cands[0])
        log.info("key server replaced KID %s with %s", cands[0], k)
    return mapping


def _check_rules(req: SpekeRequest, doc: CpixDocument, mapping: dict[str, str]) -> None:
    requested = {str(k.kid): k for k in req.keys}
    sent_periods = {k.period.period_id: k.period for k in req.keys if k.period}
    got_periods = {p.id: p for p in doc.periods}
    if set(sent_periods) != set(got_periods):
        raise _fail("periods", f"answer periods {sorted(map(str, got_periods))} differ from "
                               f"the requested {sorted(sent_periods)}")
    for pid, p in sent_periods.items():
        g = got_periods[pid]
        if g.index != p.index:
            raise _fail("periods", f"period {pid} index changed from {p.index} to {g.index}")
    if not req.version.is_v2 and not sent_periods:
        return
    for got_kid, req_kid in mapping.items():
        rk = requested[req_kid]
        rules = doc.rule_for(got_kid)
        if len(rules) != 1:
            raise _fail("usage-rules", f"answer has {len(rules)} usage rules for the key, "
                                       "expected one", got_kid)
        r = rules[0]
        if req.version.is_v2 and r.intended_track_type != rk.track_type:
            raise _fail("usage-rules", f"intendedTrackType {r.intended_track_type!r} is not "
                                       f"the requested {rk.track_type!r}", got_kid)
        want_p = (rk.period.period_id,) if rk.period else ()
        if tuple(r.period_ids) != want_p:
            raise _fail("usage-rules", "KeyPeriodFilter changed", got_kid)
        if req.version.is_v2 and (r.video_filters != rk.video_filters
                                  or r.audio_filters != rk.audio_filters):
            raise _fail("usage-rules", "Video/AudioFilter changed", got_kid)


def _key_value(ck: CpixContentKey, kid: str, req: SpekeRequest,
               decrypted: dict[str, bytes] | None) -> bytes:
    if ck.secret_count != 1:
        raise _fail("key-value", f"content key has {ck.secret_count} Data/Secret elements, "
                                 "expected one", kid)
    if ck.value_count != 1:
        raise _fail("key-value", "Secret needs exactly one of PlainValue/EncryptedValue", kid)
    sent_delivery = req.contract.delivery_cert_der is not None
    if ck.plain_value is not None:
        if sent_delivery:
            raise _fail("encryption", "content key came back in clear although encrypted keys "
                                      "were requested", kid)
        if not ck.plain_value:
            raise _fail("key-value", "PlainValue is empty", kid)
        value = _b64(ck.plain_value, "base64", "PlainValue", kid)
    else:
        if not sent_delivery:
            raise _fail("encryption", "content key is encrypted but no delivery certificate "
                                      "was sent", kid)
        if decrypted is None or kid not in decrypted:
            raise _fail("encryption", "encrypted content key could not be decrypted", kid)
        value = decrypted[kid]
    if len(value) != 16:
        raise _fail("key-length", f"content key is {len(value)} bytes, not 16", kid)
    return value


def validate_response(
    request: SpekeRequest, doc: CpixDocument, *,
    headers: Mapping[str, str] | None = None,
    delivery_key: DeliveryKey | None = None,
    strict: bool = True,
) -> KeySet:
    """Check ``doc`` (the parsed answer) against ``request`` and return the key set.

    ``headers`` are the HTTP response headers (None: offline document, header checks skipped).
    ``delivery_key`` decrypts encrypted content keys (required when a certificate was sent)."""
    v = request.version
    if headers is not None and v.is_v2:
        echo = _header(headers, SPEKE_VERSION_HEADER)
        if echo is None:
            raise _fail("version-echo", "answer has no X-Speke-Version header (v1-only server?)")
        if echo.strip() != v.header:
            raise _fail("version-echo", f"answer X-Speke-Version {echo.strip()[:20]!r} is not "
                                        f"the requested {v.header!r}")
        if _header(headers, SPEKE_USER_AGENT_HEADER) is None:
            log.warning("SPEKE answer has no X-Speke-User-Agent header")
        ctype = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
        if ctype not in ("application/xml", "text/xml"):
            log.warning("SPEKE answer Content-Type is %r, not application/xml", ctype)
    _check_root(request, doc)
    mapping = _map_kids(request, doc)
    _check_rules(request, doc, mapping)
    requested = {str(k.kid): k for k in request.keys}
    scheme = request.contract.scheme

    decrypted: dict[str, bytes] | None = None
    if request.contract.delivery_cert_der is not None:
        if delivery_key is None:
            raise _fail("encryption", "encrypted keys were requested but no delivery key is "
                                      "available to decrypt them")
        if delivery_key.certificate_der != request.contract.delivery_cert_der:
            raise _fail("encryption", "the delivery key does not match the certificate sent")
        if not doc.has_delivery_data_list:
            raise _fail("encryption", "answer has no DeliveryDataList although encrypted keys "
                                      "were requested")
        select_delivery_data(doc, delivery_key)
        decrypted = {_canon_kid(k): val for k, val in decrypt_content_keys(doc, delivery_key)
                     .items()}

    entries: list[KeyEntry] = []
    seen_values: dict[bytes, str] = {}
    for ck in doc.content_keys:
        kid = _canon_kid(ck.kid)
        rk = requested[mapping[kid]]
        if v.is_v2 and ck.common_encryption_scheme != scheme.cpix_scheme:
            raise _fail("scheme", f"commonEncryptionScheme {ck.common_encryption_scheme!r} is "
                                  f"not the requested {scheme.cpix_scheme!r}", kid)
        value = _key_value(ck, kid, request, decrypted)
        if strict:
            if value == bytes(16):
                raise _fail("strict", "content key is all zero", kid)
            if value in seen_values:
                raise _fail("strict", f"content key is the same as that of {seen_values[value]}",
                            kid)
            seen_values[value] = kid
        iv: bytes | None = None
        if ck.explicit_iv is not None:
            iv = _b64(ck.explicit_iv, "explicit-iv", "explicitIV", kid)
            if len(iv) != 16:
                raise _fail("explicit-iv", f"explicitIV is {len(iv)} bytes, not 16", kid)
            if iv == value:
                raise _fail("explicit-iv", "explicitIV equals the content key" + (
                    " instead of the one sent" if rk.explicit_iv is not None else "; send our "
                    "own IV with --explicit-iv (EncryptionContract(explicit_iv=True))"), kid)
        if rk.explicit_iv is not None and iv is None:  # ignored: use ours (conformance fails)
            log.warning("key server did not echo the explicitIV sent for KID %s; using ours", kid)
            iv = rk.explicit_iv
        elif rk.explicit_iv is not None and iv != rk.explicit_iv:
            raise _fail("explicit-iv", "explicitIV differs from the one sent", kid)

        systems = doc.drm_for(kid)
        signals: list[DrmSignal] = []
        want_hls = any(p.value.startswith("hls") for p in request.contract.packaging)
        for drm, wanted in request.placeholders.items():
            mine = [d for d in systems if _same_system(d.system_id, drm)]
            if len(mine) != 1:
                raise _fail("drm-system", f"answer has {len(mine)} DRMSystem elements for "
                                          f"{drm.label}, expected one", kid)
            decoded = _decode_drm(mine[0], drm, wanted, version=v, scheme=scheme, kid=kid)
            signals.append(_signal(drm, decoded, version=v, scheme=scheme, iv=iv,
                                   want_hls=want_hls))
        if iv is None:  # no explicitIV: the IV of the key server's HLS signaling, if any
            iv = _hls_iv(signals, kid)
        for d in systems:
            if not any(_same_system(d.system_id, drm) for drm in request.placeholders):
                log.warning("key server added an unrequested DRM system %s for KID %s",
                            d.system_id[:40], kid)
        entries.append(KeyEntry(
            key=ContentKey(kid=UUID(kid), key=value, iv=iv),
            track_type=rk.track_type,
            period=rk.period,
            video_filters=rk.video_filters,
            audio_filters=rk.audio_filters,
            drm=tuple(signals),
        ))
    for d in doc.drm_systems:
        if _canon_kid(d.kid) not in mapping:
            raise _fail("drm-system", "DRMSystem refers to a KID that is not in the answer",
                        _canon_kid(d.kid))
    return KeySet(content_id=request.content_id, scheme=scheme, entries=tuple(entries),
                  version=v)


def _same_system(system_id: str, drm: DrmSystem) -> bool:
    try:
        return SYSTEM_ID_TO_DRM.get(UUID(system_id)) is drm
    except ValueError:
        return False
