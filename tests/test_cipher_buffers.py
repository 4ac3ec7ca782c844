"""No cipher call reads and writes the same memory, on any ``cryptography`` release.

cryptography 51 refuses ``update_into`` with overlapping input and output; older releases
accepted it silently, and no release documents it. The test suite turns on our own guard
(``SPEKE_PACKAGER_CHECK_OVERLAP=1``, set in tests/conftest.py for this process and every command
the tests start), so an overlapping call fails here on every release. Each engine below runs
twice: with the guard, and with the bare contexts of the installed release, and both runs must
give the bytes of an independent reference (openssl, the per-sample reference ciphers, the
frozen SAMPLE-AES reference, FFmpeg 8).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import speke_packager.media.mp4.engine as engine_mod
from speke_packager import crypto
from speke_packager.constants import Scheme
from speke_packager.media.aes128 import (
    Aes128StreamEncryptor,
    encrypt_aes128,
    encrypt_aes128_file,
    encrypt_aes128_into,
)
from speke_packager.media.mp4 import Mp4Encryptor, probe_init
from speke_packager.media.mp4.decryptor import Mp4Decryptor
from speke_packager.media.ts import SampleAesEncryptor
from speke_packager.model import ContentKey
from tests.mp4.helpers import KEY, KID, WRONG, frames, split
from tests.ts.reference import sample_aes as ts_reference
from tests.ts.tools import IV, cut_segments, openssl_encrypt

pytestmark = pytest.mark.interop


@pytest.fixture(params=["guarded", "installed-release"])
def guard(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run once with the overlap guard and once with the installed release's own contexts."""
    on = request.param == "guarded"
    old = crypto.set_overlap_guard(on)
    try:
        yield on
    finally:
        crypto.set_overlap_guard(old)


# -- the guard itself ----------------------------------------------------------------------------
def test_guard_is_on_for_the_suite_and_its_commands() -> None:
    assert os.environ.get("SPEKE_PACKAGER_CHECK_OVERLAP") == "1"
    assert crypto.set_overlap_guard(True) is True  # (already on)


@pytest.mark.parametrize("make", [
    lambda: crypto.aes_cbc_encryptor(KEY, IV),
    lambda: crypto.aes_cbc_decryptor(KEY, IV),
    lambda: crypto.aes_ctr_encryptor(KEY, IV),
    lambda: crypto.aes_ecb_encryptor(KEY),
], ids=["cbc-enc", "cbc-dec", "ctr", "ecb"])
def test_guard_refuses_overlap_and_allows_separate_buffers(
        make: Callable[[], crypto.CipherContext]) -> None:
    old = crypto.set_overlap_guard(True)
    try:
        data = os.urandom(64)
        buf = bytearray(data + bytes(32))
        with memoryview(buf) as mv:
            with pytest.raises(ValueError, match="overlap"):
                make().update_into(mv[:64], mv)  # same memory
            with pytest.raises(ValueError, match="overlap"):
                make().update_into(mv[16:64], mv[:63])  # partly the same
        out = bytearray(64 + 15)
        ctx = make()
        assert ctx.update_into(data, out) == 64
        ref = make()
        assert bytes(out[:64]) == ref.update(data)
    finally:
        crypto.set_overlap_guard(old)


def test_guard_off_gives_the_release_contexts() -> None:
    old = crypto.set_overlap_guard(False)
    try:
        assert type(crypto.aes_ctr_encryptor(KEY, IV)).__name__ != "_OverlapGuard"
    finally:
        crypto.set_overlap_guard(old)
    assert type(crypto.aes_ctr_encryptor(KEY, IV)).__name__ == "_OverlapGuard"


