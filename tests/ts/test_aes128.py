"""HLS AES-128 (whole segment): openssl and FFmpeg's HLS reader as independent decryptors."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speke_packager.errors import UsageError
from speke_packager.media.aes128 import (
    Aes128StreamEncryptor,
    encrypt_aes128,
    encrypt_aes128_file,
    iv_from_sequence,
)

from .tools import (
    IV,
    KEY,
    WRONG_KEY,
    cut_segments,
    ffmpeg,
    hls_frames,
    openssl_decrypt,
    openssl_encrypt,
    write_playlist,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 32, 188, 188 * 7, 100_003])
def test_matches_openssl_and_pads_1_to_16(n: int) -> None:
    data = os.urandom(n)
    enc = encrypt_aes128(data, KEY, IV)
    assert len(enc) == n + 16 - n % 16  # aligned input gets a whole extra block
    assert enc == openssl_encrypt(data, KEY, IV)
    assert openssl_decrypt(enc, KEY, IV) == data


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=700), max_size=8))
def test_streaming_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    enc = Aes128StreamEncryptor(KEY, IV)
    out = bytearray()
    pos = 0
    for c in cuts:
        out += enc.update(memoryview(data)[pos : pos + c])
        pos += c
    out += enc.update(data[pos:])
    out += enc.finalize()
    assert bytes(out) == encrypt_aes128(data, KEY, IV)


@pytest.mark.parametrize("chunk", [16, 17, 4096, 1 << 20])
def test_file_api_any_chunk(chunk: int) -> None:
    data = os.urandom(70_001)
    dst = io.BytesIO()
    n = encrypt_aes128_file(io.BytesIO(data), dst, KEY, IV, chunk=chunk)
    assert n == len(dst.getvalue()) == 70_001 + 16 - 70_001 % 16
    assert dst.getvalue() == encrypt_aes128(data, KEY, IV)


def test_stream_misuse_and_bad_parameters() -> None:
    enc = Aes128StreamEncryptor(KEY, IV)
    enc.finalize()
    with pytest.raises(UsageError):
        enc.update(b"x")
    with pytest.raises(UsageError):
        enc.finalize()
    with pytest.raises(UsageError):
        encrypt_aes128(b"x", KEY[:15], IV)
    with pytest.raises(UsageError):
        encrypt_aes128(b"x", KEY, IV[:8])
    assert KEY.hex() not in repr(Aes128StreamEncryptor(KEY, IV))


def test_iv_from_sequence() -> None:
    assert iv_from_sequence(0) == bytes(16)
    assert iv_from_sequence(7) == bytes(15) + b"\x07"
    assert iv_from_sequence(0x01020304) == bytes(12) + b"\x01\x02\x03\x04"
    for bad in (-1, 1 << 32):
        with pytest.raises(UsageError):
            iv_from_sequence(bad)


def test_ts_segments_openssl(media, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    segs = cut_segments(media("h264-aac-ts"), tmp_path)
    for s in segs:
        clear = s.read_bytes()
        enc = encrypt_aes128(clear, KEY, IV)
        assert openssl_decrypt(enc, KEY, IV) == clear
        wrong = openssl_decrypt(enc, WRONG_KEY, IV)
        # wrong key: bad padding, or (about 1 in 256) garbage without TS sync bytes
        assert wrong is None or wrong[0::188].count(0x47) < len(wrong) // 188


def _hls_aes(tmp_path: Path, segs: list[Path], key: bytes, *, explicit_iv: bool,
             seq: int = 0) -> Path:
    (tmp_path / "key.bin").write_bytes(key)
    names = []
    for n, s in enumerate(segs):
        iv = IV if explicit_iv else iv_from_sequence(seq + n)
        (tmp_path / f"enc{n}.ts").write_bytes(encrypt_aes128(s.read_bytes(), KEY, iv))
        names.append(f"enc{n}.ts")
    key_line = '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"' + (f",IV=0x{IV.hex()}" if explicit_iv
                                                             else "")
    return write_playlist(tmp_path / "enc.m3u8", names, key_line=key_line, media_sequence=seq)


@pytest.mark.interop
@pytest.mark.parametrize("explicit_iv", [True, False])
def test_ts_ffmpeg_hls_reader(media, tmp_path: Path, explicit_iv: bool) -> None:  # type: ignore[no-untyped-def]
    segs = cut_segments(media("h264-aac-ts"), tmp_path)
    clear = write_playlist(tmp_path / "clear_ref.m3u8", [s.name for s in segs])
    playlist = _hls_aes(tmp_path, segs, KEY, explicit_iv=explicit_iv, seq=5)
    for stream in ("v:0", "a:0"):
        ref = hls_frames(clear, stream)
        assert len(ref) > 100
        assert hls_frames(playlist, stream) == ref
    (tmp_path / "key.bin").write_bytes(WRONG_KEY)
    assert hls_frames(playlist, "v:0") != hls_frames(clear, "v:0")


def _fmp4_hls(src: Path, out: Path) -> tuple[Path, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                    "-map", "0", "-c", "copy", "-f", "hls", "-hls_segment_type", "fmp4",
                    "-hls_time", "2", "-hls_list_size", "0", "-hls_fmp4_init_filename",
                    "init.mp4", "-hls_segment_filename", str(out / "seg%d.m4s"),
                    str(out / "clear.m3u8")], check=True)
    segs = sorted(out.glob("seg*.m4s"), key=lambda p: int(p.stem[3:]))
    assert len(segs) >= 3
    return out / "init.mp4", segs


@pytest.mark.interop
@pytest.mark.parametrize("encrypt_init", [False, True])
def test_fmp4_segments_ffmpeg_hls_reader(media, tmp_path: Path, encrypt_init: bool) -> None:  # type: ignore[no-untyped-def]
    init, segs = _fmp4_hls(media("h264-aac-fmp4"), tmp_path)
    clear = write_playlist(tmp_path / "clear_ref.m3u8", [s.name for s in segs],
                           map_uri="init.mp4")
    (tmp_path / "key.bin").write_bytes(KEY)
    names = []
    for n, s in enumerate(segs):
        data = s.read_bytes()
        enc = encrypt_aes128(data, KEY, IV)
        assert openssl_decrypt(enc, KEY, IV) == data
        (tmp_path / f"enc{n}.m4s").write_bytes(enc)
        names.append(f"enc{n}.m4s")
    map_uri = "init.mp4"
    if encrypt_init:  # an init section after the key tag is encrypted and needs the tag's IV
        (tmp_path / "init.enc.mp4").write_bytes(encrypt_aes128(init.read_bytes(), KEY, IV))
        map_uri = "init.enc.mp4"
    playlist = write_playlist(tmp_path / "enc.m3u8", names, map_uri=map_uri,
                              map_after_key=encrypt_init,
                              key_line=f'#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x{IV.hex()}')
    for stream in ("v:0", "a:0"):
        ref = hls_frames(clear, stream)
        assert len(ref) > 100
        assert hls_frames(playlist, stream) == ref
    (tmp_path / "key.bin").write_bytes(WRONG_KEY)
    assert hls_frames(playlist, "v:0") != hls_frames(clear, "v:0")
