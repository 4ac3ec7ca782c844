"""ISO BMFF box reading and writing: bounded headers, a small tree for moov/moof, raw leaves.

Only the boxes encryption touches are modelled as containers; every other box is kept as its raw
bytes and written back unchanged. Errors name the box path (``moov/trak[1]/mdia``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ...errors import Mp4FormatError

__all__ = [
    "CONTAINERS",
    "MAX_DEPTH",
    "Box",
    "Node",
    "box_bytes",
    "file_boxes",
    "full_box",
    "iter_boxes",
    "parse_tree",
]

# Boxes whose payload is a plain list of child boxes.
CONTAINERS = frozenset({
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"edts", b"dinf", b"sinf", b"schi",
    b"moof", b"traf", b"udta", b"mfra",
})

_U32 = struct.Struct(">I")
_HDR = struct.Struct(">I4s")


@dataclass(frozen=True, slots=True)
class Box:
    """Where one box sits in a buffer: ``start`` (its size field), header length and ``end``."""

    type: bytes
    start: int
    header: int
    end: int

    @property
    def payload_start(self) -> int:
        return self.start + self.header

    @property
    def size(self) -> int:
        return self.end - self.start


def _name(fourcc: bytes) -> str:
    return fourcc.decode("latin-1")


def _header(buf: bytes | bytearray | memoryview, pos: int, left: int, path: str, index: int
            ) -> tuple[bytes, int, int]:
    """(fourcc, header length, size) of the box at ``buf[pos:]`` with ``left`` bytes up to the
    end of its parent; every size is checked."""
    where = f"{path}/#{index}" if path else f"#{index}"
    if left < 8:
        raise Mp4FormatError(f"truncated box header ({left} bytes left)", box_path=where)
    size, fourcc = _HDR.unpack_from(buf, pos)
    where = f"{path}/{_name(fourcc)}" if path else _name(fourcc)
    header = 8
    if size == 1:
        if left < 16:
            raise Mp4FormatError("truncated 64-bit box size", box_path=where)
        (size,) = struct.unpack_from(">Q", buf, pos + 8)
        header = 16
    elif size == 0:
        size = left
    if fourcc == b"uuid":
        header += 16
    if size < header:
        raise Mp4FormatError(f"box size {size} smaller than its header", box_path=where)
    if size > left:
        raise Mp4FormatError(
            f"box size {size} runs past the end of its parent ({left} bytes left)",
            box_path=where)
    return bytes(fourcc), header, size


def iter_boxes(buf: bytes | bytearray | memoryview, start: int = 0, end: int | None = None,
               *, path: str = "") -> Iterator[Box]:
    """Yield the boxes laid end to end in ``buf[start:end]``; every size is checked."""
    stop = len(buf) if end is None else end
    pos = start
    index = 0
    while pos < stop:
        fourcc, header, size = _header(buf, pos, stop - pos, path, index)
        yield Box(fourcc, pos, header, pos + size)
        pos += size
        index += 1


def file_boxes(fd: int, name: str) -> list[Box]:
    """The top-level boxes of the open file ``fd`` (``name``: its path, for errors), read
    header by header with ``pread`` (the file is never read whole); checked like
    :func:`iter_boxes`."""
    out: list[Box] = []
    total = os.fstat(fd).st_size
    label = PurePosixPath(name).name
    pos = 0
    while pos < total:
        head = os.pread(fd, min(16, total - pos), pos)
        fourcc, header, size = _header(head, 0, total - pos, label, len(out))
        out.append(Box(fourcc, pos, header, pos + size))
        pos += size
    return out


def box_bytes(fourcc: bytes, payload: bytes | bytearray | memoryview) -> bytes:
    """A whole box with a 32-bit size (64-bit when needed)."""
    n = 8 + len(payload)
    if n > 0xFFFFFFFF:
        return struct.pack(">I4sQ", 1, fourcc, n + 8) + bytes(payload)
    return _HDR.pack(n, fourcc) + bytes(payload)


def full_box(fourcc: bytes, version: int, flags: int, payload: bytes | bytearray) -> bytes:
    """A whole FullBox: version and 24-bit flags, then ``payload``."""
    return box_bytes(fourcc, struct.pack(">I", (version << 24) | (flags & 0xFFFFFF)) + payload)


@dataclass(slots=True)
class Node:
    """A box in an editable tree.

    Containers have ``children``; a leaf keeps its payload raw. ``prefix`` holds the bytes of a
    box that has fixed fields before its children (stsd's entry count, sample entry fields)."""

    type: bytes
    payload: bytes = b""
    children: list[Node] | None = None
    prefix: bytes = b""
    path: str = field(default="", compare=False)

    def find(self, fourcc: bytes) -> Node | None:
        for c in self.children or ():
            if c.type == fourcc:
                return c
        return None

    def find_all(self, fourcc: bytes) -> list[Node]:
        return [c for c in self.children or () if c.type == fourcc]

    def need(self, fourcc: bytes) -> Node:
        found = self.find(fourcc)
        if found is None:
            raise Mp4FormatError(f"missing {_name(fourcc)} box", box_path=self.path)
        return found

    def to_bytes(self) -> bytes:
        if self.children is None:
            return box_bytes(self.type, self.payload)
        body = b"".join(c.to_bytes() for c in self.children)
        return box_bytes(self.type, self.prefix + body)


# Fixed-field length (after the box header) of sample entries, by kind.
_VISUAL_ENTRIES = frozenset({b"avc1", b"avc3", b"hvc1", b"hev1", b"vp09", b"av01", b"encv",
                             b"dvh1", b"dvhe", b"mp4v"})
_AUDIO_ENTRIES = frozenset({b"mp4a", b"ac-3", b"ec-3", b"Opus", b"enca", b"fLaC", b"ac-4",
                            b"mha1", b"alac"})


def sample_entry_prefix_len(fourcc: bytes, payload: bytes | memoryview, path: str) -> int | None:
    """Length of the fixed fields of a visual/audio sample entry, None for other entries."""
    if fourcc in _VISUAL_ENTRIES:
        n = 78
    elif fourcc in _AUDIO_ENTRIES:
        if len(payload) < 28:
            raise Mp4FormatError("truncated audio sample entry", box_path=path)
        version = struct.unpack_from(">H", payload, 8)[0]
        n = {0: 28, 1: 44, 2: 64}.get(version, -1)
        if n < 0:
            raise Mp4FormatError(f"unknown audio sample entry version {version}", box_path=path)
    else:
        return None
    if len(payload) < n:
        raise Mp4FormatError("truncated sample entry", box_path=path)
    return n


# Deepest nesting parse_tree follows. Real files need about 10 levels
# (moov/trak/mdia/minf/stbl/stsd/encv/sinf/schi/tenc); a hostile file of a thousand nested
# containers gets a typed error instead of a RecursionError.
MAX_DEPTH = 32


def parse_tree(buf: bytes | bytearray | memoryview, box: Box, path: str = "",
               _depth: int = 0) -> Node:
    """Parse ``box`` of ``buf`` into a :class:`Node` tree (containers, stsd, sample entries);
    boxes nested deeper than :data:`MAX_DEPTH` raise :class:`Mp4FormatError`."""
    mv = memoryview(buf)
    where = f"{path}/{_name(box.type)}" if path else _name(box.type)
    if _depth >= MAX_DEPTH:
        raise Mp4FormatError(f"boxes nested deeper than {MAX_DEPTH} levels",
                             box_path=where if len(where) < 200 else f"...{where[-120:]}")
    payload = mv[box.payload_start:box.end]
    if box.type == b"uuid":
        return Node(box.type, bytes(mv[box.start + 8:box.end]), path=where)
    prefix_len: int | None
    if box.type in CONTAINERS:
        prefix_len = 0
    elif box.type == b"stsd":
        if len(payload) < 8:
            raise Mp4FormatError("truncated stsd", box_path=where)
        prefix_len = 8
    else:
        prefix_len = sample_entry_prefix_len(box.type, payload, where) if path.endswith(
            "stsd") else None
    if prefix_len is None:
        return Node(box.type, bytes(payload), path=where)
    children: list[Node] = []
    counts: dict[bytes, int] = {}
    for child in iter_boxes(mv, box.payload_start + prefix_len, box.end, path=where):
        k = counts.get(child.type, 0)
        counts[child.type] = k + 1
        node = parse_tree(mv, child, where, _depth + 1)
        if k:
            node.path = f"{node.path}[{k}]"
        children.append(node)
    return Node(box.type, children=children, prefix=bytes(payload[:prefix_len]), path=where)


def u32(buf: bytes | bytearray | memoryview, pos: int) -> int:
    """Big-endian u32 at ``pos``."""
    return int(_U32.unpack_from(buf, pos)[0])