# -- AES-128 (whole segment CBC) -----------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, 100_003])
def test_aes128_every_entry_point_equals_openssl(guard: bool, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    want = openssl_encrypt(data, KEY, IV)
    assert encrypt_aes128(data, KEY, IV) == want
    out = bytearray(size + 31)
    n = encrypt_aes128_into(data, out, KEY, IV)
    assert bytes(out[:n]) == want
    sink = io.BytesIO()
    assert encrypt_aes128_file(io.BytesIO(data), sink, KEY, IV, chunk=4096) == len(want)
    assert sink.getvalue() == want
    stream = Aes128StreamEncryptor(KEY, IV)
    got = b"".join(stream.update(data[i:i + 1000]) for i in range(0, size, 1000))
    assert got + stream.finalize() == want
    fresh = Cipher(algorithms.AES(WRONG), modes.CBC(IV)).encryptor()
    assert size < 16 or fresh.update(data[:16]) != want[:16]  # a wrong key differs


# -- SAMPLE-AES on MPEG-TS -----------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["h264-aac-ts", "h264-ac3-ts", "h264-epb-aac-ts"])
def test_sample_aes_entry_points_equal_reference(guard: bool, media: Callable[[str], Path],
                                                 tmp_path: Path, recipe: str) -> None:
    segs = cut_segments(media(recipe), tmp_path)
    enc = SampleAesEncryptor(KEY, IV)
    for seg in segs[:2]:
        data = seg.read_bytes()
        want = ts_reference.SampleAesEncryptor(KEY, IV).encrypt_segment(data)
        assert want != data
        assert enc.encrypt_segment(data) == want
        buf = bytearray(data)
        assert b"".join(map(bytes, enc.encrypt_segment_parts(buf, in_place=True))) == want
        dst = tmp_path / f"{seg.stem}.enc.ts"
        enc.encrypt_file(seg, dst)
        assert dst.read_bytes() == want
        assert seg.read_bytes() == data


# -- fMP4 cenc and cbcs (serial and lane-parallel) -----------------------------------------------
@pytest.fixture(params=["serial", "lanes"])
def cbcs_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
              ) -> tuple[str, list[int]]:
    """The cbcs path to force, and a list that counts the lane-parallel batches taken."""
    calls: list[int] = []
    if request.param == "lanes":  # every batch of whole samples takes the lane-parallel path
        monkeypatch.setattr(engine_mod, "_LANES_MIN", 1)
        monkeypatch.setattr(engine_mod, "_LANES_FIXED", 0)
        monkeypatch.setattr(engine_mod, "_COLUMN_COST", -10**12)
        monkeypatch.setattr(engine_mod, "_LANE_TABLE", 10**12)
        lanes = engine_mod.CbcsEngine._lanes

        def counted(self: engine_mod.CbcsEngine, *args: object) -> None:
            calls.append(1)
            lanes(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(engine_mod.CbcsEngine, "_lanes", counted)
    else:
        monkeypatch.setattr(engine_mod, "_LANES_MIN", 10**9)
    return str(request.param), calls


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS])
def test_fmp4_entry_points_agree_and_decrypt(guard: bool, cbcs_path: tuple[str, list[int]],
                                            media: Callable[[str], Path], tmp_path: Path,
                                            scheme: Scheme) -> None:
    path, lane_batches = cbcs_path
    if scheme is Scheme.CENC and path == "lanes":
        pytest.skip("the lane-parallel path is cbcs only")
    clear = media("h264-aac-fmp4")
    clear_init, segments = split(clear.read_bytes())
    keys = {t.track_id: ContentKey(KID, KEY) for t in probe_init(clear_init)}
    enc = Mp4Encryptor(clear_init, scheme, keys, iv_seed=b"buffers")
    init = enc.encrypted_init()
    dec = Mp4Decryptor(init, {KID: KEY})
    whole = io.BytesIO()
    enc.encrypt_stream(io.BytesIO(clear.read_bytes()), whole)
    out = [init]
    for i, seg in enumerate(segments):
        frozen = bytes(seg)
        want = enc.encrypt_segment(seg, segment_index=i)
        assert seg == frozen  # the input is left alone
        assert want != seg
        assert dec.decrypt_segment(want) == seg  # per-sample reference ciphers
        buf = bytearray(seg)
        parts = enc.encrypt_segment_parts(buf, segment_index=i, in_place=True)
        assert b"".join(map(bytes, parts)) == want
        src = tmp_path / f"in{i}.m4s"
        src.write_bytes(seg)
        enc.encrypt_segment_file(src, tmp_path / f"out{i}.m4s", segment_index=i)
        assert (tmp_path / f"out{i}.m4s").read_bytes() == want
        out.append(want)
    # the whole-file stream path gives the same samples: FFmpeg 8 decodes it to the clear frames
    enc_file = tmp_path / "whole.mp4"
    enc_file.write_bytes(whole.getvalue())
    segs_file = tmp_path / "segments.mp4"
    segs_file.write_bytes(b"".join(out))
    ref = frames(clear, "v:0")
    assert len(ref) > 50
    assert frames(enc_file, "v:0", KEY) == ref
    assert frames(segs_file, "v:0", KEY) == ref
    assert frames(segs_file, "a:0", KEY) == frames(clear, "a:0")
    assert frames(segs_file, "v:0", WRONG) != ref
    assert (len(lane_batches) > 0) == (path == "lanes")
