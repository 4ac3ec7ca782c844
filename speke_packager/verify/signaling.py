"""Read-only decoders for DRM signaling: HLS attribute lists, data: URIs, and thin wrappers over
the PlayReady/Widevine parsers of :mod:`speke_packager.drm`.

Each returns what it found or raises a typed error naming the cause; `verify` compares the
results with the KIDs and schemes read from the segments.
"""

from __future__ import annotations

import base64
import re
from uuid import UUID

from ..drm.playready import PlayReadyHeader
from ..drm.playready import parse_playready_object as _parse_pro
from ..drm.widevine import parse_widevine_pssh_data
from ..errors import ManifestError

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",\s]*)')
_HEX_KID = re.compile(r"0[xX][0-9a-fA-F]{32}")


def parse_attribute_list(text: str, *, line: int | None = None, path: str | None = None) -> dict[
    str, str
]:
    """RFC 8216 §4.2 attribute list -> {NAME: value} (quotes removed); strict about syntax."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _ATTR.match(text, pos)
        if m is None:
            raise ManifestError(f"malformed attribute list near {text[pos:pos + 20]!r}", line=line,
                                path=path)
        name, value = m.group(1), m.group(2)
        if name in out:
            raise ManifestError(f"attribute {name} repeated", line=line, path=path)
        out[name] = value[1:-1] if value.startswith('"') else value
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ManifestError(f"expected ',' after attribute {name}", line=line, path=path)
            pos += 1
    return out


def parse_hex_kid(text: str) -> UUID:
    """``0x`` + 32 hex digits (HLS KEYID/IV) -> UUID; :class:`ManifestError` otherwise."""
    if not _HEX_KID.fullmatch(text):
        raise ManifestError(f"{text!r} is not 0x followed by 32 hex digits")
    return UUID(hex=text[2:])


def parse_playready_object(pro: bytes) -> PlayReadyHeader:
    """Decode a PlayReady Object with :mod:`speke_packager.drm.playready` (KIDs come back in
    straight order, converted from the WRMHEADER's GUID byte order)."""
    return _parse_pro(pro)


def widevine_kids(data: bytes) -> list[UUID]:
    """KIDs of WidevinePsshData (:mod:`speke_packager.drm.widevine`)."""
    return list(parse_widevine_pssh_data(data).key_ids)


def decode_data_uri(uri: str) -> bytes:
    """The payload of a ``data:`` URI (base64 or percent-encoded)."""
    from urllib.parse import unquote_to_bytes

    if not uri.startswith("data:") or "," not in uri:
        raise ManifestError(f"not a data: URI: {uri[:40]!r}")
    meta, payload = uri[5:].split(",", 1)
    if meta.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError as exc:
            raise ManifestError("data: URI has invalid base64") from exc
    return unquote_to_bytes(payload)
