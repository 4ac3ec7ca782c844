"""``encrypt-vod movie.mp4 --single-file``: one file per rendition (encrypted init, sidx,
encrypted fragments), DASH SegmentBase and HLS byte ranges, from the native fragmenter.

Checked with parts that are not ours: ``verify`` (FFmpeg decodes every rendition and compares
frames with the source), FFmpeg 8 decrypting each DASH single file directly (and failing with a
wrong key), and a small box walker in this file that reads the sidx and the top-level boxes."""

from __future__ import annotations

import re
import struct
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import UsageError
from speke_packager.pipeline.options import OutputFormat, VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod

from .conftest import IV, KEY, KEYSPEC, WRONG, cli, ffmpeg, frames

_KEY_URI = "https://keys.example/{kid}"


# ---- an independent reader -------------------------------------------------------------------

def _top_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of every top-level box."""
    out = []
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        assert size >= 8, f"bad box size at {pos}"
        out.append((kind, pos, size))
        pos += size
    assert pos == len(data), "boxes do not end at the end of the file"
    return out


def _sidx(box: bytes) -> tuple[int, int, int, list[tuple[int, int, int]]]:
    """(timescale, earliest presentation time, first_offset, [(type, size, duration)])."""
    version = box[8]
    timescale = struct.unpack_from(">I", box, 16)[0]
    if version == 0:
        ept, first = struct.unpack_from(">II", box, 20)
        pos = 28
    else:
        ept, first = struct.unpack_from(">QQ", box, 20)
        pos = 36
    count = struct.unpack_from(">H", box, pos + 2)[0]
    pos += 4
    refs = []
    for _ in range(count):
        a, dur, _sap = struct.unpack_from(">III", box, pos)
        refs.append((a >> 31, a & 0x7FFFFFFF, dur))
        pos += 12
    assert pos == len(box)
    return timescale, ept, first, refs


def _tfdt(moof: bytes) -> int:
    i = moof.find(b"tfdt")
    version = moof[i + 4]
    return (struct.unpack_from(">Q", moof, i + 8)[0] if version == 1
            else struct.unpack_from(">I", moof, i + 8)[0])


def _check_single_file(path: Path, init_range: tuple[int, int], index_range: tuple[int, int]
                       ) -> list[tuple[int, int]]:
    """Checks the file's layout against its sidx; returns the fragments (offset, size)."""
    data = path.read_bytes()
    boxes = _top_boxes(data)
    kinds = [k for k, _, _ in boxes]
    assert kinds[:3] == [b"ftyp", b"moov", b"sidx"], kinds[:4]
    moov = boxes[1]
    assert init_range == (0, moov[1] + moov[2] - 1)
    s = boxes[2]
    assert index_range == (s[1], s[1] + s[2] - 1)
    init = data[:moov[1] + moov[2]]
    assert b"pssh" in init and (b"encv" in init or b"enca" in init)
    rest = boxes[3:]
    assert [k for k, _, _ in rest] == [b"moof", b"mdat"] * (len(rest) // 2)
    frags = [(rest[i][1], rest[i][2] + rest[i + 1][2]) for i in range(0, len(rest), 2)]
    timescale, ept, first, refs = _sidx(data[s[1]:s[1] + s[2]])
    assert len(refs) == len(frags)
    pos = s[1] + s[2] + first
    tfdts = []
    for (kind, size, _dur), (off, n) in zip(refs, frags, strict=True):
        assert kind == 0
        assert (pos, size) == (off, n), "a sidx reference does not match its fragment"
        moof = data[off:off + struct.unpack_from(">I", data, off)[0]]
        assert b"senc" in moof and (b"saiz" in moof) == (b"saio" in moof)
        # (cbcs audio: constant IV, no subsamples, so no auxiliary info to point at)
        assert b"saiz" in moof or (b"enca" in init and b"cbcs" in init)
        tfdts.append(_tfdt(moof))
        pos += size
    assert pos == len(data)
    # durations: each reference reaches the next fragment's decode time
    for i in range(len(refs) - 1):
        assert tfdts[i] + refs[i][2] == tfdts[i + 1]
    assert ept >= tfdts[0] and timescale > 0
    return frags


def _ranges(mpd: str) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """BaseURL -> (Initialization range, indexRange) of every Representation."""
    out = {}
    for m in re.finditer(r"<BaseURL>([^<]+)</BaseURL>\s*<SegmentBase[^>]*indexRange="
                         r'"(\d+)-(\d+)"[^>]*>\s*<Initialization range="(\d+)-(\d+)"', mpd):
        out[m.group(1)] = ((int(m.group(4)), int(m.group(5))),
                           (int(m.group(2)), int(m.group(3))))
    return out


def _hls_ranges(text: str) -> tuple[str, tuple[int, int], list[tuple[int, int]]]:
    """(uri, EXT-X-MAP (offset, length), segment (offset, length)s) of a media playlist."""
    m = re.search(r'#EXT-X-MAP:URI="([^"]+)",BYTERANGE="(\d+)@(\d+)"', text)
    assert m, text
    segs = []
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("#EXT-X-BYTERANGE:"):
            n, _, o = ln.split(":", 1)[1].partition("@")
            segs.append((int(o), int(n)))
            assert lines[i + 1] == m.group(1)
    return m.group(1), (int(m.group(3)), int(m.group(2))), segs


# ---- the tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_single_file_package_from_mp4(scheme: str, media, tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "-o", str(out), "--scheme", scheme, "--key", KEYSPEC,
              "--key-uri", _KEY_URI, "--segment-duration", "1", "--single-file", "--quiet")
    assert res.returncode == 0, res.stderr
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == {
        "0/media.mp4", "1/media.mp4", "manifest.mpd", "master.m3u8", "media_0.m3u8",
        "media_1.m3u8"}
    mpd = (out / "manifest.mpd").read_text()
    reps = _ranges(mpd)
    assert set(reps) == {"0/media.mp4", "1/media.mp4"}
    assert "<SegmentTemplate" not in mpd
    for uri, (init_r, index_r) in reps.items():
        frags = _check_single_file(out / uri, init_r, index_r)
        assert len(frags) >= 3
        # HLS: the same file, EXT-X-MAP at the init, each byte range exactly at a moof
        k = uri.split("/")[0]
        h_uri, h_map, h_segs = _hls_ranges((out / f"media_{k}.m3u8").read_text())
        assert h_uri == uri
        assert h_map == (0, init_r[1] + 1)
        assert h_segs == frags
    # the whole package against the source, through FFmpeg (verify), and a wrong key
    ok = cli("verify", str(out), "--reference", str(src), "--key", KEYSPEC,
             "--no-fetch-key-uris")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    bad = cli("verify", str(out), "--reference", str(src), "--key",
              f"{KEYSPEC.split(':')[0]}:{WRONG.hex()}", "--no-fetch-key-uris")
    assert bad.returncode != 0
    # FFmpeg 8 reads each single file directly (its own sidx/moof parsing) and decrypts it
    for uri, stream in (("0/media.mp4", "v:0"), ("1/media.mp4", "a:0")):
        want = frames(src, stream)
        assert want
        assert frames(out / uri, stream, key=KEY) == want
        assert frames(out / uri, stream, key=WRONG) != want


