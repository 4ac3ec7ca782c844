"""The segment index box (``sidx``): read its reference list and write new referenced sizes.

Two rewrites share the reader: :func:`patch_sidx` grows each referenced size by the growth of
the moofs inside it (whole-file and per-segment encryption; hierarchical indexes work, ranges
are measured in input coordinates), and :func:`rewrite_sidx` recomputes every size and
``first_offset`` from where the fragments landed in the output (DASH single-file packages).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import Mp4FormatError, UnsupportedMediaError

__all__ = ["SidxLayout", "parse_sidx", "patch_sidx", "rewrite_sidx"]


@dataclass(frozen=True, slots=True)
class SidxLayout:
    """Where the fields of one sidx box sit: ``first_offset`` (value, position, struct format)
    and the ``count`` 12-byte references starting at ``refs``."""

    first_offset: int
    first_offset_pos: int
    first_offset_fmt: str
    refs: int
    count: int


def parse_sidx(raw: bytes | bytearray, box_path: str = "sidx") -> SidxLayout:
    """The layout of the whole sidx box ``raw``; every count is checked against its length."""
    if len(raw) < 12 or raw[4:8] != b"sidx":
        raise Mp4FormatError("not a sidx box" if len(raw) >= 8 else "truncated sidx",
                             box_path=box_path)
    version = raw[8]
    pos = 12 + 8  # reference_ID, timescale
    if version == 0:
        off_pos, fmt, pos = pos + 4, ">I", pos + 8
    else:
        off_pos, fmt, pos = pos + 8, ">Q", pos + 16
    if len(raw) < pos + 4:
        raise Mp4FormatError("truncated sidx", box_path=box_path)
    (first_offset,) = struct.unpack_from(fmt, raw, off_pos)
    (count,) = struct.unpack_from(">H", raw, pos + 2)
    pos += 4
    if len(raw) < pos + 12 * count:
        raise Mp4FormatError("sidx holds fewer references than it counts", box_path=box_path)
    return SidxLayout(first_offset, off_pos, fmt, pos, count)


def patch_sidx(raw: bytes, sidx_end: int, deltas: Sequence[tuple[int, int]]) -> bytes:
    """``raw`` sidx box (ending at input offset ``sidx_end``) with referenced sizes grown by
    the deltas ``(moof input offset, growth)`` that fall inside each reference."""
    b = bytearray(raw)
    lay = parse_sidx(b, "segment/sidx")
    start = sidx_end + lay.first_offset
    pos = lay.refs
    for _ in range(lay.count):
        word = struct.unpack_from(">I", b, pos)[0]
        size = word & 0x7FFFFFFF
        grow = sum(d for at, d in deltas if start <= at < start + size)
        if size + grow > 0x7FFFFFFF:
            raise Mp4FormatError("sidx referenced size overflows", box_path="segment/sidx")
        struct.pack_into(">I", b, pos, (word & 0x80000000) | (size + grow))
        start += size
        pos += 12
    return bytes(b)


def rewrite_sidx(sidx: bytes, sidx_in_offset: int, sidx_out_offset: int,
                 spans: dict[int, tuple[int, int]]) -> bytes:
    """``sidx`` with referenced sizes (and first_offset) recomputed from where the fragments
    landed. ``spans`` maps input fragment offsets to (output offset, output length); every
    reference must start at a fragment (hierarchical indexes are refused)."""
    lay = parse_sidx(sidx)
    out = bytearray(sidx)
    frag_offsets = sorted(spans)
    cursor = sidx_in_offset + len(sidx) + lay.first_offset
    new_first: int | None = None
    for i in range(lay.count):
        (ref,) = struct.unpack_from(">I", sidx, lay.refs + 12 * i)
        if ref >> 31:
            raise UnsupportedMediaError("hierarchical sidx (references to sidx) is not supported")
        size = ref & 0x7FFFFFFF
        inside = [o for o in frag_offsets if cursor <= o < cursor + size]
        if not inside or inside[0] != cursor:
            raise UnsupportedMediaError("sidx references do not line up with the fragments")
        new_start = spans[inside[0]][0]
        new_size = sum(spans[o][1] for o in inside)
        if new_first is None:
            new_first = new_start - (sidx_out_offset + len(sidx))
        if new_size >= 1 << 31:
            raise UnsupportedMediaError("a subsegment grew beyond the sidx size field")
        struct.pack_into(">I", out, lay.refs + 12 * i, new_size)
        cursor += size
    if new_first is not None:
        struct.pack_into(lay.first_offset_fmt, out, lay.first_offset_pos, new_first)
    return bytes(out)
