"""Read-only decoders for DRM signaling: HLS attribute lists, PlayReady Objects, Widevine pssh.

Each returns what it found or raises a typed error naming the cause; `verify` compares the
results with the KIDs and schemes read from the segments.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass
from uuid import UUID

from lxml import etree

from .._xml import parse_xml
from ..errors import CpixError, ManifestError, MediaError

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


class PlayReadyError(MediaError):
    """A PlayReady Object or WRM header cannot be decoded."""


@dataclass(frozen=True, slots=True)
class PlayReadyHeader:
    version: str
    kids: tuple[UUID, ...]  # in straight (big-endian) order, converted from the GUID form
    la_url: str | None


def parse_playready_object(pro: bytes) -> PlayReadyHeader:
    """Decode a PlayReady Object (little-endian records; type 1 = UTF-16LE WRMHEADER)."""
    if len(pro) < 6:
        raise PlayReadyError("PlayReady Object shorter than its 6-byte header")
    length, count = struct.unpack_from("<IH", pro, 0)
    if length != len(pro):
        raise PlayReadyError(f"PlayReady Object length field {length} != {len(pro)} bytes")
    pos = 6
    header: PlayReadyHeader | None = None
    for _ in range(count):
        if pos + 4 > len(pro):
            raise PlayReadyError("PlayReady Object record truncated")
        rtype, rlen = struct.unpack_from("<HH", pro, pos)
        pos += 4
        value = pro[pos : pos + rlen]
        if len(value) != rlen:
            raise PlayReadyError("PlayReady Object record longer than the object")
        pos += rlen
        if rtype == 1:
            header = parse_wrm_header(value)
    if header is None:
        raise PlayReadyError("PlayReady Object has no rights-management header record")
    return header


def parse_wrm_header(data: bytes) -> PlayReadyHeader:
    """Decode a UTF-16LE WRMHEADER (v4.0 to v4.3)."""
    try:
        text = data.decode("utf-16-le").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise PlayReadyError("WRMHEADER is not UTF-16LE") from exc
    try:
        root = parse_xml(text.encode("utf-8"), what="WRMHEADER")
    except CpixError as exc:
        raise PlayReadyError(str(exc)) from exc
    version = root.get("version") or ""
    kids: list[UUID] = []
    la_url: str | None = None
    for el in root.iter(etree.Element):
        local = etree.QName(el).localname
        if local == "KID":
            raw = el.get("VALUE") or (el.text or "").strip()
            if not raw:
                continue
            try:
                b = base64.b64decode(raw, validate=True)
            except ValueError as exc:
                raise PlayReadyError(f"WRMHEADER KID {raw!r} is not base64") from exc
            if len(b) != 16:
                raise PlayReadyError(f"WRMHEADER KID {raw!r} is not 16 bytes")
            kids.append(UUID(bytes_le=b))
        elif local == "LA_URL":
            la_url = (el.text or "").strip() or None
    return PlayReadyHeader(version, tuple(kids), la_url)


def widevine_kids(data: bytes) -> list[UUID]:
    """KIDs (field 2) of a WidevinePsshData protobuf; :class:`MediaError` if it is malformed."""
    kids: list[UUID] = []
    pos = 0
    n = len(data)

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            if pos >= n or shift > 63:
                raise MediaError("Widevine pssh data: truncated varint")
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    while pos < n:
        tag = varint()
        field_no, wire = tag >> 3, tag & 7
        if wire == 0:
            varint()
        elif wire == 2:
            size = varint()
            if pos + size > n:
                raise MediaError("Widevine pssh data: field longer than the data")
            if field_no == 2:
                if size != 16:
                    raise MediaError(f"Widevine pssh data: key_id of {size} bytes")
                kids.append(UUID(bytes=bytes(data[pos : pos + size])))
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise MediaError(f"Widevine pssh data: unsupported wire type {wire}")
        if pos > n:
            raise MediaError("Widevine pssh data: truncated")
    return kids


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
