"""PlayReady Object (PRO) and its ``WRMHEADER``: build and parse.

Layout (PlayReady Header Object): ``u32le total_length, u16le record_count`` then records
``u16le type, u16le length, value``; record type 1 is the WRM header, UTF-16LE XML without BOM.

Header versions written:

* ``4.0.0.0`` for ``cenc`` with one key: ``DATA/PROTECTINFO/{KEYLEN,ALGID=AESCTR}``, ``DATA/KID``,
  ``DATA/CHECKSUM``;
* ``4.2.0.0`` for ``cenc`` with several keys: ``DATA/PROTECTINFO/KIDS/KID@{ALGID,CHECKSUM,VALUE}``;
* ``4.3.0.0`` for ``cbcs``: as 4.2 with ``ALGID="AESCBC"`` and no checksum.

KIDs are written as base64 of the little-endian GUID bytes (``UUID.bytes_le``); parsing returns
ordinary UUIDs. The AESCTR checksum is the first 8 bytes of AES-ECB(content key, GUID bytes).
"""

from __future__ import annotations

import base64
import binascii
import importlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lxml import etree

from .._xml import parse_xml
from ..constants import Scheme
from ..crypto import aes_ecb_encrypt_block
from ..errors import CpixError
from .pssh import PsshError

__all__ = [
    "NS_WRMHEADER",
    "PlayReadyError",
    "PlayReadyHeader",
    "build_playready_object",
    "parse_playready_object",
    "playready_checksum",
]

NS_WRMHEADER = "http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader"
_RECORD_WRMHEADER = 1
_builder: Any = importlib.import_module("lxml.builder")  # lxml-stubs lacks lxml.builder
_MAX_PRO = 64 * 1024


class PlayReadyError(PsshError):
    """A PlayReady Object or WRMHEADER is malformed."""


@dataclass(frozen=True, slots=True)
class PlayReadyHeader:
    """Decoded PlayReady Object: header version, KIDs (normal UUIDs), licence URL, raw XML."""

    version: str
    kids: tuple[UUID, ...]
    la_url: str | None
    xml: str
    algid: str | None = None
    checksums: tuple[bytes | None, ...] = ()


def playready_checksum(kid: UUID, key: bytes) -> bytes:
    """AESCTR key checksum: first 8 bytes of AES-128-ECB(key, KID in GUID byte order)."""
    return aes_ecb_encrypt_block(key, kid.bytes_le)[:8]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_playready_object(
    kids_and_keys: Sequence[tuple[UUID, bytes]], *, la_url: str, scheme: Scheme
) -> bytes:
    """A PlayReady Object with one WRMHEADER record for ``kids_and_keys`` (see module doc)."""
    if not kids_and_keys:
        raise PlayReadyError("a PlayReady header needs at least one KID")
    for kid, key in kids_and_keys:
        if len(key) != 16:
            raise PlayReadyError(f"content key for KID {kid} must be 16 bytes")
    E = _builder.ElementMaker(namespace=NS_WRMHEADER, nsmap={None: NS_WRMHEADER})
    if scheme is Scheme.CENC and len(kids_and_keys) == 1:
        kid, key = kids_and_keys[0]
        header = E.WRMHEADER(
            E.DATA(
                E.PROTECTINFO(E.KEYLEN("16"), E.ALGID("AESCTR")),
                E.KID(_b64(kid.bytes_le)),
                E.CHECKSUM(_b64(playready_checksum(kid, key))),
                E.LA_URL(la_url),
            ),
            version="4.0.0.0",
        )
    elif scheme in (Scheme.CENC, Scheme.CBCS):
        cbcs = scheme is Scheme.CBCS
        kid_elems = []
        for kid, key in kids_and_keys:
            attrs = {"ALGID": "AESCBC" if cbcs else "AESCTR", "VALUE": _b64(kid.bytes_le)}
            if not cbcs:
                attrs["CHECKSUM"] = _b64(playready_checksum(kid, key))
            kid_elems.append(E.KID(**attrs))
        header = E.WRMHEADER(
            E.DATA(E.PROTECTINFO(E.KIDS(*kid_elems)), E.LA_URL(la_url)),
            version="4.3.0.0" if cbcs else "4.2.0.0",
        )
    else:
        raise PlayReadyError(f"PlayReady does not support scheme {scheme.value}")
    text = str(etree.tostring(header, encoding="unicode"))
    record = text.encode("utf-16-le")
    if len(record) > 0xFFFF - 10:
        raise PlayReadyError("PlayReady header too large")
    body = struct.pack("<HHH", 1, _RECORD_WRMHEADER, len(record)) + record
    return struct.pack("<I", 4 + len(body)) + body


