"""Widevine ``WidevinePsshData``: the protobuf message inside a Widevine pssh box.

Only the fields a packager sets are modelled (field numbers from Widevine's public
``widevine_pssh_data.proto``, the same ones Shaka Packager writes):

==== ===================== ========================================================
 no   name                  wire form
==== ===================== ========================================================
 2    key_ids               bytes, repeated; 16-byte KIDs in normal (big-endian) order
 3    provider              string
 4    content_id            bytes
 9    protection_scheme     uint32; the scheme fourcc as a big-endian integer
==== ===================== ========================================================

Unknown fields are skipped when parsing (wire types 0, 1, 2, 5); groups are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from .pssh import PsshError

__all__ = [
    "WidevineDataError",
    "WidevinePsshData",
    "build_widevine_pssh_data",
    "parse_widevine_pssh_data",
]

_KEY_IDS, _PROVIDER, _CONTENT_ID, _PROTECTION_SCHEME = 2, 3, 4, 9
_SCHEMES = ("cenc", "cbcs", "cbc1", "cens")


class WidevineDataError(PsshError):
    """WidevinePsshData bytes are not a valid protobuf message of the expected shape."""


@dataclass(frozen=True, slots=True)
class WidevinePsshData:
    """Decoded WidevinePsshData (the fields speke-packager writes)."""

    key_ids: tuple[UUID, ...] = ()
    content_id: bytes | None = None
    provider: str | None = None
    protection_scheme: str | None = None  # 'cenc', 'cbcs', ... (fourcc text)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def build_widevine_pssh_data(
    kids: Sequence[UUID],
    content_id: bytes | None = None,
    provider: str | None = None,
    protection_scheme: str | None = None,
) -> bytes:
    """Serialise a WidevinePsshData protobuf (field order 2, 3, 4, 9, as Shaka Packager)."""
    if protection_scheme is not None and protection_scheme not in _SCHEMES:
        raise WidevineDataError(f"unknown protection scheme {protection_scheme!r}")
    out = bytearray()
    for kid in kids:
        out += _field_bytes(_KEY_IDS, kid.bytes)
    if provider is not None:
        out += _field_bytes(_PROVIDER, provider.encode("utf-8"))
    if content_id is not None:
        out += _field_bytes(_CONTENT_ID, content_id)
    if protection_scheme is not None:
        (fourcc,) = struct.unpack(">I", protection_scheme.encode("ascii"))
        out += _varint(_PROTECTION_SCHEME << 3 | 0) + _varint(fourcc)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise WidevineDataError("WidevinePsshData truncated inside a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise WidevineDataError("WidevinePsshData varint longer than 10 bytes")


def parse_widevine_pssh_data(data: bytes) -> WidevinePsshData:
    """Decode WidevinePsshData; raises :class:`WidevineDataError` on malformed input."""
    kids: list[UUID] = []
    content_id: bytes | None = None
    provider: str | None = None
    scheme: str | None = None
    pos = 0
    n = len(data)
    while pos < n:
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WidevineDataError("WidevinePsshData has a field number 0")
        if wire == 0:
            value, pos = _read_varint(data, pos)
            if number == _PROTECTION_SCHEME:
                if value >= 1 << 32:
                    raise WidevineDataError("protection_scheme does not fit in 32 bits")
                raw = struct.pack(">I", value)
                try:
                    scheme = raw.decode("ascii")
                except UnicodeDecodeError:
                    raise WidevineDataError(f"protection_scheme 0x{value:08x} is not a fourcc"
                                            ) from None
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > n:
                raise WidevineDataError(f"WidevinePsshData field {number} runs past the end")
            payload = bytes(data[pos : pos + length])
            pos += length
            if number == _KEY_IDS:
                if length != 16:
                    raise WidevineDataError(f"key_id is {length} bytes, not 16")
                kids.append(UUID(bytes=payload))
            elif number == _CONTENT_ID:
                content_id = payload
            elif number == _PROVIDER:
                try:
                    provider = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise WidevineDataError("provider is not UTF-8") from None
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise WidevineDataError(f"WidevinePsshData uses unsupported wire type {wire}")
        if pos > n:
            raise WidevineDataError("WidevinePsshData truncated inside a fixed-size field")
    return WidevinePsshData(key_ids=tuple(kids), content_id=content_id, provider=provider,
                            protection_scheme=scheme)
