"""Top-level layout of a single-file fragmented MP4 (DASH SegmentBase): where the init, the
``sidx`` and each fragment sit, found from the box headers alone (the file is not read whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from ...errors import Mp4FormatError, UnsupportedMediaError
from .boxes import file_boxes

__all__ = ["Span", "split_single_file"]

_FRAGMENT_LEADERS = frozenset({b"styp", b"emsg", b"prft"})


@dataclass(frozen=True, slots=True)
class Span:
    """A byte range of the file."""

    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


def split_single_file(fd: int, name: str
                      ) -> tuple[Span, Span | None, list[tuple[int, int]]]:
    """(init span ftyp..moov, the sidx box or None, fragment spans (offset, length)) of the
    open file ``fd`` (``name``: its package-relative path, for errors).

    A fragment starts at a ``moof`` (or the styp/emsg/prft right before it) and runs to the next
    fragment's start."""
    path = PurePosixPath(name)
    boxes = file_boxes(fd, name)
    moov = next((b for b in boxes if b.type == b"moov"), None)
    if moov is None:
        raise Mp4FormatError("no moov box", box_path=path.name)
    init = Span(0, moov.end)
    sidxs = [Span(b.start, b.size) for b in boxes if b.type == b"sidx"]
    if len(sidxs) > 1:
        raise UnsupportedMediaError(f"{path.name}: more than one sidx box is not supported")
    starts: list[int] = []
    for i, b in enumerate(boxes):
        if b.type != b"moof":
            continue
        j = i
        while j > 0 and boxes[j - 1].type in _FRAGMENT_LEADERS and boxes[j - 1].start >= \
                moov.end:
            j -= 1
        starts.append(boxes[j].start)
    if not starts:
        raise UnsupportedMediaError(f"{path.name} is not fragmented (no moof); DASH SegmentBase "
                                    "input must be fragmented MP4")
    end = boxes[-1].end
    frags = [(s, e - s) for s, e in zip(starts, [*starts[1:], end], strict=True)]
    return init, (sidxs[0] if sidxs else None), frags