@pytest.mark.parametrize("fmt", ["hls", "dash"])
def test_single_file_one_format(fmt: str, media, tmp_path: Path) -> None:
    """Only one manifest reads the files: the sidx is still rewritten for the encrypted
    fragments (HLS does not reference it, players and tools still read it)."""
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "-o", str(out), "--scheme", "cenc", "--key", KEYSPEC,
              "--key-uri", _KEY_URI, "--segment-duration", "1", "--single-file", "--format",
              fmt, "--quiet")
    assert res.returncode == 0, res.stderr
    for k in ("0", "1"):
        data = (out / k / "media.mp4").read_bytes()
        boxes = _top_boxes(data)
        moov, sidx = boxes[1], boxes[2]
        frags = _check_single_file(out / k / "media.mp4", (0, moov[1] + moov[2] - 1),
                                   (sidx[1], sidx[1] + sidx[2] - 1))
        if fmt == "hls":
            assert _hls_ranges((out / f"media_{k}.m3u8").read_text())[2] == frags
    assert frames(out / "0" / "media.mp4", "v:0", key=KEY) == frames(src, "v:0")
    ok = cli("verify", str(out), "--reference", str(src), "--key", KEYSPEC,
             "--no-fetch-key-uris")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]


def test_single_file_hls_clear_lead(media, tmp_path: Path) -> None:
    """--format hls --clear-lead: the leading fragments stay clear inside the one file (no
    senc), the rest is encrypted, the sidx matches, every frame decrypts."""
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "-o", str(out), "--scheme", "cenc", "--key", KEYSPEC,
              "--key-uri", _KEY_URI, "--segment-duration", "1", "--single-file", "--format",
              "hls", "--clear-lead", "1", "--quiet")
    assert res.returncode == 0, res.stderr
    path = out / "0" / "media.mp4"
    data = path.read_bytes()
    boxes = _top_boxes(data)
    moofs = [data[o:o + n] for k, o, n in boxes if k == b"moof"]
    assert b"senc" not in moofs[0] and all(b"senc" in m for m in moofs[1:])
    _sidx_matches(data, boxes)
    assert frames(path, "v:0", key=KEY) == frames(src, "v:0")
    ok = cli("verify", str(out), "--reference", str(src), "--key", KEYSPEC,
             "--no-fetch-key-uris")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]


