"""Movie fragments: read sample positions from moof/traf/tfhd/trun, write the patched moof.

Rewritten moofs use default-base-is-moof and give every trun an explicit data_offset; the new
offsets and every saio offset are patched after the whole moof is serialised
(media-encryption.md §4, "Patching a fragment").
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from ...errors import Mp4FormatError, UnsupportedMediaError
from .boxes import Box, Node, box_bytes, parse_tree

__all__ = ["Traf", "parse_moof", "write_moof"]

TFHD_BASE_DATA_OFFSET = 0x000001
TFHD_SDI = 0x000002
TFHD_DURATION = 0x000008
TFHD_SIZE = 0x000010
TFHD_FLAGS = 0x000020
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
TRUN_DATA_OFFSET = 0x000001
TRUN_FIRST_FLAGS = 0x000004
TRUN_DURATION = 0x000100
TRUN_SIZE = 0x000200


@dataclass(slots=True)
class Trun:
    node: Node
    flags: int
    count: int
    record_start: int  # offset of the per-sample records inside the payload
    data_start: int  # first sample, relative to the (old) moof start


@dataclass(slots=True)
class Traf:
    """One track fragment: sample positions are relative to the old moof start."""

    node: Node
    track_id: int
    tfhd_flags: int
    sample_description_index: int
    truns: list[Trun]
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    extra: list[bytes] = field(default_factory=list)  # whole boxes appended by the caller
    new_sdi: int | None = None  # rewrite tfhd sample_description_index (clear lead)

    @property
    def sample_count(self) -> int:
        return len(self.sizes)


def _tfhd(node: Node) -> tuple[int, int, int, int]:
    p = node.payload
    if len(p) < 8:
        raise Mp4FormatError("truncated tfhd", box_path=node.path)
    flags = int.from_bytes(p[1:4], "big")
    track_id = struct.unpack_from(">I", p, 4)[0]
    pos = 8
    sdi = 0
    size = -1
    need = 8 + 8 * bool(flags & TFHD_BASE_DATA_OFFSET) + 4 * (
        bool(flags & TFHD_SDI) + bool(flags & TFHD_DURATION) + bool(flags & TFHD_SIZE)
        + bool(flags & TFHD_FLAGS))
    if len(p) < need:
        raise Mp4FormatError("tfhd shorter than its flags say", box_path=node.path)
    if flags & TFHD_BASE_DATA_OFFSET:
        pos += 8
    if flags & TFHD_SDI:
        sdi = struct.unpack_from(">I", p, pos)[0]
        pos += 4
    if flags & TFHD_DURATION:
        pos += 4
    if flags & TFHD_SIZE:
        size = struct.unpack_from(">I", p, pos)[0]
    return flags, track_id, sdi, size


def parse_moof(buf: bytes | bytearray | memoryview, moof: Box,
               default_sizes: Mapping[int, int]) -> tuple[Node, list[Traf]]:
    """The moof tree and per-traf sample tables (offsets relative to the moof start)."""
    node = parse_tree(buf, moof, "segment")
    trafs: list[Traf] = []
    prev_end = 0
    for traf_node in node.find_all(b"traf"):
        flags, track_id, sdi, size = _tfhd(traf_node.need(b"tfhd"))
        if flags & TFHD_BASE_DATA_OFFSET:
            raise UnsupportedMediaError(
                f"track {track_id}: tfhd base-data-offset is not supported; "
                "remux with default-base-is-moof (CMAF)")
        if size < 0:
            if track_id not in default_sizes:
                raise Mp4FormatError(f"traf for unknown track {track_id}",
                                     box_path=traf_node.path)
            size = default_sizes[track_id]
        base = 0 if (flags & TFHD_DEFAULT_BASE_IS_MOOF or not trafs) else prev_end
        traf = Traf(traf_node, track_id, flags, sdi, [])
        pos = base
        for trun_node in traf_node.find_all(b"trun"):
            p = trun_node.payload
            if len(p) < 8:
                raise Mp4FormatError("truncated trun", box_path=trun_node.path)
            tflags = int.from_bytes(p[1:4], "big")
            count = struct.unpack_from(">I", p, 4)[0]
            rs = 8
            if tflags & TRUN_DATA_OFFSET:
                if len(p) < 12:
                    raise Mp4FormatError("truncated trun", box_path=trun_node.path)
                pos = base + struct.unpack_from(">i", p, 8)[0]
                rs += 4
            if tflags & TRUN_FIRST_FLAGS:
                rs += 4
            fields = bin(tflags & 0xF00).count("1")
            if len(p) < rs + 4 * fields * count:
                raise Mp4FormatError(f"trun holds fewer than its {count} samples",
                                     box_path=trun_node.path)
            if tflags & TRUN_SIZE:
                values = struct.unpack_from(f">{count * fields}I", p, rs)
                k = bin(tflags & TRUN_DURATION).count("1")
                sizes = list(values[k::fields])
            else:
                sizes = [size] * count
            traf.truns.append(Trun(trun_node, tflags, count, rs, pos))
            ends = list(accumulate(sizes, initial=pos))  # sample offsets, at C speed
            traf.offsets.extend(ends[:-1])
            pos = ends[-1]
            traf.sizes.extend(sizes)
        prev_end = pos
        trafs.append(traf)
    return node, trafs


def _new_tfhd(node: Node, sdi: int | None) -> bytes:
    p = node.payload
    flags = int.from_bytes(p[1:4], "big") | TFHD_DEFAULT_BASE_IS_MOOF
    rest = p[8:]
    if sdi is not None:
        if flags & TFHD_SDI:
            rest = struct.pack(">I", sdi) + rest[4:]
        else:
            rest = struct.pack(">I", sdi) + rest
            flags |= TFHD_SDI
    return bytes([p[0]]) + flags.to_bytes(3, "big") + p[4:8] + rest


def _new_trun(t: Trun) -> tuple[bytes, int]:
    """(trun box, position of its data_offset field inside the box)."""
    p = t.node.payload
    if t.flags & TRUN_DATA_OFFSET:
        return box_bytes(b"trun", p), 16
    flags = t.flags | TRUN_DATA_OFFSET
    body = bytes([p[0]]) + flags.to_bytes(3, "big") + p[4:8] + b"\x00\x00\x00\x00" + p[8:]
    return box_bytes(b"trun", body), 16


def write_moof(moof: Node, trafs: Sequence[Traf], old_size: int, *,
               drop: frozenset[bytes] = frozenset(), moof_extra: Sequence[bytes] = ()
               ) -> tuple[bytes, int]:
    """Serialise ``moof`` with each traf's ``extra`` boxes appended (children of type ``drop``
    removed) and ``moof_extra`` after the trafs. Returns ``(bytes, delta)``; every trun
    data_offset and saio offset is patched for the new size."""
    by_node = {id(t.node): t for t in trafs}
    out = bytearray(b"\x00\x00\x00\x00moof")
    trun_patches: list[tuple[int, int]] = []  # (pos of data_offset field, old relative data)
    saio_patches: list[tuple[int, int]] = []  # (pos of saio offset field, senc pos or -1)
    for child in moof.children or []:
        traf = by_node.get(id(child))
        if traf is None:
            if child.type not in drop:
                out += child.to_bytes()
            continue
        traf_start = len(out)
        out += b"\x00\x00\x00\x00traf"
        truns = {id(t.node): t for t in traf.truns}
        senc_pos = -1
        saio_fields: list[int] = []
        for c in [*(traf.node.children or [])]:
            if c.type in drop:
                continue
            if c.type == b"tfhd":
                out += box_bytes(b"tfhd", _new_tfhd(c, traf.new_sdi))
            elif id(c) in truns:
                t = truns[id(c)]
                raw, field_pos = _new_trun(t)
                trun_patches.append((len(out) + field_pos, t.data_start))
                out += raw
            else:
                out += c.to_bytes()
        for raw in traf.extra:
            kind = raw[4:8]
            if kind == b"senc":
                senc_pos = len(out)
            elif kind == b"saio":
                version = raw[8]
                saio_fields.append(len(out) + 16 + (8 if raw[11] & 1 else 0))
                if version != 0:
                    raise UnsupportedMediaError("only saio version 0 is written")
            out += raw
        for f in saio_fields:
            saio_patches.append((f, senc_pos))
        struct.pack_into(">I", out, traf_start, len(out) - traf_start)
    for raw in moof_extra:
        out += raw
    struct.pack_into(">I", out, 0, len(out))
    delta = len(out) - old_size
    for pos, data_start in trun_patches:
        if data_start < old_size:
            raise Mp4FormatError("sample data starts inside the moof", box_path="segment/moof")
        struct.pack_into(">i", out, pos, data_start + delta)
    for pos, senc in saio_patches:
        if senc < 0:
            raise Mp4FormatError("saio without senc", box_path="segment/moof")
        struct.pack_into(">I", out, pos, senc + 16)
    return bytes(out), delta
