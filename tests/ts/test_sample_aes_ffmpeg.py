"""SAMPLE-AES TS decrypted by FFmpeg 8's HLS reader, compared by decoded frame hashes.

FFmpeg never decrypts the last video PES of a playlist (media-encryption.md §9), so the test
playlist appends the last segment again after EXT-X-DISCONTINUITY and compares the frames of the
original segments only: all of them must match the clear source exactly.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from speke_packager.media.aes128 import iv_from_sequence
from speke_packager.media.ts import SampleAesEncryptor, encrypt_sample_aes

from .tools import IV, KEY, WRONG_KEY, cut_segments, hls_frames, write_playlist

pytestmark = pytest.mark.interop

RECIPES = {
    "h264-aac-ts": ("v:0", "a:0"),
    "h264-ac3-ts": ("v:0", "a:0"),
    "h264-eac3-ts": ("v:0", "a:0"),
    "aac-ts": ("a:0",),
    "h264-2aac-ts": ("v:0", "a:0", "a:1"),
    "h264-epb-aac-ts": ("v:0", "a:0"),
}


def _encrypt_dir(segs: list[Path], out: Path, *, per_segment_iv: bool = False) -> list[str]:
    enc = SampleAesEncryptor(KEY, IV)
    names = []

    def one(n: int) -> str:
        iv = iv_from_sequence(n) if per_segment_iv else None
        (out / f"enc{n}.ts").write_bytes(enc.encrypt_segment(segs[n].read_bytes(), iv=iv))
        return f"enc{n}.ts"

    with ThreadPoolExecutor(max_workers=2) as pool:  # one encryptor shared by threads
        names = list(pool.map(one, range(len(segs))))
    return names


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_ffmpeg_decrypts_to_clear_frames(media, tmp_path: Path, recipe: str) -> None:  # type: ignore[no-untyped-def]
    segs = cut_segments(media(recipe), tmp_path)
    names = _encrypt_dir(segs, tmp_path)
    (tmp_path / "key.bin").write_bytes(KEY)
    key_line = f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin",IV=0x{IV.hex()}'
    clear = write_playlist(tmp_path / "clear_ref.m3u8", [s.name for s in segs])
    playlist = write_playlist(tmp_path / "enc.m3u8", names, key_line=key_line, repeat_last=True)
    for stream in RECIPES[recipe]:
        ref = hls_frames(clear, stream)
        assert len(ref) > 100, stream
        got = hls_frames(playlist, stream)
        assert got[: len(ref)] == ref, f"{recipe} {stream}"
    (tmp_path / "key.bin").write_bytes(WRONG_KEY)
    for stream in RECIPES[recipe]:
        ref = hls_frames(clear, stream)
        assert hls_frames(playlist, stream)[: len(ref)] != ref, f"wrong key matched {stream}"


def test_segments_differ_from_clear_and_are_deterministic(media, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    segs = cut_segments(media("h264-aac-ts"), tmp_path)
    data = segs[0].read_bytes()
    enc = encrypt_sample_aes(data, KEY, IV)
    assert enc != data
    assert enc == SampleAesEncryptor(KEY, IV).encrypt_segment(data)  # same bytes anywhere
    assert encrypt_sample_aes(data, WRONG_KEY, IV) != enc


def test_per_segment_iv_audio(media, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """IV = media sequence number (no IV attribute). FFmpeg applies the next segment's IV to
    each segment's last video PES (digest §9), so audio is compared here."""
    segs = cut_segments(media("h264-aac-ts"), tmp_path)
    names = _encrypt_dir(segs, tmp_path, per_segment_iv=True)
    (tmp_path / "key.bin").write_bytes(KEY)
    clear = write_playlist(tmp_path / "clear_ref.m3u8", [s.name for s in segs])
    playlist = write_playlist(tmp_path / "enc.m3u8", names,
                              key_line='#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin"')
    ref = hls_frames(clear, "a:0")
    assert len(ref) > 100
    assert hls_frames(playlist, "a:0") == ref
