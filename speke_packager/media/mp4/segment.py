"""A media segment being rewritten: samples changed in a copy, moofs replaced, sidx/mfra fixed.

``sidx`` referenced sizes grow by the growth of the moofs inside each referenced range
(:func:`.sidx.patch_sidx`); ``tfra`` moof offsets are mapped to the new positions.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from operator import add

from ...errors import Mp4FormatError
from .boxes import Box, iter_boxes
from .fragment import Traf
from .sidx import patch_sidx

__all__ = ["SegmentRewriter", "patch_mfra"]


def patch_mfra(raw: bytes, moved: dict[int, int]) -> bytes:
    """``raw`` mfra with every tfra moof_offset mapped through ``moved`` (old -> new)."""
    b = bytearray(raw)
    for box in iter_boxes(b, 8, len(b), path="mfra"):
        if box.type != b"tfra":
            continue
        p = box.payload_start
        if box.end - p < 16:
            raise Mp4FormatError("truncated tfra", box_path="mfra/tfra")
        version = b[p]
        lens = struct.unpack_from(">I", b, p + 8)[0]
        n = struct.unpack_from(">I", b, p + 12)[0]
        traf_len = ((lens >> 4) & 3) + 1
        trun_len = ((lens >> 2) & 3) + 1
        sample_len = (lens & 3) + 1
        w = 8 if version == 1 else 4
        entry = 2 * w + traf_len + trun_len + sample_len
        pos = p + 16
        if pos + n * entry > box.end:
            raise Mp4FormatError("tfra holds fewer entries than it counts", box_path="mfra/tfra")
        fmt = ">Q" if w == 8 else ">I"
        for _ in range(n):
            old = struct.unpack_from(fmt, b, pos + w)[0]
            struct.pack_into(fmt, b, pos + w, moved.get(old, old))
            pos += entry
    return bytes(b)


class SegmentRewriter:
    """Input segment (read-only), box replacements and sample patches.

    Sample bytes change either through :meth:`patch` (same-length replacements of input
    ranges, joined straight into the result: the segment is never copied first) or in place in
    :attr:`out`, a writable copy made on first use."""

    def __init__(self, data: bytes | bytearray | memoryview, *, base_offset: int = 0) -> None:
        self.buf = memoryview(data)
        self._out: bytearray | None = None
        self.patches: list[tuple[int, bytes | bytearray | memoryview]] = []
        self.boxes = list(iter_boxes(self.buf, path="segment"))
        self.base_offset = base_offset
        self._mdats = [b for b in self.boxes if b.type == b"mdat"]
        self._repl: dict[int, tuple[Box, bytes]] = {}
        self.deltas: list[tuple[int, int]] = []  # (moof input offset, growth), absolute
        if not any(b.type == b"moof" for b in self.boxes):
            raise Mp4FormatError("media segment has no moof box", box_path="segment")

    @property
    def out(self) -> bytearray:
        """A writable copy of the input (made once, on first use) for in-place sample edits."""
        if self._out is None:
            self._out = bytearray(self.buf)
        return self._out

    def patch(self, pos: int, data: bytes | bytearray | memoryview) -> None:
        """Replace ``len(data)`` input bytes at ``pos`` (inside an mdat) in the result."""
        self.patches.append((pos, data))

    def check_samples(self, moof: Box, traf: Traf) -> None:
        """Every sample of ``traf`` must lie inside one mdat payload of this segment."""
        if not traf.sizes:
            return
        first = moof.start + traf.offsets[0]
        last = max(map(add, traf.offsets, traf.sizes)) + moof.start
        # the data must follow this moof and precede the next one (only this moof's growth
        # shifts it)
        nxt = min((b.start for b in self.boxes if b.type == b"moof" and b.start > moof.start),
                  default=len(self.buf))
        for m in self._mdats:
            if m.payload_start <= first and last <= m.end and moof.end <= m.start < nxt:
                return
        raise Mp4FormatError(
            f"track {traf.track_id}: samples [{first}, {last}) are not inside an mdat "
            f"(segment is {len(self.buf)} bytes)", box_path=traf.node.path)

    def replace(self, box: Box, new: bytes, delta: int) -> None:
        self._repl[box.start] = (box, new)
        if box.type == b"moof":
            self.deltas.append((self.base_offset + box.start, delta))

    def moved(self) -> dict[int, int]:
        """Old -> new absolute offsets of the moofs of this segment."""
        out: dict[int, int] = {}
        shift = 0
        for box in self.boxes:
            if box.type == b"moof":
                out[self.base_offset + box.start] = self.base_offset + box.start + shift
            if box.start in self._repl:
                b, new = self._repl[box.start]
                shift += len(new) - b.size
        return out

    def result(self, *, extra_deltas: Sequence[tuple[int, int]] = ()) -> bytes:
        """The rewritten segment."""
        return b"".join(self.parts(extra_deltas=extra_deltas))

    def parts(self, *, extra_deltas: Sequence[tuple[int, int]] = ()
              ) -> list[bytes | bytearray | memoryview]:
        """The rewritten segment as consecutive pieces (slices of the input, new boxes and
        sample patches)."""
        deltas = [*self.deltas, *extra_deltas]
        parts: list[bytes | bytearray | memoryview] = []
        last = 0
        mv = memoryview(self._out) if self._out is not None else self.buf
        moved: dict[int, int] | None = None
        patches = self.patches
        if patches:
            patches.sort(key=_first)
        k = 0
        for box in self.boxes:
            rep: bytes | None = None
            if box.type == b"mdat" and k < len(patches) and patches[k][0] < box.end:
                # splice this mdat's sample patches between slices of the input
                parts.append(mv[last:box.start])
                last = box.start
                while k < len(patches) and patches[k][0] < box.end:
                    pos, data = patches[k]
                    if pos < max(last, box.payload_start) or pos + len(data) > box.end:
                        raise Mp4FormatError("overlapping or misplaced sample patch",
                                             box_path="segment/mdat")
                    parts.append(mv[last:pos])
                    parts.append(data)
                    last = pos + len(data)
                    k += 1
                continue
            if box.start in self._repl:
                rep = self._repl[box.start][1]
            elif box.type == b"sidx" and deltas:
                rep = patch_sidx(bytes(mv[box.start:box.end]), self.base_offset + box.end,
                                 deltas)
            elif box.type == b"mfra" and deltas:
                moved = moved or self.moved()
                rep = patch_mfra(bytes(mv[box.start:box.end]), moved)
            if rep is None:
                continue
            parts.append(mv[last:box.start])
            parts.append(rep)
            last = box.end
        if k != len(patches):
            raise Mp4FormatError("sample patch outside every mdat", box_path="segment")
        parts.append(mv[last:])
        return parts


def _first(item: tuple[int, bytes | bytearray | memoryview]) -> int:
    return item[0]
