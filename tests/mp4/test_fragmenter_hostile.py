"""Hostile sample tables (a real progressive MP4 with one field patched) end in typed errors,
fast and without large allocations; encrypt-vod says why and names --segmenter ffmpeg."""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import MediaError, Mp4FormatError, UnsupportedMediaError
from speke_packager.media.mp4.boxes import CONTAINERS, Box, iter_boxes
from speke_packager.media.mp4.sample_table import read_movie
from speke_packager.pipeline.options import OutputFormat, VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod
from tests.mp4 import progressive  # noqa: F401 (registers the progressive recipes)
from tests.mp4.helpers import KEY, KID


def _find(data: bytes | bytearray, path: str) -> Box:
    """The box at ``path`` (``moov/trak[1]/mdia/minf/stbl/stsz``; [k]: the k-th of that type)."""
    start, end = 0, len(data)
    box: Box | None = None
    for part in path.split("/"):
        name, _, idx = part.partition("[")
        k = int(idx[:-1]) if idx else 0
        found = [b for b in iter_boxes(data, start, end) if b.type == name.encode()]
        box = found[k]
        start, end = box.payload_start, box.end
        assert box.type in CONTAINERS or part == path.rsplit("/", maxsplit=1)[-1]
    assert box is not None
    return box


def _read(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        read_movie(fd, path.name)
    finally:
        os.close(fd)


_STBL = "moov/trak[0]/mdia/minf/stbl"


@pytest.fixture()
def source(media: Callable[[str], Path]) -> bytes:
    data = media("h264-aac-mp4").read_bytes()  # moov first (faststart), video is trak[0]
    assert [b.type for b in iter_boxes(data)].index(b"moov") < [
        b.type for b in iter_boxes(data)].index(b"mdat")
    return data


def _patched(source: bytes, tmp: Path, box: str, at: int, fmt: str, value: int) -> Path:
    data = bytearray(source)
    b = _find(data, f"{_STBL}/{box}" if "/" not in box else box)
    struct.pack_into(fmt, data, b.payload_start + at, value)
    out = tmp / "hostile.mp4"
    out.write_bytes(data)
    return out


def _fails(path: Path, kind: type[MediaError], words: str) -> None:
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(kind) as err:
            _read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - t0 < 5
    assert peak < 64 << 20, f"{peak} bytes allocated on the way to the error"
    msg = str(err.value)
    assert words in msg, msg
    assert "\n" not in msg


# stsz payload: version/flags, sample_size, sample_count, entries; stco: v/f, count, offsets;
# stts / ctts / stsc: v/f, count, entries
CASES = {
    "sample-past-eof": ("stsz", 12, ">I", 0x7FFFFFF0, Mp4FormatError, "more than the file"),
    "chunk-past-eof": ("stco", 8, ">I", 0x7FFFFFF0, Mp4FormatError, "past the end of the file"),
    "stsz-2^32-entries": ("stsz", 8, ">I", 0xFFFFFFFF, Mp4FormatError, "do not fit"),
    "stsz-constant-2^32": ("stsz", 4, ">Q", (1 << 32) | 0xFFFFFFFF, Mp4FormatError,
                           "cannot fit in the file"),
    "zero-length-sample": ("stsz", 12 + 4 * 5, ">I", 0, UnsupportedMediaError, "size 0"),
    "stts-count": ("stts", 8, ">I", 151, Mp4FormatError, "stts describes"),
    "stts-2^32-entries": ("stts", 4, ">I", 0xFFFFFFFF, Mp4FormatError, "do not fit"),
    "ctts-count": ("ctts", 8, ">I", 1000, Mp4FormatError, "ctts describes"),
    "stsc-samples": ("stsc", 12, ">I", 1000, Mp4FormatError, "stsc describes"),
    "stsc-first-chunk": ("stsc", 8, ">I", 2, Mp4FormatError, "first_chunk"),
    "stss-outside": ("stss", 8, ">I", 100000, Mp4FormatError, "stss names a sample"),
    "timescale-0": ("moov/trak[0]/mdia/mdhd", 12, ">I", 0, Mp4FormatError, "timescale 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_table(case: str, source: bytes, tmp_path: Path) -> None:
    box, at, fmt, value, kind, words = CASES[case]
    _fails(_patched(source, tmp_path, box, at, fmt, value), kind, words)


def test_overlapping_samples(source: bytes, tmp_path: Path) -> None:
    data = bytearray(source)
    stco = _find(data, f"{_STBL}/stco")
    first = struct.unpack_from(">I", data, stco.payload_start + 8)[0]
    struct.pack_into(">I", data, stco.payload_start + 12, first + 1)  # chunk 2 inside chunk 1
    p = tmp_path / "overlap.mp4"
    p.write_bytes(data)
    _fails(p, Mp4FormatError, "samples overlap")


def test_audio_overlaps_video(source: bytes, tmp_path: Path) -> None:
    data = bytearray(source)
    v = _find(data, f"{_STBL}/stco")
    a = _find(data, "moov/trak[1]/mdia/minf/stbl/stco")
    first_v = struct.unpack_from(">I", data, v.payload_start + 8)[0]
    struct.pack_into(">I", data, a.payload_start + 8, first_v)
    p = tmp_path / "overlap.mp4"
    p.write_bytes(data)
    _fails(p, Mp4FormatError, "samples overlap")


def test_no_moov(source: bytes, tmp_path: Path) -> None:
    data = bytearray(source)
    m = _find(data, "moov")
    data[m.start + 4:m.start + 8] = b"free"
    p = tmp_path / "nomoov.mp4"
    p.write_bytes(data)
    _fails(p, Mp4FormatError, "no moov box")


def test_truncated_file(source: bytes, tmp_path: Path) -> None:
    p = tmp_path / "cut.mp4"
    mdat = _find(source, "mdat")
    cut = bytearray(source[:mdat.start + (mdat.end - mdat.start) // 2])
    struct.pack_into(">I", cut, mdat.start, len(cut) - mdat.start)  # mdat ends at the new end
    p.write_bytes(cut)
    _fails(p, Mp4FormatError, "more than the file")


def test_edit_list_entries_past_the_box(source: bytes, tmp_path: Path) -> None:
    _fails(_patched(source, tmp_path, "moov/trak[0]/edts/elst", 4, ">I", 3),
           Mp4FormatError, "3 edits do not fit")


def test_several_edits(media: Callable[[str], Path], tmp_path: Path) -> None:
    """Two media edits (a cut in the middle) cannot be expressed in one fragmented track."""
    data = bytearray(media("hevc-aac-prog-mp4").read_bytes())  # moov last: it may grow
    elst = _find(data, "moov/trak[0]/edts/elst")
    entry = bytes(data[elst.payload_start + 8:elst.payload_start + 20])
    count = struct.unpack_from(">I", data, elst.payload_start + 4)[0]
    assert count == 1 and data[elst.payload_start] == 0
    parents = [_find(data, p) for p in ("moov", "moov/trak[0]", "moov/trak[0]/edts")]
    struct.pack_into(">I", data, elst.payload_start + 4, 2)
    data[elst.end:elst.end] = entry
    for b in [*parents, elst]:
        struct.pack_into(">I", data, b.start, b.end - b.start + 12)
    p = tmp_path / "edits.mp4"
    p.write_bytes(data)
    _fails(p, UnsupportedMediaError, "edit list of 2 edits")


def test_moov_at_the_end(media: Callable[[str], Path]) -> None:
    src = media("hevc-aac-prog-mp4")  # no faststart: moov after mdat
    types = [b.type for b in iter_boxes(src.read_bytes())]
    assert types.index(b"moov") > types.index(b"mdat")
    fd = os.open(src, os.O_RDONLY)
    try:
        movie = read_movie(fd, src.name)
    finally:
        os.close(fd)
    assert [t.kind for t in movie.tracks] == ["video", "audio"]


def test_fragmented_input_is_refused(media: Callable[[str], Path]) -> None:
    _fails(media("h264-aac-fmp4"), UnsupportedMediaError, "--segmenter ffmpeg")


def test_encrypt_vod_names_the_cause_and_the_way_out(source: bytes, tmp_path: Path) -> None:
    box, at, fmt, value, _, _ = CASES["stts-count"]
    src = _patched(source, tmp_path, box, at, fmt, value)
    out = tmp_path / "out"
    opts = VodOptions(input=src, output=out, scheme=Scheme.CENC, format=OutputFormat.DASH,
                      jobs=1)
    with pytest.raises(Mp4FormatError) as err:
        encrypt_vod(opts, raw_keyset([f"{KID.hex}:{KEY.hex()}"], Scheme.CENC))
    msg = str(err.value)
    assert "stts describes" in msg and "--segmenter ffmpeg" in msg and src.name in msg
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".speke")]


def test_stz2_and_co64_read_like_stsz_and_stco(media: Callable[[str], Path],
                                               tmp_path: Path) -> None:
    """The compact size table (stz2, 16-bit) and 64-bit chunk offsets (co64) give the same
    samples as stsz/stco (moov at the end of this file: rewriting it moves no sample)."""
    import numpy as np

    from speke_packager.media.mp4.boxes import box_bytes, full_box, parse_tree

    src = media("hevc-aac-prog-mp4")
    data = src.read_bytes()
    moov = _find(data, "moov")
    tree = parse_tree(data, moov)
    for trak in tree.find_all(b"trak"):
        stbl = trak.need(b"mdia").need(b"minf").need(b"stbl")
        assert stbl.children is not None
        for i, c in enumerate(stbl.children):
            if c.type == b"stsz":
                const, n = struct.unpack_from(">II", c.payload, 4)
                sizes = np.frombuffer(c.payload, ">u4", count=n, offset=12)
                assert const == 0 and sizes.max() < 1 << 16
                body = bytes(3) + bytes([16]) + struct.pack(">I", n) + sizes.astype(">u2").tobytes()
                stbl.children[i] = parse_tree(full_box(b"stz2", 0, 0, body),
                                              next(iter_boxes(full_box(b"stz2", 0, 0, body))))
            elif c.type == b"stco":
                (n,) = struct.unpack_from(">I", c.payload, 4)
                offs = np.frombuffer(c.payload, ">u4", count=n, offset=8).astype(">u8")
                box = full_box(b"co64", 0, 0, struct.pack(">I", n) + offs.tobytes())
                stbl.children[i] = parse_tree(box, next(iter_boxes(box)))
    new = tree.to_bytes()
    assert box_bytes(b"moov", b"")[4:8] == new[4:8]
    assert new.count(b"stz2") == new.count(b"co64") == 2
    assert b"stsz" not in new and b"stco" not in new
    out = tmp_path / "stz2-co64.mp4"
    out.write_bytes(data[:moov.start] + new + data[moov.end:])
    fds = [os.open(p, os.O_RDONLY) for p in (src, out)]
    try:
        a, b = (read_movie(fd, "x") for fd in fds)
    finally:
        for fd in fds:
            os.close(fd)
    for ta, tb in zip(a.tracks, b.tracks, strict=True):
        assert np.array_equal(ta.offsets, tb.offsets)
        assert np.array_equal(ta.sizes, tb.sizes)
        assert np.array_equal(ta.dts, tb.dts) and np.array_equal(ta.cts, tb.cts)
