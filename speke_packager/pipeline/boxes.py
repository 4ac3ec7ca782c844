"""Top-level ISO BMFF layout of a single-file Representation (DASH SegmentBase) and its sidx.

Only what the pipeline needs to cut a file into init / index / fragments without reading it
whole: box headers are read with seeks; ``sidx`` is rewritten in place with new sizes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import Mp4FormatError, UnsupportedMediaError

_FRAGMENT_LEADERS = frozenset({b"styp", b"emsg", b"prft"})


@dataclass(frozen=True, slots=True)
class Box:
    type: bytes
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


def top_level_boxes(fd: int, name: str) -> list[Box]:
    """The top-level boxes of the open file ``fd`` (type, offset, size); ``name`` for errors."""
    out: list[Box] = []
    total = os.fstat(fd).st_size
    path = PurePosixPath(name)
    pos = 0
    while pos < total:
        head = os.pread(fd, 16, pos)
        if len(head) < 8:
            raise Mp4FormatError("truncated box header", box_path=f"{path.name}@{pos}")
        size, typ = struct.unpack(">I4s", head[:8])
        if size == 1:
            if len(head) < 16:
                raise Mp4FormatError("truncated largesize", box_path=f"{path.name}@{pos}")
            (size,) = struct.unpack(">Q", head[8:16])
        elif size == 0:
            size = total - pos
        if size < 8 or pos + size > total:
            raise Mp4FormatError(f"box {typ!r} has an invalid size {size}",
                                 box_path=f"{path.name}@{pos}")
        out.append(Box(typ, pos, size))
        pos += size
    return out


def split_single_file(fd: int, name: str) -> tuple[Box, Box | None, list[tuple[int, int]]]:
    """(init span ftyp..moov, the sidx box or None, fragment spans (offset, length)) of the
    open file ``fd`` (``name``: its package-relative path, for errors).

    A fragment starts at a ``moof`` (or the styp/emsg/prft right before it) and runs to the next
    fragment's start."""
    path = PurePosixPath(name)
    boxes = top_level_boxes(fd, name)
    moov = next((b for b in boxes if b.type == b"moov"), None)
    if moov is None:
        raise Mp4FormatError("no moov box", box_path=path.name)
    init = Box(b"init", 0, moov.end)
    sidxs = [b for b in boxes if b.type == b"sidx"]
    if len(sidxs) > 1:
        raise UnsupportedMediaError(f"{path.name}: more than one sidx box is not supported")
    starts: list[int] = []
    for i, b in enumerate(boxes):
        if b.type != b"moof":
            continue
        j = i
        while j > 0 and boxes[j - 1].type in _FRAGMENT_LEADERS and boxes[j - 1].offset >= \
                moov.end:
            j -= 1
        starts.append(boxes[j].offset)
    if not starts:
        raise UnsupportedMediaError(f"{path.name} is not fragmented (no moof); DASH SegmentBase "
                                    "input must be fragmented MP4")
    end = boxes[-1].end
    frags = [(s, e - s) for s, e in zip(starts, [*starts[1:], end], strict=True)]
    return init, (sidxs[0] if sidxs else None), frags


def rewrite_sidx(sidx: bytes, sidx_in_offset: int, sidx_out_offset: int,
                 spans: dict[int, tuple[int, int]]) -> bytes:
    """``sidx`` with referenced sizes (and first_offset) recomputed from where the fragments
    landed. ``spans`` maps input fragment offsets to (output offset, output length)."""
    if len(sidx) < 32 or sidx[4:8] != b"sidx":
        raise Mp4FormatError("not a sidx box", box_path="sidx")
    version = sidx[8]
    pos = 12 + 8  # reference_ID, timescale
    if version == 0:
        (first_offset,) = struct.unpack_from(">I", sidx, pos + 4)
        off_pos, off_fmt, pos = pos + 4, ">I", pos + 8
    else:
        (first_offset,) = struct.unpack_from(">Q", sidx, pos + 8)
        off_pos, off_fmt, pos = pos + 8, ">Q", pos + 16
    (count,) = struct.unpack_from(">H", sidx, pos + 2)
    pos += 4
    if pos + 12 * count > len(sidx):
        raise Mp4FormatError("sidx truncated", box_path="sidx")
    out = bytearray(sidx)
    in_start = sidx_in_offset + len(sidx) + first_offset
    frag_offsets = sorted(spans)
    cursor = in_start
    new_first: int | None = None
    for i in range(count):
        (ref,) = struct.unpack_from(">I", sidx, pos + 12 * i)
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
        struct.pack_into(">I", out, pos + 12 * i, new_size)
        cursor += size
    if new_first is not None:
        struct.pack_into(off_fmt, out, off_pos, new_first)
    return bytes(out)


def boxes_in(data: bytes | memoryview) -> list[Box]:
    """Top-level boxes of an in-memory segment."""
    out: list[Box] = []
    pos, total = 0, len(data)
    while pos < total:
        if pos + 8 > total:
            raise Mp4FormatError("truncated box header", box_path=f"segment@{pos}")
        size, typ = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            if pos + 16 > total:
                raise Mp4FormatError("truncated largesize", box_path=f"segment@{pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        elif size == 0:
            size = total - pos
        if size < 8 or pos + size > total:
            raise Mp4FormatError(f"box {typ!r} has an invalid size {size}",
                                 box_path=f"segment@{pos}")
        out.append(Box(bytes(typ), pos, size))
        pos += size
    return out
