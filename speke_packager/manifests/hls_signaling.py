"""HLS key tags for one content key: the key server's lines verbatim, else built per DRM.

SPEKE v2 sends complete ``EXT-X-KEY`` / ``EXT-X-SESSION-KEY`` lines (HLSSignalingData); SPEKE v1
sends URIExtXKey, KeyFormat and KeyFormatVersions, from which ``keys`` writes the same lines; raw
keys get an ``identity`` tag pointing at the user's key URI (media-encryption.md §8.1, speke.md
§8).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace

from ..constants import (
    DRM_KEYFORMAT,
    KEYFORMAT_CLEARKEY,
    KEYFORMAT_FAIRPLAY,
    KEYFORMAT_IDENTITY,
    DrmSystem,
    Scheme,
)
from ..drm.pssh import parse_pssh
from ..errors import ManifestError
from ..model import DrmSignal, KeyEntry
from .hls import HlsKey, parse_key_lines

_FMP4_ONLY = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY)


def _data_uri(payload: bytes, charset: str | None = None) -> str:
    cs = f";charset={charset}" if charset else ""
    return f"data:text/plain{cs};base64,{base64.b64encode(payload).decode('ascii')}"


def _check_method(keys: list[HlsKey], scheme: Scheme, drm: DrmSystem) -> list[HlsKey]:
    for k in keys:
        if k.method != scheme.hls_method:
            raise ManifestError(
                f"the key server's HLS signaling for {drm.label} uses METHOD={k.method}, but the "
                f"package is encrypted with {scheme.value} (METHOD={scheme.hls_method})"
            )
    return keys


def _with_iv(keys: list[HlsKey], scheme: Scheme, iv: bytes | None) -> list[HlsKey]:
    """A key server's lines with the IV the media was encrypted with: appended when the line has
    none (so players never fall back to the sequence-number IV), checked when it has one.
    FairPlay and SAMPLE-AES-CTR lines are left as they are."""
    out: list[HlsKey] = []
    for k in keys:
        if (scheme is Scheme.CENC or k.method == "SAMPLE-AES-CTR"
                or k.keyformat == KEYFORMAT_FAIRPLAY or k.method == "NONE"):
            out.append(k)
            continue
        want = _tag_iv(scheme, iv)
        if k.iv is None:
            raw = f"{k.render()},IV=0x{want.hex().upper()}" if want else k.render()
            out.append(replace(k, iv=want, raw=raw))
        elif k.iv != want:
            raise ManifestError(f"the key server's {k.effective_keyformat} tag has an IV that "
                                "differs from the IV the media is encrypted with")
        else:
            out.append(k)
    return out


def _tag_iv(scheme: Scheme, iv: bytes | None) -> bytes | None:
    if scheme is Scheme.CENC:
        return None
    if iv is None:
        raise ManifestError(f"{scheme.value} HLS tags need an explicit IV")
    if len(iv) != 16:
        raise ManifestError("an HLS IV must be 16 bytes")
    return iv


def _built(sig: DrmSignal, entry: KeyEntry, scheme: Scheme, iv: bytes | None,
           key_uri: str | None) -> HlsKey:
    method = scheme.hls_method
    drm = sig.drm
    if drm in _FMP4_ONLY and scheme in (Scheme.AES_128, Scheme.SAMPLE_AES):
        raise ManifestError(f"{drm.label} cannot be signalled for {scheme.value}; it needs "
                            "fMP4 with cenc or cbcs")
    if drm is DrmSystem.FAIRPLAY and scheme in (Scheme.CENC, Scheme.AES_128):
        raise ManifestError(f"FairPlay cannot be used with {scheme.value}; FairPlay uses cbcs "
                            "(fMP4) or SAMPLE-AES (TS)")
    # SPEKE v1 fields without HLS lines: keys always writes the lines for v1 answers, so only
    # a DrmSignal built by hand (public model value) reaches this.
    if sig.uri_ext_x_key:  # SPEKE v1: URIExtXKey + KeyFormat + KeyFormatVersions
        keyformat = sig.key_format or None
        fairplay = (keyformat or DRM_KEYFORMAT[drm]) == KEYFORMAT_FAIRPLAY
        return HlsKey(method=method, uri=sig.uri_ext_x_key,
                      iv=None if fairplay else _tag_iv(scheme, iv), keyformat=keyformat,
                      keyformatversions=sig.key_format_versions or None)
    kid = entry.kid.bytes
    if drm is DrmSystem.WIDEVINE:
        if not sig.pssh:
            raise ManifestError(f"no Widevine pssh for KID {entry.kid}")
        return HlsKey(method=method, uri=_data_uri(sig.pssh), iv=_tag_iv(scheme, iv),
                      keyformat=DRM_KEYFORMAT[drm], keyformatversions="1", keyid=kid)
    if drm is DrmSystem.PLAYREADY:
        pro = sig.playready_object or (parse_pssh(sig.pssh).data if sig.pssh else None)
        if not pro:
            raise ManifestError(f"no PlayReady Object for KID {entry.kid}")
        return HlsKey(method=method, uri=_data_uri(pro, "UTF-16"), iv=_tag_iv(scheme, iv),
                      keyformat=DRM_KEYFORMAT[drm], keyformatversions="1", keyid=kid)
    if drm is DrmSystem.CLEARKEY:
        return HlsKey(method=method, uri=_data_uri(kid), iv=_tag_iv(scheme, iv),
                      keyformat=KEYFORMAT_CLEARKEY, keyformatversions="1", keyid=kid)
    if drm is DrmSystem.FAIRPLAY:
        raise ManifestError(f"no skd:// URI from the key server for FairPlay KID {entry.kid}")
    return identity_key(scheme, iv=iv, key_uri=key_uri, kid=str(entry.kid))


def identity_key(scheme: Scheme, *, iv: bytes | None, key_uri: str | None, kid: str) -> HlsKey:
    """An ``identity`` tag: the URI serves the 16 raw key bytes."""
    if not key_uri:
        raise ManifestError(f"no key URI for KID {kid}: pass --key-uri (the URL that serves the "
                            "16-byte key)")
    return HlsKey(method=scheme.hls_method, uri=key_uri, iv=_tag_iv(scheme, iv),
                  keyformat=KEYFORMAT_IDENTITY, keyformatversions="1")


def hls_keys(
    entry: KeyEntry,
    scheme: Scheme,
    *,
    iv: bytes | None,
    key_uri: str | None = None,
    drms: Sequence[DrmSystem] | None = None,
) -> list[HlsKey]:
    """Every ``EXT-X-KEY`` for ``entry`` (one per KEYFORMAT), in the key server's DRM order.

    ``iv`` is written for every non-FairPlay tag except SAMPLE-AES-CTR; for cbcs it must be the
    tenc constant IV. ``drms`` limits the DRMs signalled (None: all the key carries). A key with no
    DRM signaling (raw keys) gets one identity tag for ``key_uri``; a raw key signalled as
    ClearKey gets the ClearKey tag, and the identity tag too when ``key_uri`` is given."""
    return _keys(entry, scheme, iv, key_uri, drms, master=False)


def hls_session_keys(
    entry: KeyEntry,
    scheme: Scheme,
    *,
    iv: bytes | None,
    key_uri: str | None = None,
    drms: Sequence[DrmSystem] | None = None,
) -> list[HlsKey]:
    """``EXT-X-SESSION-KEY`` entries for ``entry``: the key server's master lines verbatim, else
    the same attributes as the media tags."""
    return _keys(entry, scheme, iv, key_uri, drms, master=True)


def _keys(entry: KeyEntry, scheme: Scheme, iv: bytes | None, key_uri: str | None,
          drms: Sequence[DrmSystem] | None, *, master: bool) -> list[HlsKey]:
    out: list[HlsKey] = []
    signals = [s for s in entry.drm if drms is None or s.drm in drms]
    for sig in signals:
        text = (sig.hls_master or sig.hls_media) if master else sig.hls_media
        if text:
            out.extend(_with_iv(_check_method(parse_key_lines(text), scheme, sig.drm), scheme,
                                iv))
        else:
            out.append(_built(sig, entry, scheme, iv, key_uri))
    raw = all(s.drm is DrmSystem.CLEARKEY and not (s.hls_media or s.hls_master
                                                   or s.uri_ext_x_key or s.pssh)
              for s in signals)
    if not signals or (raw and key_uri):  # raw keys: identity when there is a key URI
        out.append(identity_key(scheme, iv=iv, key_uri=key_uri, kid=str(entry.kid)))
    return out
