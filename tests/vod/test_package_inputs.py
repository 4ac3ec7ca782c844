"""encrypt-vod from clear HLS and DASH packages: layout kept, every tag kept, segments decrypted
by FFmpeg 8 / openssl and compared with the clear package's frames; the input is untouched."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from speke_packager.constants import NS_CENC, NS_MPD, Scheme
from speke_packager.errors import UnsupportedMediaError
from speke_packager.pipeline.options import VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod
from tests.mpd_structure import MpdCheck

from .conftest import IV, KEY, KEYSPEC, KID, WRONG, concat, frames, key_lines, tenc, version

NS = {"m": NS_MPD, "cenc": NS_CENC}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _encrypt(manifest: Path, out: Path, scheme: str, key_file: Path | None = None) -> None:
    before = _digest(manifest.parent)
    encrypt_vod(VodOptions(input=manifest, output=out, scheme=Scheme(scheme),
                           key_uri=str(key_file) if key_file else None, iv=IV, jobs=2),
                raw_keyset([KEYSPEC], Scheme(scheme)))
    assert _digest(manifest.parent) == before  # the input is never modified


def _tags(text: str) -> list[str]:
    """Lines we do not own (kept verbatim), without byte ranges and keys."""
    return [ln for ln in text.splitlines() if ln.startswith("#") and not ln.startswith(
        ("#EXT-X-KEY", "#EXT-X-VERSION", "#EXT-X-BYTERANGE", "#EXT-X-MAP",
         "#EXT-X-SESSION-KEY"))]


def _uris(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def _same_layout(clear: Path, enc: Path) -> None:
    a = {str(p.relative_to(clear)) for p in clear.rglob("*") if p.is_file()}
    b = {str(p.relative_to(enc)) for p in enc.rglob("*") if p.is_file()}
    assert b == a, (sorted(a - b), sorted(b - a))


def _with_last_segment_twice(playlist: Path) -> Path:
    lines = playlist.read_text().splitlines()
    end = lines.index("#EXT-X-ENDLIST")
    extinf = max(i for i, ln in enumerate(lines) if ln.startswith("#EXTINF"))
    tail = lines[extinf:end]
    copy = playlist.with_name("test-copy.m3u8")
    copy.write_text("\n".join([*lines[:end], "#EXT-X-DISCONTINUITY", *tail, *lines[end:]])
                    + "\n")
    return copy


# --- HLS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, scheme", [
    ("hls-ts", "aes-128"), ("hls-ts", "sample-aes"), ("hls-ts-byterange", "aes-128"),
    ("hls-multivariant-ts", "sample-aes"),
])
def test_hls_ts_inputs(kind: str, scheme: str, packages, tmp_path: Path, key_file: Path,
                       wrong_key_file: Path) -> None:
    manifest = packages(kind)
    out = tmp_path / "out"
    _encrypt(manifest, out, scheme, key_file)
    _same_layout(manifest.parent, out)
    top = out / manifest.name
    if kind == "hls-multivariant-ts":
        master = top.read_text()
        (sk,) = key_lines(master, "#EXT-X-SESSION-KEY")
        assert sk["METHOD"] == "SAMPLE-AES" and sk["URI"] == str(key_file)
        assert _tags(master) == _tags(manifest.read_text()) or all(
            t in master for t in _tags(manifest.read_text()))
        playlists = [(out / "v0" / "index.m3u8", "v:0"), (out / "v1" / "index.m3u8", "a:0")]
    else:
        playlists = [(top, "v:0"), (top, "a:0")]
    for pl, stream in playlists:
        clear_pl = manifest.parent / pl.relative_to(out)
        text = pl.read_text()
        assert _tags(text) == _tags(clear_pl.read_text())
        assert _uris(text) == _uris(clear_pl.read_text())
        (k,) = key_lines(text)
        assert k["METHOD"] == Scheme(scheme).hls_method and k["IV"].lower() == "0x" + IV.hex()
        assert version(text) >= (5 if scheme == "sample-aes" else 2)
        ref = frames(clear_pl, stream, hls=True)
        assert ref
        wrong = pl.with_name("wrong.m3u8")
        wrong.write_text(text.replace(str(key_file), str(wrong_key_file)))
        if scheme == "sample-aes" and stream.startswith("v"):
            got = frames(_with_last_segment_twice(pl), stream, hls=True)
            assert got is not None and got[:len(ref)] == ref
            bad = frames(_with_last_segment_twice(wrong), stream, hls=True)
            assert bad is None or bad[:len(ref)] != ref
        else:
            assert frames(pl, stream, hls=True) == ref
            assert frames(wrong, stream, hls=True) != ref
    if kind == "hls-ts-byterange":
        _check_aes128_byteranges(top, manifest)


def _check_aes128_byteranges(pl: Path, clear_pl: Path) -> None:
    """Each EXT-X-BYTERANGE is its own padded CBC message that openssl turns back into the
    clear sub-range, byte for byte."""
    text, clear_text = pl.read_text(), clear_pl.read_text()
    rng = re.compile(r"^#EXT-X-BYTERANGE:(\d+)(?:@(\d+))?$", re.M)
    new = [(int(a), int(b)) for a, b in rng.findall(text)]
    old = []
    pos = 0
    for a, b in rng.findall(clear_text):
        off = int(b) if b else pos
        old.append((int(a), off))
        pos = off + int(a)
    assert len(new) == len(old) >= 2
    (name,) = set(_uris(text))
    enc = (pl.parent / name).read_bytes()
    clear = (clear_pl.parent / name).read_bytes()
    end = 0
    for (n_len, n_off), (o_len, o_off) in zip(new, old, strict=True):
        assert n_off == end and n_len % 16 == 0 and n_len > o_len
        end = n_off + n_len
        res = subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", KEY.hex(), "-iv",
                              IV.hex()], input=enc[n_off:n_off + n_len], capture_output=True,
                             check=True)
        assert res.stdout == clear[o_off:o_off + o_len]
    assert end == len(enc)


@pytest.mark.parametrize("kind, scheme", [
    ("hls-fmp4", "cbcs"), ("hls-fmp4", "cenc"), ("hls-fmp4-byterange", "cbcs"),
    ("hls-fmp4", "aes-128"),
])
def test_hls_fmp4_inputs(kind: str, scheme: str, packages, tmp_path: Path,
                         key_file: Path) -> None:
    manifest = packages(kind)
    out = tmp_path / "out"
    _encrypt(manifest, out, scheme, key_file)
    _same_layout(manifest.parent, out)
    pl = out / manifest.name
    text = pl.read_text()
    assert _tags(text) == _tags(manifest.read_text())
    (k,) = key_lines(text)
    assert k["METHOD"] == Scheme(scheme).hls_method and k["URI"] == str(key_file)
    assert version(text) >= 6
    m = re.search(r'#EXT-X-MAP:URI="([^"]+)"(?:,BYTERANGE="(\d+)@(\d+)")?', text)
    assert m
    init_path = out / m.group(1)
    init = init_path.read_bytes()
    if m.group(2):
        init = init[int(m.group(3)):int(m.group(3)) + int(m.group(2))]
    streams = ["v:0"] + (["a:0"] if kind == "hls-fmp4" else [])
    if scheme == "aes-128":
        assert b"tenc" not in init  # the init section stays clear, before the key tag
        assert text.index("#EXT-X-MAP") < text.index("#EXT-X-KEY")
    else:
        t = tenc(init)
        assert t["kid"] == KID and t["scheme"] == scheme.encode()
        if scheme == "cbcs":
            assert t["constant_iv"] == IV and k["IV"].lower() == "0x" + IV.hex()
        else:
            assert "IV" not in k
        if kind == "hls-fmp4-byterange":
            track = init_path  # init + every range in one file
            sizes = [int(a) for a in re.findall(r"#EXT-X-BYTERANGE:(\d+)", text)]
            assert int(m.group(2)) + sum(sizes) == track.stat().st_size
            clear_track = manifest.parent / m.group(1)
        else:
            segs = [out / u for u in _uris(text)]
            track = concat(tmp_path / "track.mp4", [init_path, *segs])
            clear_track = concat(tmp_path / "clear.mp4", [manifest.parent / m.group(1),
                                                           *[manifest.parent / u
                                                             for u in _uris(text)]])
        for stream in streams:
            ref = frames(clear_track, stream)
            assert ref
            assert frames(track, stream, key=KEY) == ref
            assert frames(track, stream, key=WRONG) != ref
    for stream in streams:  # FFmpeg's HLS reader with the identity key
        assert frames(pl, stream, hls=True) == frames(manifest, stream, hls=True)


def test_sample_aes_on_fmp4_input_is_refused(packages, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaError, match="cbcs"):
        _encrypt(packages("hls-fmp4"), tmp_path / "out", "sample-aes")
    assert not (tmp_path / "out").exists()


def test_cbcs_on_ts_input_is_refused(packages, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaError, match="MPEG-TS"):
        _encrypt(packages("hls-ts"), tmp_path / "out", "cbcs")
    assert not (tmp_path / "out").exists()


# --- DASH --------------------------------------------------------------------------------------
def _dash_tracks(folder: Path, kind: str, tmp: Path, tag: str) -> dict[str, Path]:
    """One decodable file per stream, assembled from the package's files in MPD order."""
    if kind == "dash-base":
        return {"v:0": folder / "video.mp4", "a:0": folder / "audio.mp4"}
    if kind == "dash-list-ranges":
        return {"v:0": folder / "manifest-stream0.mp4", "a:0": folder / "manifest-stream1.mp4"}
    out = {}
    reps = (("0", "v:0"),) if kind == "dash-time" else (("0", "v:0"), ("1", "a:0"))
    for rep, stream in reps:
        if kind == "dash-time":
            segs = sorted(folder.glob(f"chunk-{rep}-*.m4s"),
                          key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        else:
            segs = sorted(folder.glob(f"chunk-stream{rep}-*.m4s"))
        assert len(segs) >= 2
        out[stream] = concat(tmp / f"{tag}-{rep}.mp4", [folder / f"init-stream{rep}.m4s",
                                                          *segs])
    return out


@pytest.mark.parametrize("kind, scheme", [
    ("dash-number", "cenc"), ("dash-time", "cbcs"), ("dash-list", "cenc"),
    ("dash-list-ranges", "cbcs"), ("dash-base", "cenc"), ("dash-base", "cbcs"),
])
def test_dash_inputs(kind: str, scheme: str, packages, tmp_path: Path,
                     check_mpd: MpdCheck) -> None:
    manifest = packages(kind)
    out = tmp_path / "out"
    _encrypt(manifest, out, scheme)
    _same_layout(manifest.parent, out)
    doc = etree.parse(str(out / manifest.name))
    check_mpd(doc)
    clear_doc = etree.parse(str(manifest))
    # everything of the input is kept: same elements once ContentProtection is ignored
    def names(d: etree._ElementTree) -> list[str]:
        return [etree.QName(e).localname for e in d.iter() if isinstance(e.tag, str)
                and etree.QName(e).localname not in ("ContentProtection", "pssh")]
    assert names(doc) == names(clear_doc)
    for aset in doc.findall(".//m:AdaptationSet", NS):
        cp = aset.find("m:ContentProtection", NS)
        assert cp is not None and cp.get("value") == scheme
        assert cp.get(f"{{{NS_CENC}}}default_KID") == str(KID)
    enc = _dash_tracks(out, kind, tmp_path, "enc")
    clear = _dash_tracks(manifest.parent, kind, tmp_path, "clear")
    for stream, track in enc.items():
        t = tenc(track.read_bytes()[:4096])
        assert t["kid"] == KID and t["scheme"] == scheme.encode()
        ref = frames(clear[stream], stream)
        assert ref
        assert frames(track, stream, key=KEY) == ref
        assert frames(track, stream, key=WRONG) != ref
    if kind in ("dash-base", "dash-list-ranges"):
        _check_ranges(doc, out)


def _check_ranges(doc: etree._ElementTree, out: Path) -> None:
    """Initialization/indexRange/mediaRange point at the right boxes of the encrypted file and
    every sidx reference size matches the fragments that follow it."""
    for rep in doc.findall(".//m:Representation", NS):
        data = (out / (rep.findtext("m:BaseURL", namespaces=NS) or "")).read_bytes()
        init = rep.find(".//m:Initialization", NS)
        assert init is not None
        a, b = (int(x) for x in (init.get("range") or "").split("-"))
        assert a == 0 and data[4:8] == b"ftyp" and b"moov" in data[:b + 1]
        idx_ranges = [e.get("indexRange") for e in rep.iter() if isinstance(e.tag, str)
                      and e.get("indexRange")]
        assert idx_ranges
        for r in idx_ranges:
            s, e = (int(x) for x in (r or "").split("-"))
            box = data[s:e + 1]
            assert box[4:8] == b"sidx" and int.from_bytes(box[:4], "big") == e - s + 1
            version_ = box[8]
            pos = 20 + (8 if version_ == 0 else 16)
            first = int.from_bytes(box[pos - 4:pos] if version_ == 0 else box[pos - 8:pos],
                                   "big")
            count = int.from_bytes(box[pos + 2:pos + 4], "big")
            cursor = e + 1 + first
            for i in range(count):
                size = int.from_bytes(box[pos + 4 + 12 * i:pos + 8 + 12 * i], "big") & 0x7FFFFFFF
                assert data[cursor + 4:cursor + 8] in (b"moof", b"styp")
                cursor += size
            assert cursor <= len(data)
            assert cursor == len(data) or data[cursor + 4:cursor + 8] in (b"moof", b"styp",
                                                                          b"sidx")


def test_aes128_dash_is_refused(packages, tmp_path: Path) -> None:
    from speke_packager.errors import UnsupportedMediaError as U

    with pytest.raises(U, match="DASH needs cenc or cbcs"):
        _encrypt(packages("dash-number"), tmp_path / "out", "aes-128")


def test_webvtt_rendition_stays_clear(media, tmp_path: Path, key_file: Path) -> None:
    from .conftest import ffmpeg, run

    pkg = tmp_path / "clear"
    pkg.mkdir()
    (pkg / "s.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nHello\n\n"
                               "2\n00:00:02,500 --> 00:00:05,000\nWorld\n")
    run([ffmpeg(), "-v", "error", "-i", str(media("h264-aac-ts")), "-i", "s.srt", "-map", "0:v",
         "-map", "0:a", "-map", "1:s", "-c:v", "copy", "-c:a", "copy", "-c:s", "webvtt",
         "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-master_pl_name",
         "master.m3u8", "-var_stream_map", "v:0,a:0,s:0,sgroup:subs",
         "-hls_segment_filename", "p%v_%03d.ts", "p%v.m3u8"], cwd=pkg)
    (pkg / "s.srt").unlink()
    out = tmp_path / "out"
    _encrypt(pkg / "master.m3u8", out, "aes-128", key_file)
    _same_layout(pkg, out)
    vtts = sorted(pkg.glob("*.vtt"))
    assert vtts and all((out / v.name).read_bytes() == v.read_bytes() for v in vtts)
    assert not key_lines((out / "p0_vtt.m3u8").read_text())
    assert key_lines((out / "p0.m3u8").read_text())
    assert frames(out / "p0.m3u8", "v:0", hls=True) == frames(pkg / "p0.m3u8", "v:0", hls=True)
