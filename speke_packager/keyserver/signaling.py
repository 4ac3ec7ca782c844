"""Per-DRM signaling the key server puts into an answer: pssh boxes, CPD, HLS lines, v1 fields.

Every function returns decoded values; :mod:`.answer` base64-encodes them into the CPIX document.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from uuid import UUID

from lxml import etree

from .._hls_attrs import AttrValue, Quoted, format_attribute_list
from ..constants import (
    CLEARKEY_AES128,
    FAIRPLAY,
    HLS_AES128_UNOFFICIAL,
    KEYFORMAT_CLEARKEY,
    KEYFORMAT_FAIRPLAY,
    KEYFORMAT_IDENTITY,
    KEYFORMAT_PLAYREADY,
    KEYFORMAT_WIDEVINE,
    NS_CENC,
    NS_DASHIF_CPS,
    NS_MSPR,
    PLAYREADY,
    W3C_COMMON,
    WIDEVINE,
    Scheme,
)
from ..drm.playready import build_playready_object
from ..drm.pssh import build_pssh
from ..drm.widevine import build_widevine_pssh_data
from ..errors import ManifestError
from ._maker import Maker
from .request import CLEARKEY_IDS

HLS_AES128_IDS = frozenset({CLEARKEY_AES128, HLS_AES128_UNOFFICIAL})

__all__ = ["KeyContext", "hls_line", "signal_value"]

PROVIDER = "speke-packager"


@dataclass(frozen=True, slots=True)
class KeyContext:
    """What the signaling of one (key, DRM) pair depends on. ``key`` is secret."""

    kid: UUID
    key: bytes
    scheme: str  # CPIX commonEncryptionScheme ('cenc', 'cbcs', 'cbc1', 'cens'); v1: 'cenc'
    system_id: UUID
    content_id: str
    explicit_iv: bytes | None
    key_url: str
    license_url: str  # ClearKey licence endpoint
    playready_la_url: str

    def __repr__(self) -> str:
        return f"KeyContext(kid={self.kid}, system={self.system_id}, key=<hidden>)"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pr_scheme(scheme: str) -> Scheme:
    return Scheme.CBCS if scheme in ("cbcs", "cbc1") else Scheme.CENC


def pssh_box(ctx: KeyContext) -> bytes:
    """The pssh box for this DRM: Widevine v0 + WidevinePsshData, PlayReady v0 + PRO, ClearKey
    common v1 with the KID; other systems a v1 box listing the KID without data."""
    if ctx.system_id == WIDEVINE:
        data = build_widevine_pssh_data(
            [ctx.kid], content_id=ctx.content_id.encode("utf-8"), provider=PROVIDER,
            protection_scheme=ctx.scheme if ctx.scheme in ("cenc", "cbcs", "cens", "cbc1")
            else None)
        return build_pssh(WIDEVINE, data, version=0)
    if ctx.system_id == PLAYREADY:
        return build_pssh(PLAYREADY, playready_object(ctx), version=0)
    if ctx.system_id in CLEARKEY_IDS:
        return build_pssh(W3C_COMMON, b"", kids=[ctx.kid], version=1)
    return build_pssh(ctx.system_id, b"", kids=[ctx.kid], version=1)


def playready_object(ctx: KeyContext) -> bytes:
    return build_playready_object([(ctx.kid, ctx.key)], la_url=ctx.playready_la_url,
                                  scheme=_pr_scheme(ctx.scheme))


def content_protection_data(ctx: KeyContext, pssh: bytes | None = None) -> bytes:
    """UTF-8 CPD fragment: ``cenc:pssh`` (+ ``mspr:pro`` / ``dashif:Laurl``)."""
    box = pssh if pssh is not None else pssh_box(ctx)
    cenc = Maker(namespace=NS_CENC, nsmap={"cenc": NS_CENC})
    parts = [cenc.pssh(_b64(box))]
    if ctx.system_id == PLAYREADY:
        mspr = Maker(namespace=NS_MSPR, nsmap={"mspr": NS_MSPR})
        parts.append(mspr.pro(_b64(playready_object(ctx))))
    elif ctx.system_id in CLEARKEY_IDS:
        dashif = Maker(namespace=NS_DASHIF_CPS, nsmap={"dashif": NS_DASHIF_CPS})
        parts.append(dashif.Laurl(ctx.license_url, licenseType="EME-1.0"))
    return b"".join(etree.tostring(p, encoding="utf-8") for p in parts)


def key_format(ctx: KeyContext) -> str:
    if ctx.system_id == WIDEVINE:
        return KEYFORMAT_WIDEVINE
    if ctx.system_id == PLAYREADY:
        return KEYFORMAT_PLAYREADY
    if ctx.system_id == FAIRPLAY:
        return KEYFORMAT_FAIRPLAY
    if ctx.system_id in CLEARKEY_IDS:
        return KEYFORMAT_CLEARKEY
    return KEYFORMAT_IDENTITY


def key_uri(ctx: KeyContext) -> str:
    """The HLS ``URI`` (and v1 ``URIExtXKey``) for this DRM."""
    if ctx.system_id == WIDEVINE:
        return f"data:text/plain;base64,{_b64(pssh_box(ctx))}"
    if ctx.system_id == PLAYREADY:
        return f"data:text/plain;charset=UTF-16;base64,{_b64(playready_object(ctx))}"
    if ctx.system_id == FAIRPLAY:
        return f"skd://{ctx.kid}"
    if ctx.system_id in CLEARKEY_IDS:
        return f"data:text/plain;base64,{_b64(ctx.kid.bytes)}"
    return ctx.key_url


def hls_method(ctx: KeyContext) -> str:
    """``3ea8778f-…`` (DASH-IF "HLS CBC") and the SPEKE v1 docs' ``81376844-…`` are HLS AES-128:
    whole-segment CBC, whatever scheme the key carries; ``be58615b-…`` ("HLS CBCS") is
    SAMPLE-AES."""
    if ctx.system_id in HLS_AES128_IDS:
        return "AES-128"
    return "SAMPLE-AES-CTR" if ctx.scheme in ("cenc", "cens") else "SAMPLE-AES"


def hls_line(ctx: KeyContext, playlist: str) -> str:
    """One complete ``#EXT-X-KEY`` (media) or ``#EXT-X-SESSION-KEY`` (master) line. A URI HLS
    cannot quote raises ValueError. KEYID and IV are written in lower-case hex."""
    tag = "#EXT-X-KEY" if playlist == "media" else "#EXT-X-SESSION-KEY"
    method = hls_method(ctx)
    attrs: list[tuple[str, AttrValue]] = [("METHOD", method), ("URI", Quoted(key_uri(ctx)))]
    if ctx.system_id in (WIDEVINE, *CLEARKEY_IDS):
        attrs.append(("KEYID", f"0x{ctx.kid.hex}"))
    # An explicit IV is the IV to encrypt with: signal it, except for CTR (Chromium refuses IV
    # there) and FairPlay (MediaPackage's guide forbids it).
    if (ctx.explicit_iv is not None and method != "SAMPLE-AES-CTR"
            and ctx.system_id != FAIRPLAY):
        attrs.append(("IV", f"0x{ctx.explicit_iv.hex()}"))
    attrs.append(("KEYFORMAT", Quoted(key_format(ctx))))
    attrs.append(("KEYFORMATVERSIONS", Quoted("1")))
    try:
        return f"{tag}:{format_attribute_list(attrs)}\n"
    except ManifestError as exc:
        raise ValueError(str(exc)) from None


def signal_value(ctx: KeyContext, placeholder: str) -> str | None:
    """Text content for one placeholder, or None when it does not apply to this DRM (v1 then
    leaves the element empty; v2 refuses the request)."""
    if placeholder == "PSSH":
        return _b64(pssh_box(ctx))
    if placeholder == "ContentProtectionData":
        return _b64(content_protection_data(ctx))
    if placeholder.startswith("HLSSignalingData:"):
        playlist = "media" if placeholder.endswith(":media") else "master"
        return _b64(hls_line(ctx, playlist).encode("utf-8"))
    if placeholder == "URIExtXKey":
        return _b64(key_uri(ctx).encode("utf-8"))
    if placeholder == "speke:KeyFormat":
        return _b64(key_format(ctx).encode("utf-8"))
    if placeholder == "speke:KeyFormatVersions":
        return _b64(b"1")
    if placeholder in ("speke:ProtectionHeader", "SmoothStreamingProtectionHeaderData"):
        if ctx.system_id != PLAYREADY:
            return None
        return _b64(playready_object(ctx))
    return None  # HDSSignalingData
