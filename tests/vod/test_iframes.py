"""I-frame playlists (Shaka Packager HLS TS output): kept for SAMPLE-AES with byte ranges moved
to where each key frame landed; left out with a warning when they cannot stay valid."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager._tools import PACKAGER, find_tool
from speke_packager.constants import Scheme
from speke_packager.pipeline.options import VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod

from .conftest import IV, KEYSPEC, frames, key_lines, run

_RANGE = re.compile(r"#EXT-X-BYTERANGE:(\d+)@(\d+)")


@pytest.fixture(scope="module")
def iframe_package(media: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
                   ) -> Path:
    """Emulation-prevention-heavy H.264 (SAMPLE-AES grows its PES) with an I-frame playlist."""
    src = media("h264-epb-aac-ts")
    out = tmp_path_factory.mktemp("iframes")
    pk = find_tool("packager", PACKAGER)
    assert pk
    run([pk, f"in={src},stream=video,segment_template=v_$Number$.ts,playlist_name=v.m3u8,"
             "iframe_playlist_name=v_iframe.m3u8",
         f"in={src},stream=audio,segment_template=a_$Number$.ts,playlist_name=a.m3u8,"
         "hls_group_id=aud,hls_name=en",
         "--hls_master_playlist_output", "master.m3u8", "--segment_duration", "2", "--quiet"],
        cwd=out)
    return out / "master.m3u8"


def _decodable_copy(pl: Path) -> Path:
    """Test copy: ranges start at 0 (FFmpeg needs the PMT to apply SAMPLE-AES) and the last
    entry is repeated (FFmpeg never decrypts a playlist's last video PES)."""
    text = _RANGE.sub(lambda m: f"#EXT-X-BYTERANGE:{int(m.group(1)) + int(m.group(2))}@0",
                      pl.read_text())
    lines = text.splitlines()
    end = lines.index("#EXT-X-ENDLIST")
    last = max(i for i, ln in enumerate(lines) if ln.startswith("#EXTINF"))
    lines[end:end] = lines[last:end]
    copy = pl.with_name("test-" + pl.name)
    copy.write_text("\n".join(lines) + "\n")
    return copy


def test_sample_aes_iframe_ranges_follow_the_key_frames(iframe_package: Path, tmp_path: Path,
                                                       key_file: Path) -> None:
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=iframe_package, output=out, scheme=Scheme.SAMPLE_AES,
                               key_uri=str(key_file), iv=IV),
                    raw_keyset([KEYSPEC], Scheme.SAMPLE_AES))
    assert "v_iframe.m3u8" in r.manifests and not r.warnings
    assert 'URI="v_iframe.m3u8"' in (out / "master.m3u8").read_text()
    text = (out / "v_iframe.m3u8").read_text()
    assert "#EXT-X-I-FRAMES-ONLY" in text
    (k,) = key_lines(text)
    assert k["METHOD"] == "SAMPLE-AES" and k["IV"].lower() == "0x" + IV.hex()
    old = _RANGE.findall((iframe_package.parent / "v_iframe.m3u8").read_text())
    new = _RANGE.findall(text)
    assert len(old) == len(new) >= 2
    assert old != new  # the key frames grew: ranges had to move
    ref = frames(_decodable_copy(iframe_package.parent / "v_iframe.m3u8"), "v:0", hls=True)
    got = frames(_decodable_copy(out / "v_iframe.m3u8"), "v:0", hls=True)
    assert ref and got and got[:len(old)] == ref[:len(old)]


def test_aes128_iframe_playlist_is_left_out(iframe_package: Path, tmp_path: Path,
                                            key_file: Path) -> None:
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=iframe_package, output=out, scheme=Scheme.AES_128,
                               key_uri=str(key_file), iv=IV),
                    raw_keyset([KEYSPEC], Scheme.AES_128))
    assert any("v_iframe.m3u8" in w for w in r.warnings)
    assert not (out / "v_iframe.m3u8").exists()
    master = (out / "master.m3u8").read_text()
    assert "I-FRAME-STREAM-INF" not in master and "v.m3u8" in master


def _boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        out.append((data[pos + 4:pos + 8], pos, size))
        pos += size
    return out


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_fmp4_iframe_ranges_follow_the_grown_moof(media, tmp_path: Path, key_file: Path,
                                                  scheme: str) -> None:
    src = media("h264-aac-mp4")
    pkg = tmp_path / "clear"
    pkg.mkdir()
    pk = find_tool("packager", PACKAGER)
    assert pk
    run([pk, f"in={src},stream=video,init_segment=v_init.mp4,segment_template=v_$Number$.m4s,"
             "playlist_name=v.m3u8,iframe_playlist_name=v_iframe.m3u8",
         "--hls_master_playlist_output", "master.m3u8", "--segment_duration", "2", "--quiet"],
        cwd=pkg)
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=pkg / "master.m3u8", output=out, scheme=Scheme(scheme),
                               key_uri=str(key_file), iv=IV if scheme == "cbcs" else None),
                    raw_keyset([KEYSPEC], Scheme(scheme)))
    assert not r.warnings and 'URI="v_iframe.m3u8"' in (out / "master.m3u8").read_text()
    text = (out / "v_iframe.m3u8").read_text()
    (k,) = key_lines(text)
    assert k["METHOD"] == Scheme(scheme).hls_method
    old = _RANGE.findall((pkg / "v_iframe.m3u8").read_text())
    new = _RANGE.findall(text)
    names = [ln for ln in text.splitlines() if ln.endswith(".m4s")]
    assert len(old) == len(new) == len(names) >= 2
    for (ol, oo), (nl, no), name in zip(old, new, names, strict=True):
        clear, enc = (pkg / name).read_bytes(), (out / name).read_bytes()
        cb = {off: (t, size) for t, off, size in _boxes(clear)}
        eb = {off: (t, size) for t, off, size in _boxes(enc)}
        assert cb[int(oo)][0] == b"moof" and eb[int(no)][0] == b"moof"
        grown = eb[int(no)][1] - cb[int(oo)][1]
        assert grown > 0 and int(nl) == int(ol) + grown  # moof grew, sample bytes did not
        # the range's tail (mdat header + key-frame bytes) sits right after the moof
        assert enc[int(no) + eb[int(no)][1] + 4:int(no) + eb[int(no)][1] + 8] == b"mdat"
    # the key frames themselves still decrypt (whole segments, FFmpeg -decryption_key)
    from .conftest import KEY, concat

    names_main = [ln for ln in (out / "v.m3u8").read_text().splitlines()
                  if ln.endswith(".m4s")]
    track = concat(tmp_path / "t.mp4", [out / "v_init.mp4", *[out / n for n in names_main]])
    clear_track = concat(tmp_path / "c.mp4", [pkg / "v_init.mp4",
                                              *[pkg / n for n in names_main]])
    assert frames(track, "v:0", key=KEY) == frames(clear_track, "v:0")
