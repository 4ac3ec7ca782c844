"""ISO/IEC 23001-7 ``pssh`` box: build and parse (bounded, strict)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from ..errors import MediaError


class PsshError(MediaError):
    """A pssh box is malformed."""


@dataclass(frozen=True, slots=True)
class Pssh:
    system_id: UUID
    version: int = 0
    kids: tuple[UUID, ...] = ()
    data: bytes = b""

    def to_bytes(self) -> bytes:
        return build_pssh(self.system_id, self.data, kids=self.kids, version=self.version)


def build_pssh(
    system_id: UUID, data: bytes = b"", *, kids: Sequence[UUID] = (), version: int | None = None
) -> bytes:
    """A whole pssh box. ``version`` defaults to 1 when KIDs are given, else 0."""
    if version is None:
        version = 1 if kids else 0
    if version not in (0, 1):
        raise PsshError(f"pssh version {version} is not 0 or 1")
    if version == 0 and kids:
        raise PsshError("a version 0 pssh box cannot list KIDs")
    body = bytearray()
    body += struct.pack(">B3s", version, b"\x00\x00\x00")
    body += system_id.bytes
    if version == 1:
        body += struct.pack(">I", len(kids))
        for k in kids:
            body += k.bytes
    body += struct.pack(">I", len(data))
    body += data
    return struct.pack(">I4s", 8 + len(body), b"pssh") + bytes(body)


def parse_pssh(box: bytes) -> Pssh:
    """Parse exactly one pssh box (the whole buffer). Raises :class:`PsshError`."""
    n = len(box)
    if n < 32:
        raise PsshError(f"pssh box too short ({n} bytes)")
    size, fourcc = struct.unpack_from(">I4s", box, 0)
    if fourcc != b"pssh":
        raise PsshError(f"not a pssh box (type {fourcc!r})")
    if size != n:
        raise PsshError(f"pssh box size field {size} does not match its length {n}")
    version = box[8]
    if version not in (0, 1):
        raise PsshError(f"unsupported pssh version {version}")
    system_id = UUID(bytes=bytes(box[12:28]))
    pos = 28
    kids: list[UUID] = []
    if version == 1:
        if pos + 4 > n:
            raise PsshError("pssh box truncated in KID count")
        (count,) = struct.unpack_from(">I", box, pos)
        pos += 4
        if pos + 16 * count + 4 > n:
            raise PsshError(f"pssh box claims {count} KIDs, more than it holds")
        for i in range(count):
            kids.append(UUID(bytes=bytes(box[pos + 16 * i : pos + 16 * i + 16])))
        pos += 16 * count
    if pos + 4 > n:
        raise PsshError("pssh box truncated in data size")
    (dsize,) = struct.unpack_from(">I", box, pos)
    pos += 4
    if pos + dsize != n:
        raise PsshError(f"pssh data size {dsize} does not match the box ({n - pos} bytes left)")
    return Pssh(system_id=system_id, version=version, kids=tuple(kids), data=bytes(box[pos:]))


def split_pssh_boxes(blob: bytes) -> list[Pssh]:
    """Parse a concatenation of pssh boxes (as some servers return)."""
    out: list[Pssh] = []
    pos = 0
    while pos < len(blob):
        if pos + 8 > len(blob):
            raise PsshError("trailing bytes after pssh boxes")
        (size,) = struct.unpack_from(">I", blob, pos)
        if size < 32 or pos + size > len(blob):
            raise PsshError(f"pssh box at offset {pos} has an invalid size {size}")
        out.append(parse_pssh(blob[pos : pos + size]))
        pos += size
    return out
