"""Read-only decoders for DRM signaling: KEYID/IV hex, data: URIs, and thin wrappers over the
PlayReady/Widevine parsers of :mod:`speke_packager.drm`.

HLS attribute lists: read with the base layer's strict syntax reader (``_hls_attrs``), on purpose
not an own copy, since it only splits NAME=VALUE and decides nothing verify checks.

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

_HEX_KID = re.compile(r"0[xX][0-9a-fA-F]{32}")


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
