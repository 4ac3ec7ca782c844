"""The one box walker of media (buffers and files) and the one sidx reader/writer."""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager.errors import Mp4FormatError, UnsupportedMediaError
from speke_packager.media.mp4.boxes import Box, file_boxes, iter_boxes
from speke_packager.media.mp4.layout import Span, split_single_file
from speke_packager.media.mp4.sidx import parse_sidx, patch_sidx, rewrite_sidx


def _sidx(sizes: list[int], *, first_offset: int = 0, version: int = 0) -> bytes:
    body = struct.pack(">II", 1, 90000)
    body += struct.pack(">II", 0, first_offset) if version == 0 else \
        struct.pack(">QQ", 0, first_offset)
    body += struct.pack(">HH", 0, len(sizes))
    for s in sizes:
        body += struct.pack(">III", s, 90000, 0x90000000)
    payload = bytes((version, 0, 0, 0)) + body
    return struct.pack(">I4s", 8 + len(payload), b"sidx") + payload


def _file_boxes(path: Path) -> list[Box]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return file_boxes(fd, str(path))
    finally:
        os.close(fd)


def _split(path: Path) -> tuple[Span, Span | None, list[tuple[int, int]]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return split_single_file(fd, path.name)
    finally:
        os.close(fd)


def _sizes(raw: bytes) -> list[int]:
    lay = parse_sidx(raw)
    return [struct.unpack_from(">I", raw, lay.refs + 12 * i)[0] & 0x7FFFFFFF
            for i in range(lay.count)]


def test_file_walker_equals_buffer_walker(media: Callable[[str], Path]) -> None:
    path = media("h264-aac-fmp4")
    assert _file_boxes(path) == list(iter_boxes(path.read_bytes(), path=path.name))
    assert [b.type for b in _file_boxes(path)][:2] == [b"ftyp", b"moov"]


def test_file_walker_refuses_a_truncated_file(media: Callable[[str], Path],
                                              tmp_path: Path) -> None:
    data = media("h264-aac-fmp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:-10])
    with pytest.raises(Mp4FormatError, match="runs past the end"):
        _file_boxes(cut)
    cut.write_bytes(data + b"\x00\x00\x00")
    with pytest.raises(Mp4FormatError, match="truncated box header"):
        _file_boxes(cut)


def test_single_file_layout(media: Callable[[str], Path]) -> None:
    path = media("h264-aac-fmp4")
    boxes = _file_boxes(path)
    init, sidx, frags = _split(path)
    moov = next(b for b in boxes if b.type == b"moov")
    assert (init.offset, init.end) == (0, moov.end)
    assert sidx is None
    assert frags[0][0] >= moov.end and len(frags) >= 3
    for (o, n), (o2, _) in itertools.pairwise(frags):
        assert o + n == o2  # contiguous, each starting at a moof
    assert frags[-1][0] + frags[-1][1] == path.stat().st_size
    moofs = {b.start for b in boxes if b.type == b"moof"}
    assert {o for o, _ in frags} == moofs


def test_patch_sidx_grows_each_reference_by_its_moofs() -> None:
    raw = _sidx([1000, 2000, 500])
    end = 100 + len(raw)  # the sidx ends at input offset ``end``; references follow it
    deltas = [(end, 10), (end + 1000, 7), (end + 1500, 5), (end + 3000, 1)]
    assert _sizes(patch_sidx(raw, end, deltas)) == [1010, 2012, 501]
    assert _sizes(patch_sidx(raw, end, [])) == [1000, 2000, 500]
    v1 = _sidx([1000], first_offset=20, version=1)
    assert _sizes(patch_sidx(v1, len(v1), [(len(v1) + 20, 3), (len(v1) + 19, 100)])) == [1003]


def test_rewrite_sidx_from_the_output_spans() -> None:
    raw = _sidx([300, 400])
    s_in, s_out = 50, 60
    start = s_in + len(raw)
    # input fragments at start, start+100 (one subsegment of two) and start+300
    spans = {s_in: (s_out, len(raw)), start: (s_out + len(raw) + 8, 120),
             start + 100: (s_out + len(raw) + 128, 210), start + 300: (s_out + len(raw) + 338, 450)}
    out = rewrite_sidx(raw, s_in, s_out, spans)
    assert _sizes(out) == [330, 450]
    assert parse_sidx(out).first_offset == 8
    with pytest.raises(UnsupportedMediaError, match="line up"):
        rewrite_sidx(raw, s_in, s_out, {s_in: (0, len(raw)), start + 1: (0, 1)})


@pytest.mark.parametrize("cut", [4, 11, 20, 31, 40])
def test_a_truncated_sidx_is_refused(cut: int) -> None:
    raw = _sidx([1, 2])
    with pytest.raises(Mp4FormatError):
        patch_sidx(raw[:cut], 0, [])
    with pytest.raises(Mp4FormatError):
        rewrite_sidx(raw[:cut], 0, 0, {})
