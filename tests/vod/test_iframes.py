"""I-frame playlists (Shaka Packager HLS TS output): kept for SAMPLE-AES with byte ranges moved
to where each key frame landed; left out with a warning when they cannot stay valid."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager._tools import find_tool
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
    pk = find_tool("packager")
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