def _sidx_matches(data: bytes, boxes: list[tuple[bytes, int, int]]) -> None:
    s = next(b for b in boxes if b[0] == b"sidx")
    _, _, first, refs = _sidx(data[s[1]:s[1] + s[2]])
    pos = s[1] + s[2] + first
    moofs = [o for k, o, _ in boxes if k == b"moof"]
    for (_, size, _), at in zip(refs, moofs, strict=True):
        assert pos == at
        pos += size
    assert pos == len(data)


def test_single_file_output_does_not_depend_on_jobs(media, tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    trees = []
    for jobs in (1, 3):
        out = tmp_path / f"o{jobs}"
        encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CBCS, jobs=jobs,
                               segment_duration=1, single_file=True, iv=IV, key_uri=_KEY_URI),
                    raw_keyset([KEYSPEC], Scheme.CBCS))
        trees.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                      if p.is_file()})
    assert trees[0] == trees[1]


def test_single_file_memory_is_bounded_by_a_segment(tmp_path: Path) -> None:
    """A 1-minute, ~30 MB progressive file into one ~30 MB single file: the traced peak stays
    far below the rendition's size (its fragments are made and encrypted one at a time)."""
    src = tmp_path / "long.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=25:duration=60", "-c:v", "libx264", "-preset",
                    "ultrafast", "-qp", "0", "-g", "50", str(src)], check=True)
    size = src.stat().st_size
    assert size > 25 << 20, size
    out = tmp_path / "out"
    tracemalloc.start()
    try:
        encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CENC, single_file=True,
                               format=OutputFormat.DASH, jobs=1, segment_duration=4),
                    raw_keyset([KEYSPEC], Scheme.CENC))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    data = (out / "0" / "media.mp4").read_bytes()
    biggest = max(n for k, _, n in _top_boxes(data) if k == b"mdat")
    assert len(data) > size * 0.9
    assert peak < 6 * biggest + (8 << 20), (peak, biggest, size)
    assert peak < size / 3, (peak, size)


@pytest.mark.parametrize(("extra", "words"), [
    (["--segmenter", "ffmpeg"], "cannot be combined with --segmenter ffmpeg"),
    (["--scheme", "aes-128"], "needs an MP4/MOV input"),
    (["--clear-lead", "2"], "works for HLS only"),
])
def test_single_file_refusals(extra: list[str], words: str, media, tmp_path: Path) -> None:
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "out"), "--key",
              KEYSPEC, "--single-file", *extra)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_single_file_refused_for_a_package_input(tmp_path: Path) -> None:
    mpd = tmp_path / "in" / "manifest.mpd"
    mpd.parent.mkdir()
    mpd.write_text("<MPD/>")
    with pytest.raises(UsageError, match="applies to a media-file input"):
        encrypt_vod(VodOptions(input=mpd, output=tmp_path / "o", scheme=Scheme.CENC,
                               single_file=True), raw_keyset([KEYSPEC], Scheme.CENC))


def test_batch_row_single_file(media, tmp_path: Path) -> None:
    """An encrypt-batch row with ``single_file: true`` gets the same single-file layout (and
    a row without it the usual segments); both verify against the source."""
    import json
    import sys

    src = media("h264-aac-mp4")
    rows = [{"id": "one", "input": str(src), "output": str(tmp_path / "one"), "scheme": "cbcs",
             "key": KEYSPEC, "key_uri": _KEY_URI, "single_file": True},
            {"id": "many", "input": str(src), "output": str(tmp_path / "many"),
             "scheme": "cbcs", "key": KEYSPEC, "key_uri": _KEY_URI, "single_file": "false"}]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = subprocess.run([sys.executable, "-m", "speke_packager", "encrypt-batch", str(jobs),
                          "--workers", "1"], capture_output=True, text=True, timeout=600,
                         check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (tmp_path / "one" / "0" / "media.mp4").is_file()
    assert not list((tmp_path / "one" / "0").glob("segment_*"))
    assert list((tmp_path / "many" / "0").glob("segment_*.m4s"))
    for a in ("one", "many"):
        ok = cli("verify", str(tmp_path / a), "--reference", str(src), "--key", KEYSPEC,
                 "--no-fetch-key-uris")
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
