"""VP9 frames for subsample maps: superframe index and uncompressed-header length (VP9 spec 6.2).

Frame sizes of inter frames that copy their size from a reference are tracked in a small
:class:`Vp9State` (eight reference slots), seeded with the track's width and height.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import CodecError
from .bits import BitReader

__all__ = ["Vp9State", "split_superframe", "uncompressed_header_size"]

_SYNC = 0x498342


def split_superframe(sample: bytes | memoryview) -> tuple[list[tuple[int, int]], int]:
    """``([(offset, size), ...], index_size)`` of the frames of a sample (one frame if no index).

    The superframe index (``index_size`` bytes at the end) is not part of any frame."""
    n = len(sample)
    if n == 0:
        raise CodecError("empty VP9 sample")
    last = sample[-1]
    if last & 0xE0 == 0xC0:
        frames = (last & 7) + 1
        mag = ((last >> 3) & 3) + 1
        index_size = 2 + mag * frames
        if index_size <= n and sample[n - index_size] == last:
            out: list[tuple[int, int]] = []
            pos = n - index_size + 1
            off = 0
            for _ in range(frames):
                size = int.from_bytes(sample[pos:pos + mag], "little")
                pos += mag
                out.append((off, size))
                off += size
            if off != n - index_size:
                raise CodecError(
                    f"VP9 superframe sizes add up to {off}, frames hold {n - index_size} bytes")
            return out, index_size
    return [(0, n)], 0


@dataclass(slots=True)
class Vp9State:
    """Reference-slot frame sizes, needed to size tile info of inter frames."""

    width: int
    height: int
    refs: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.refs:
            self.refs = [(self.width, self.height)] * 8


def _color_config(r: BitReader, profile: int) -> None:
    if profile >= 2:
        r.skip(1)
    color_space = r.u(3)
    if color_space != 7:
        r.skip(1)
        if profile in (1, 3):
            r.skip(3)
    elif profile in (1, 3):
        r.skip(1)


def _frame_size(r: BitReader) -> tuple[int, int]:
    return r.u(16) + 1, r.u(16) + 1


def _render_size(r: BitReader) -> None:
    if r.flag():
        r.skip(32)


def uncompressed_header_size(frame: bytes | memoryview, state: Vp9State) -> int:
    """Bytes of the uncompressed header of one VP9 frame (the part that must stay clear)."""
    r = BitReader(frame[:64], "VP9 uncompressed header")
    if r.u(2) != 2:
        raise CodecError("VP9 frame_marker is not 2")
    low = r.u(1)
    profile = (r.u(1) << 1) | low
    if profile == 3:
        r.skip(1)
    if r.flag():  # show_existing_frame
        r.skip(3)
        return (r.pos + 7) // 8
    key = r.u(1) == 0
    show = r.flag()
    error_res = r.flag()
    width, height = state.width, state.height
    refresh = 0
    if key:
        if r.u(24) != _SYNC:
            raise CodecError("VP9 key frame without sync code")
        _color_config(r, profile)
        width, height = _frame_size(r)
        _render_size(r)
        refresh = 0xFF
    else:
        intra_only = False if show else r.flag()
        if not error_res:
            r.skip(2)
        if intra_only:
            if r.u(24) != _SYNC:
                raise CodecError("VP9 intra-only frame without sync code")
            if profile > 0:
                _color_config(r, profile)
            refresh = r.u(8)
            width, height = _frame_size(r)
            _render_size(r)
        else:
            refresh = r.u(8)
            idx = []
            for _ in range(3):
                idx.append(r.u(3))
                r.skip(1)
            found = False
            for i in range(3):
                if r.flag():
                    width, height = state.refs[idx[i]]
                    found = True
                    break
            if not found:
                width, height = _frame_size(r)
            _render_size(r)
            r.skip(1)  # allow_high_precision_mv
            if not r.flag():
                r.skip(2)
    if not error_res:
        r.skip(2)
    r.skip(2)  # frame_context_idx
    # loop_filter_params
    r.skip(9)
    if r.flag() and r.flag():
        for _ in range(4):
            if r.flag():
                r.skip(7)
        for _ in range(2):
            if r.flag():
                r.skip(7)
    # quantization_params
    r.skip(8)
    for _ in range(3):
        if r.flag():
            r.skip(5)
    # segmentation_params
    if r.flag():
        if r.flag():
            for _ in range(7):
                if r.flag():
                    r.skip(8)
            if r.flag():
                for _ in range(3):
                    if r.flag():
                        r.skip(8)
        if r.flag():
            r.skip(1)
            for _ in range(8):
                for bits, signed in ((8, 1), (6, 1), (2, 0), (0, 0)):
                    if r.flag():
                        r.skip(bits + signed)
    # tile_info
    sb64_cols = (((width + 7) >> 3) + 7) >> 3
    min_log2 = 0
    while (64 << min_log2) < sb64_cols:
        min_log2 += 1
    max_log2 = 1
    while (sb64_cols >> max_log2) >= 4:
        max_log2 += 1
    max_log2 -= 1
    log2 = min_log2
    while log2 < max_log2 and r.flag():
        log2 += 1
    if r.flag():
        r.skip(1)
    r.skip(16)  # header_size_in_bytes
    for i in range(8):
        if refresh & (1 << i):
            state.refs[i] = (width, height)
    size = (r.pos + 7) // 8
    if size > len(frame):
        raise CodecError("VP9 uncompressed header runs past the frame")
    return size
