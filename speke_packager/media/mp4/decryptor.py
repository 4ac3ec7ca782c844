"""Mp4Decryptor: our own cenc/cbcs decryptor, for round-trip tests (never the only oracle).

Reads tenc defaults, per-fragment seig groups (rotation, clear lead), senc IVs and subsamples;
writes clear sample entries and moofs without the encryption boxes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from uuid import UUID

from ...constants import Scheme
from ...errors import Mp4FormatError, UnsupportedMediaError, UsageError
from .fragment import Traf, parse_moof, write_moof
from .init import Protection, parse_init, strip_init
from .sample_crypto import cbcs_sample, cenc_sample
from .segment import SegmentRewriter

__all__ = ["Mp4Decryptor"]

_DROP = frozenset({b"senc", b"saiz", b"saio", b"pssh"})


def _seig_group(traf: Traf, default: Protection) -> Protection:
    """The protection of a traf: a traf-local seig entry if sbgp points at one, else tenc."""
    sgpd = next((c for c in traf.node.find_all(b"sgpd") if c.payload[4:8] == b"seig"), None)
    sbgp = next((c for c in traf.node.find_all(b"sbgp") if c.payload[4:8] == b"seig"), None)
    if sbgp is None or sgpd is None:
        return default
    p = sbgp.payload
    n = struct.unpack_from(">I", p, 8 + (4 if p[0] == 1 else 0))[0]
    pos = 12 + (4 if p[0] == 1 else 0)
    indexes = {struct.unpack_from(">I", p, pos + 8 * i + 4)[0] for i in range(n)}
    if len(indexes) != 1:
        raise UnsupportedMediaError("several seig groups in one traf")
    index = indexes.pop()
    if index == 0:
        return default
    if index < 0x10000:
        raise UnsupportedMediaError("seig groups in stbl are not supported")
    g = sgpd.payload
    default_length = struct.unpack_from(">I", g, 8)[0] if g[0] == 1 else 0
    count = struct.unpack_from(">I", g, 12 if g[0] == 1 else 8)[0]
    pos = 16 if g[0] == 1 else 12
    k = index - 0x10000
    if not 1 <= k <= count:
        raise Mp4FormatError("sbgp points past the sgpd entries", box_path=sgpd.path)
    for _ in range(k - 1):
        if default_length == 0:
            pos += 4 + struct.unpack_from(">I", g, pos)[0]
        else:
            pos += default_length
    if default_length == 0:
        pos += 4
    e = g[pos:]
    if len(e) < 20:
        raise Mp4FormatError("truncated seig entry", box_path=sgpd.path)
    protected, iv_size = e[2], e[3]
    kid = UUID(bytes=bytes(e[4:20]))
    const = bytes(e[21:21 + e[20]]) if protected and iv_size == 0 else None
    if not protected:
        return Protection(default.scheme, kid, -1, None, 0, 0)
    return Protection(default.scheme, kid, iv_size, const, e[1] >> 4, e[1] & 15)


class Mp4Decryptor:
    """Decrypt segments written by any cenc/cbcs packager, given ``{KID: key}``."""

    def __init__(self, init: bytes, keys: Mapping[UUID, bytes]) -> None:
        self._init = parse_init(init)
        self._keys = dict(keys)
        self._defaults = {t.track_id: t.default_sample_size for t in self._init.tracks.values()}
        self._prot = {tid: t.protection for tid, t in self._init.tracks.items()
                      if t.protection is not None}
        self._two_entries = {tid for tid, t in self._init.tracks.items() if t.entry_count == 2}
        self._clear_init = strip_init(parse_init(init))

    def clear_init(self) -> bytes:
        """The init segment with the original sample entries and no pssh."""
        return self._clear_init

    def decrypt_segment(self, data: bytes) -> bytes:
        """The clear segment: samples decrypted, senc/saiz/saio/seig/pssh removed."""
        rw = SegmentRewriter(data)
        for box in rw.boxes:
            if box.type != b"moof":
                continue
            node, trafs = parse_moof(rw.buf, box, self._defaults)
            for traf in trafs:
                rw.check_samples(box, traf)
                default = self._prot.get(traf.track_id)
                if default is None:
                    continue
                if traf.sample_description_index == 2 and traf.track_id in self._two_entries:
                    traf.new_sdi = 1  # a clear-lead fragment pointing at the clear entry
                    continue
                self._decrypt_traf(rw.out, box.start, traf, default)
                traf.node.children = [
                    c for c in traf.node.children or []
                    if not (c.type in (b"sbgp", b"sgpd") and c.payload[4:8] == b"seig")]
            new, delta = write_moof(node, trafs, box.size, drop=_DROP)
            rw.replace(box, new, delta)
        return rw.result()

    def _decrypt_traf(self, out: bytearray, base: int, traf: Traf, default: Protection) -> None:
        prot = _seig_group(traf, default)
        if prot.iv_size < 0:
            return  # isProtected = 0: a clear fragment
        senc = traf.node.find(b"senc")
        if senc is None:
            raise Mp4FormatError("protected traf without senc", box_path=traf.node.path)
        key = self._keys.get(prot.kid)
        if key is None:
            raise UsageError(f"no key for KID {prot.kid}")
        p = senc.payload
        if len(p) < 8:
            raise Mp4FormatError("truncated senc", box_path=senc.path)
        flags = int.from_bytes(p[1:4], "big")
        count = struct.unpack_from(">I", p, 4)[0]
        if count != traf.sample_count:
            raise Mp4FormatError(f"senc has {count} samples, the traf {traf.sample_count}",
                                 box_path=senc.path)
        pos = 8
        for off, size in zip(traf.offsets, traf.sizes, strict=True):
            iv = prot.constant_iv or b""
            if prot.iv_size:
                iv = bytes(p[pos:pos + prot.iv_size])
                pos += prot.iv_size
            subs: list[tuple[int, int]] | None = None
            if flags & 2:
                if pos + 2 > len(p):
                    raise Mp4FormatError("truncated senc", box_path=senc.path)
                (n,) = struct.unpack_from(">H", p, pos)
                pos += 2
                if pos + 6 * n > len(p):
                    raise Mp4FormatError("truncated senc subsamples", box_path=senc.path)
                subs = [struct.unpack_from(">HI", p, pos + 6 * i) for i in range(n)]
                pos += 6 * n
                if sum(c + q for c, q in subs) != size:
                    raise Mp4FormatError("subsamples do not add up to the sample size",
                                         box_path=senc.path)
            if pos > len(p):
                raise Mp4FormatError("truncated senc", box_path=senc.path)
            if prot.scheme is Scheme.CENC:
                cenc_sample(out, base + off, size, key=key, iv=iv, subsamples=subs)
            else:
                cbcs_sample(out, base + off, size, key=key, iv=iv, subsamples=subs,
                            crypt=prot.crypt, skip=prot.skip, decrypt=True)