def _kid_from_b64(text: str | None) -> UUID:
    try:
        raw = base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise PlayReadyError("PlayReady KID is not base64") from None
    if len(raw) != 16:
        raise PlayReadyError(f"PlayReady KID is {len(raw)} bytes, not 16")
    return UUID(bytes_le=raw)


def _checksum(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise PlayReadyError("PlayReady CHECKSUM is not base64") from None


def parse_playready_object(pro: bytes) -> PlayReadyHeader:
    """Parse a PlayReady Object; raises :class:`PlayReadyError` when malformed."""
    n = len(pro)
    if n < 10 or n > _MAX_PRO:
        raise PlayReadyError(f"PlayReady Object has an implausible size ({n} bytes)")
    total, count = struct.unpack_from("<IH", pro, 0)
    if total != n:
        raise PlayReadyError(f"PlayReady Object length field {total} does not match its size {n}")
    pos = 6
    header_xml: str | None = None
    for _ in range(count):
        if pos + 4 > n:
            raise PlayReadyError("PlayReady Object truncated in a record header")
        rtype, rlen = struct.unpack_from("<HH", pro, pos)
        pos += 4
        if pos + rlen > n:
            raise PlayReadyError("PlayReady record runs past the end of the object")
        if rtype == _RECORD_WRMHEADER and header_xml is None:
            try:
                header_xml = bytes(pro[pos : pos + rlen]).decode("utf-16-le")
            except UnicodeDecodeError:
                raise PlayReadyError("WRMHEADER record is not UTF-16LE") from None
        pos += rlen
    if pos != n:
        raise PlayReadyError("trailing bytes after the PlayReady records")
    if header_xml is None:
        raise PlayReadyError("PlayReady Object has no WRMHEADER record (type 1)")
    header_xml = header_xml.lstrip("\ufeff")
    try:
        root = parse_xml(header_xml.encode("utf-8"), what="WRMHEADER")
    except CpixError as exc:
        raise PlayReadyError(str(exc)) from None
    if root.tag != f"{{{NS_WRMHEADER}}}WRMHEADER":
        raise PlayReadyError(f"PlayReady record root is {root.tag}, not WRMHEADER")
    version = root.get("version") or ""
    ns = {"p": NS_WRMHEADER}
    kids: list[UUID] = []
    sums: list[bytes | None] = []
    algid: str | None = None
    for el in root.iterfind("p:DATA/p:KID", ns):  # 4.0.0.0
        kids.append(_kid_from_b64(el.text))
    for el in root.iterfind("p:DATA/p:CHECKSUM", ns):
        sums.append(_checksum(el.text))
    alg_el = root.find("p:DATA/p:PROTECTINFO/p:ALGID", ns)
    if alg_el is not None:
        algid = (alg_el.text or "").strip()
    for el in [*root.iterfind("p:DATA/p:PROTECTINFO/p:KID", ns),  # 4.1.0.0
               *root.iterfind("p:DATA/p:PROTECTINFO/p:KIDS/p:KID", ns)]:  # 4.2 / 4.3
        kids.append(_kid_from_b64(el.get("VALUE")))
        sums.append(_checksum(el.get("CHECKSUM")))
        algid = el.get("ALGID") or algid
    if not kids:
        raise PlayReadyError("WRMHEADER carries no KID")
    la_el = root.find("p:DATA/p:LA_URL", ns)
    la_url = (la_el.text or "").strip() if la_el is not None else None
    return PlayReadyHeader(version=version, kids=tuple(kids), la_url=la_url, xml=header_xml,
                           algid=algid, checksums=tuple(sums))
