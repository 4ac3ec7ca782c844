"""SAMPLE-AES elementary-stream rules against a plain per-block reference written in the test
(media-encryption.md §3.1-§3.3) with the cipher library used directly."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from speke_packager.media.ts.es_crypto import (
    crypt_adts_es,
    decrypt_h264_es,
    encrypt_h264_es,
    encrypt_h264_nal,
)

from .tools import IV, KEY


def _escape(b: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for x in b:
        if zeros >= 2 and x <= 3:
            out.append(3)
            zeros = 0
        out.append(x)
        zeros = zeros + 1 if x == 0 else 0
    return bytes(out)


def _reference_nal(nal: bytes) -> bytes:
    if nal[0] & 0x1F not in (1, 5) or len(nal) <= 48:
        return nal
    out = bytearray(nal)
    enc = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
    pos = 32
    while len(out) - pos > 16:
        out[pos : pos + 16] = enc.update(bytes(out[pos : pos + 16]))
        pos += 160
    return _escape(bytes(out))


# NAL bodies rich in zero runs, so emulation prevention is exercised
_body = st.lists(st.sampled_from([b"\x00", b"\x00\x00", b"\x03", b"\x01", b"\x7f", b"\xa5\x5a",
                                  b"\x00\x00\x03\x01"]), max_size=900).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([0x65, 0x41, 0x01, 0x25, 0x06, 0x67, 0x09]), _body)
def test_nal_matches_reference(header: int, body: bytes) -> None:
    nal = _escape(bytes((header,)) + body + b"\x80")  # a stored, escaped NAL
    got = encrypt_h264_nal(nal, KEY, IV)
    assert got == _reference_nal(nal)
    es = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01" + nal
    assert decrypt_h264_es(encrypt_h264_es(es, KEY, IV), KEY, IV) == es


def test_nal_length_edges() -> None:
    for n in (47, 48, 49, 64, 65, 208, 209, 210):
        nal = bytes((0x65,)) + bytes(range(1, n))
        got = encrypt_h264_nal(nal, KEY, IV)
        assert got == _reference_nal(nal)
        assert (got == nal) == (n <= 48)
        if n > 48:
            assert got[:32] == nal[:32] and got[-1:] == nal[-1:]  # leader and tail clear


def _adts(frame_len: int, payload: bytes) -> bytes:
    h = bytearray(b"\xff\xf1\x4c\x80\x00\x1f\xfc")
    h[3] = (h[3] & 0xFC) | (frame_len >> 11)
    h[4] = (frame_len >> 3) & 0xFF
    h[5] = ((frame_len & 7) << 5) | 0x1F
    return bytes(h) + payload


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=7, max_value=600), min_size=1, max_size=6))
def test_adts_matches_reference(lengths: list[int]) -> None:
    frames = [_adts(n, bytes((i * 7 + j) & 0xFF for j in range(n - 7)))
              for i, n in enumerate(lengths)]
    buf = bytearray(b"".join(frames))
    crypt_adts_es(buf, KEY, IV)
    ref = bytearray()
    for f in frames:
        out = bytearray(f)
        n = (len(f) - 7 - 16) // 16
        if n > 0:
            enc = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()  # IV reset per frame
            out[23 : 23 + 16 * n] = enc.update(bytes(out[23 : 23 + 16 * n]))
        ref += out
    assert buf == ref
    crypt_adts_es(buf, KEY, IV, encrypt=False)
    assert bytes(buf) == b"".join(frames)
