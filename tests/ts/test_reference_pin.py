"""The optimised TS encryptors give the same bytes as the first, straightforward implementation
(frozen in ``tests/ts/reference``) on every kind of test asset, in both directions.

The reference was proven against FFmpeg, Shaka Packager and openssl by the other tests in this
folder; pinning the optimised code to it byte for byte keeps every one of those proofs valid."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from speke_packager._tools import PACKAGER, find_tool
from speke_packager.errors import UsageError
from speke_packager.media.aes128 import (
    Aes128StreamEncryptor,
    encrypt_aes128,
    encrypt_aes128_file,
    encrypt_aes128_into,
)
from speke_packager.media.ts import SampleAesEncryptor, decrypt_sample_aes, encrypt_sample_aes

from .reference import sample_aes as ref
from .tools import IV, KEY, WRONG_KEY, cut_segments, openssl_encrypt

RECIPES = ("h264-aac-ts", "h264-ac3-ts", "h264-eac3-ts", "h264-2aac-ts", "h264-epb-aac-ts",
           "aac-ts")


@pytest.fixture(scope="module")
def segments(media, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:  # type: ignore[no-untyped-def]
    out = {}
    for r in RECIPES:
        out[r] = [p.read_bytes() for p in cut_segments(media(r), tmp_path_factory.mktemp(r))]
    return out


@pytest.mark.parametrize("recipe", RECIPES)
def test_sample_aes_same_bytes_as_reference(segments: dict[str, list[bytes]], recipe: str
                                            ) -> None:
    ivs = [IV, os.urandom(16)]
    keys = [KEY, os.urandom(16)]
    wrong, want = [], []
    for n, seg in enumerate(segments[recipe]):
        key, iv = keys[n % 2], ivs[n % 2]
        mine = encrypt_sample_aes(seg, key, iv)
        theirs = ref.encrypt_sample_aes(seg, key, iv)
        assert mine == theirs, f"segment {n} differs from the reference"
        assert mine != seg
        assert decrypt_sample_aes(mine, key, iv) == ref.decrypt_sample_aes(mine, key, iv)
        want.append(theirs)
        wrong.append(encrypt_sample_aes(seg, WRONG_KEY, iv))
    # negative control: another key gives other bytes than the reference's (a short last
    # segment may hold no encryptable frame, so the recipe as a whole is compared)
    assert wrong != want


def test_sample_aes_instance_matches_reference_across_segments(
        segments: dict[str, list[bytes]]) -> None:
    mine, theirs = SampleAesEncryptor(KEY, IV), ref.SampleAesEncryptor(KEY, IV)
    for seg in segments["h264-2aac-ts"]:
        assert mine.encrypt_segment(seg) == theirs.encrypt_segment(seg)


def test_sample_aes_shaka_made_input_matches_reference(media, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Another segmenter's layout (AF-stuffed PSI, PCR in PES packets)."""
    packager = find_tool("packager", PACKAGER)
    assert packager
    src = media("h264-aac-ts")
    segs: list[Path] = []
    for stream in ("video", "audio"):
        subprocess.run([packager, f"in={src},stream={stream},segment_template={tmp_path}/"
                        f"{stream}_$Number$.ts,playlist_name={stream}.m3u8",
                        "--hls_master_playlist_output", str(tmp_path / f"{stream}.m3u8"),
                        "--segment_duration", "2"], check=True, capture_output=True)
        segs += sorted(tmp_path.glob(f"{stream}_*.ts"))
    assert len(segs) >= 6
    for s in segs:
        data = s.read_bytes()
        assert encrypt_sample_aes(data, KEY, IV) == ref.encrypt_sample_aes(data, KEY, IV), s.name


def _aes128_reference(data: bytes, key: bytes, iv: bytes) -> bytes:
    return openssl_encrypt(data, key, iv)


@pytest.mark.parametrize("cut", [0, 1, 15, 16, 17, 188 * 7, None])
def test_aes128_same_bytes_as_openssl(segments: dict[str, list[bytes]], cut: int | None) -> None:
    seg = segments["h264-aac-ts"][0]
    data = seg if cut is None else seg[:cut]
    want = _aes128_reference(data, KEY, IV)
    assert encrypt_aes128(data, KEY, IV) == want
    assert encrypt_aes128(memoryview(bytearray(data)), KEY, IV) == want
    for chunk in (16, 4096, 1 << 20):
        dst = io.BytesIO()
        assert encrypt_aes128_file(io.BytesIO(data), dst, KEY, IV, chunk=chunk) == len(want)
        assert dst.getvalue() == want
    st = Aes128StreamEncryptor(KEY, IV)
    parts = [st.update(data[i : i + 1000]) for i in range(0, len(data), 1000)]
    assert b"".join(parts) + st.finalize() == want
    assert encrypt_aes128(data, WRONG_KEY, IV) != want


@pytest.mark.parametrize("n", [0, 15, 16, 188 * 100 + 3])
def test_aes128_into_caller_buffer(n: int) -> None:
    data = os.urandom(n)
    want = _aes128_reference(data, KEY, IV)
    out = bytearray(n + 31 - n % 16)
    assert encrypt_aes128_into(data, out, KEY, IV) == len(want)
    assert bytes(out[: len(want)]) == want
    with pytest.raises(UsageError, match="too small"):
        encrypt_aes128_into(data, bytearray(len(out) - 1), KEY, IV)


def test_reused_work_buffers_big_then_small_and_threads(segments: dict[str, list[bytes]]
                                                         ) -> None:
    """Per-thread work buffers: a small segment after a big one carries nothing over, and
    threads encrypting at once get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    segs = sorted(segments["h264-aac-ts"] + segments["aac-ts"], key=len, reverse=True)
    small = segs[-1][: 188 * 40]
    data = [*segs, small, segs[0][:188 * 7 + 5]]
    want_saes = [ref.encrypt_sample_aes(s, KEY, IV) for s in data[:-2]]
    want_aes = [openssl_encrypt(s, KEY, IV) for s in data]
    assert [encrypt_aes128(s, KEY, IV) for s in data] == want_aes
    assert [encrypt_sample_aes(s, KEY, IV) for s in data[:-2]] == want_saes
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda s: encrypt_aes128(s, KEY, IV), data * 3)) == want_aes * 3
        assert list(pool.map(lambda s: encrypt_sample_aes(s, KEY, IV), data[:-2] * 3)
                    ) == want_saes * 3
