"""encrypt-vod from a single media file: every scheme x format, proven by independent decryption
(FFmpeg 8 -decryption_key, FFmpeg's HLS reader, openssl) against the clear source's frames."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lxml import etree

from speke_packager.constants import NS_CENC, NS_DASHIF_CPS, NS_MPD, Scheme
from speke_packager.pipeline.options import OutputFormat, VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod
from tests.mpd_structure import MpdCheck

from .conftest import (
    IV,
    KEY,
    KEYSPEC,
    KID,
    WRONG,
    cli,
    concat,
    frames,
    key_lines,
    tenc,
    version,
)

NS = {"m": NS_MPD, "cenc": NS_CENC, "dashif": NS_DASHIF_CPS}


def _fmp4_track(out: Path, rep: str, tmp: Path) -> Path:
    segs = sorted((out / rep).glob("segment_*.m4s"))
    assert len(segs) >= 2
    return concat(tmp / f"track-{rep}.mp4", [out / rep / "init.mp4", *segs])


def _check_fmp4_tracks(out: Path, src: Path, scheme: str, tmp: Path) -> None:
    for rep, stream in (("0", "v:0"), ("1", "a:0")):
        init = (out / rep / "init.mp4").read_bytes()
        t = tenc(init)
        assert t["kid"] == KID
        assert t["scheme"] == scheme.encode()
        if scheme == "cbcs":
            assert t["iv_size"] == 0 and t["constant_iv"] == IV
            assert (t["crypt"], t["skip"]) == ((1, 9) if stream == "v:0" else (0, 0))
        else:
            assert t["iv_size"] in (8, 16)
        track = _fmp4_track(out, rep, tmp)
        ref = frames(src, stream)
        assert ref
        assert frames(track, stream, key=KEY) == ref
        assert frames(track, stream, key=WRONG) != ref  # negative control
        # the segments really are encrypted: without a key the frames differ
        assert frames(track, stream) != ref


def _check_dash(out: Path, scheme: str, check_mpd: MpdCheck, *, laurl: str | None) -> None:
    doc = etree.parse(str(out / "manifest.mpd"))
    check_mpd(doc)
    sets = doc.findall(".//m:AdaptationSet", NS)
    assert len(sets) == 2
    for aset in sets:
        cps = aset.findall("m:ContentProtection", NS)
        assert cps[0].get("schemeIdUri") == "urn:mpeg:dash:mp4protection:2011"
        assert cps[0].get("value") == scheme
        assert cps[0].get(f"{{{NS_CENC}}}default_KID") == str(KID)
        ck = [c for c in cps if c.get("schemeIdUri") ==
              "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"]
        if laurl:
            assert len(ck) == 1
            lu = ck[0].find("dashif:Laurl", NS)
            assert lu is not None and lu.text == laurl and lu.get("licenseType") == "EME-1.0"
        else:
            assert not ck


def _check_hls_fmp4(out: Path, scheme: str, key_file: Path) -> None:
    master = (out / "master.m3u8").read_text()
    assert key_lines(master, "#EXT-X-SESSION-KEY")
    for name in ("media_0.m3u8", "media_1.m3u8"):
        text = (out / name).read_text()
        keys = key_lines(text)
        assert len(keys) == 1, text
        k = keys[0]
        assert k["METHOD"] == ("SAMPLE-AES" if scheme == "cbcs" else "SAMPLE-AES-CTR")
        assert k["URI"] == str(key_file) and k["KEYFORMAT"] == "identity"
        if scheme == "cbcs":
            assert k["IV"].lower() == "0x" + IV.hex()  # equals the tenc constant IV
        else:
            assert "IV" not in k
        assert version(text) >= 6
        lines = text.splitlines()
        first_key = next(i for i, ln in enumerate(lines) if ln.startswith("#EXT-X-KEY"))
        first_map = next(i for i, ln in enumerate(lines) if ln.startswith("#EXT-X-MAP"))
        assert first_map < first_key


@pytest.mark.parametrize("segmenter", ["native", "ffmpeg"])
@pytest.mark.parametrize("scheme", ["cbcs", "cenc"])
def test_media_file_to_hls_and_dash(scheme: str, segmenter: str, media, tmp_path: Path,
                                    key_file: Path, check_mpd: MpdCheck) -> None:
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme(scheme), segment_duration=2,
                               key_uri=str(key_file), clearkey_license_url="https://lic/ck",
                               iv=IV if scheme == "cbcs" else None, jobs=2,
                               segmenter=segmenter),
                    raw_keyset([KEYSPEC], Scheme(scheme)))
    assert r.format is OutputFormat.BOTH
    assert {t.kid for t in r.tracks} == {str(KID)}
    assert sorted(r.manifests) == ["manifest.mpd", "master.m3u8", "media_0.m3u8",
                                   "media_1.m3u8"]
    _check_fmp4_tracks(out, src, scheme, tmp_path)
    _check_dash(out, scheme, check_mpd, laurl="https://lic/ck")
    _check_hls_fmp4(out, scheme, key_file)
    # FFmpeg's HLS reader with the identity key URI decrypts the whole presentation
    assert frames(out / "master.m3u8", "v:0", hls=True) == frames(src, "v:0")


def test_media_file_cbcs_dash_only_via_cli(media, tmp_path: Path, check_mpd: MpdCheck) -> None:
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "--output", str(out), "--format", "dash",
              "--key", KEYSPEC, "--iv", IV.hex(), "--segment-duration", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""
    assert not list(out.glob("*.m3u8"))
    _check_fmp4_tracks(out, src, "cbcs", tmp_path)
    _check_dash(out, "cbcs", check_mpd, laurl=None)


def _openssl_decrypt(data: bytes, key: bytes, iv: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", key.hex(), "-iv",
                           iv.hex()], input=data, capture_output=True, check=False)


def test_media_file_aes128_ts(media, tmp_path: Path, key_file: Path) -> None:
    src = media("h264-aac-ts")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "-o", str(out), "--scheme", "aes-128", "--key", KEYSPEC,
              "--key-uri", str(key_file), "--segment-duration", "2", "--json")
    assert res.returncode == 0, res.stderr
    assert KEY.hex() not in res.stdout + res.stderr
    assert not (out / "manifest.mpd").exists()  # default format for a TS scheme: HLS only
    for rendition, stream in (("video0", "v:0"), ("audio0", "a:0")):
        text = (out / rendition / "index.m3u8").read_text()
        (k,) = key_lines(text)
        assert k["METHOD"] == "AES-128" and k["URI"] == str(key_file)
        iv = bytes.fromhex(k["IV"][2:])
        clear_parts = []
        for seg in sorted((out / rendition).glob("*.ts")):
            enc = seg.read_bytes()
            assert enc[0] != 0x47 or enc[188] != 0x47  # not clear TS
            dec = _openssl_decrypt(enc, KEY, iv)
            assert dec.returncode == 0
            clear = dec.stdout
            clear_parts.append(clear)
            assert len(clear) % 188 == 0 and clear[::188] == b"\x47" * (len(clear) // 188)
            bad = _openssl_decrypt(enc, WRONG, iv)
            assert bad.returncode != 0 or bad.stdout[::188] != b"\x47" * (len(bad.stdout) // 188)
        ref = frames(src, stream)
        assert frames(out / rendition / "index.m3u8", stream, hls=True) == ref
        joined = tmp_path / f"{rendition}-openssl.ts"
        joined.write_bytes(b"".join(clear_parts))
        assert frames(joined, stream) == ref  # openssl agrees with FFmpeg's HLS reader


def _with_last_segment_twice(playlist: Path) -> Path:
    """A test copy that repeats the last segment after a discontinuity: FFmpeg never decrypts
    the last SAMPLE-AES video PES of a playlist (media-encryption.md §9)."""
    lines = playlist.read_text().splitlines()
    end = lines.index("#EXT-X-ENDLIST")
    extinf = max(i for i, ln in enumerate(lines) if ln.startswith("#EXTINF"))
    extra = ["#EXT-X-DISCONTINUITY", lines[extinf], lines[extinf + 1]]
    copy = playlist.with_name("test-copy.m3u8")
    copy.write_text("\n".join([*lines[:end], *extra, *lines[end:]]) + "\n")
    return copy


def test_media_file_sample_aes_ts(media, tmp_path: Path, key_file: Path,
                                  wrong_key_file: Path) -> None:
    src = media("h264-aac-ts")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "-o", str(out), "--scheme", "sample-aes", "--key",
              KEYSPEC, "--key-uri", str(key_file), "--iv", IV.hex(), "--segment-duration", "2")
    assert res.returncode == 0, res.stderr
    assert "encrypted 2 of 2 tracks" in res.stdout
    video = out / "video0" / "index.m3u8"
    text = video.read_text()
    (k,) = key_lines(text)
    assert k["METHOD"] == "SAMPLE-AES" and k["IV"].lower() == "0x" + IV.hex()
    assert k["KEYFORMAT"] == "identity" and version(text) >= 5
    ref_v = frames(src, "v:0")
    assert ref_v
    got = frames(_with_last_segment_twice(video), "v:0", hls=True)
    assert got is not None and got[:len(ref_v)] == ref_v
    assert frames(video, "v:0") != ref_v  # the TS segments alone do not decode to the source
    wrong = video.with_name("wrong.m3u8")
    wrong.write_text(text.replace(str(key_file), str(wrong_key_file)))
    bad = frames(_with_last_segment_twice(wrong), "v:0", hls=True)
    assert bad is None or bad[:len(ref_v)] != ref_v
    ref_a = frames(src, "a:0")
    assert frames(out / "audio0" / "index.m3u8", "a:0", hls=True) == ref_a


@pytest.mark.parametrize("name", ["h264-aac-ts", "hevc-ts"])
def test_ts_file_to_dash(name: str, media, tmp_path: Path) -> None:
    """MPEG-TS input to CMAF: the streams copied out of TS get ISO BMFF sample entry names
    (ffmpeg's MP4 muxer refuses the TS stream types it would otherwise keep)."""
    src = media(name)
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "--output", str(out), "--format", "dash",
              "--scheme", "cenc", "--key", KEYSPEC, "--segment-duration", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    segs = sorted((out / "0").glob("segment_*.m4s"))
    assert segs  # (the HEVC asset is one 2-second GOP)
    track = concat(tmp_path / "track-0.mp4", [out / "0" / "init.mp4", *segs])
    ref = frames(src, "v:0")
    assert ref and frames(track, "v:0", key=KEY) == ref
    assert frames(track, "v:0", key=WRONG) != ref
    if name == "h264-aac-ts":
        audio = _fmp4_track(out, "1", tmp_path)
        assert frames(audio, "a:0", key=KEY) == frames(src, "a:0")


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_other_containers_are_segmented(suffix: str, media, tmp_path: Path) -> None:
    from .conftest import ffmpeg, run

    src = tmp_path / f"in{suffix}"
    run([ffmpeg(), "-v", "error", "-i", str(media("h264-aac-mp4")), "-c", "copy", str(src)])
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CENC, segment_duration=2,
                               format=OutputFormat.DASH),
                    raw_keyset([KEYSPEC], Scheme.CENC))
    assert r.manifests == ("manifest.mpd",)
    track = _fmp4_track(out, "0", tmp_path)
    ref = frames(src, "v:0")
    assert ref and frames(track, "v:0", key=KEY) == ref
    assert frames(track, "v:0", key=WRONG) != ref
