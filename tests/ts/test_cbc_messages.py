"""CbcMessages (one CBC context for many messages from the same IV) against a fresh context per
message, both directions, and the one-buffer PES builder against header + encrypt_h264_es."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from speke_packager.media.codecs.nal import iter_annexb
from speke_packager.media.ts.es_crypto import (
    CbcMessages,
    crypt_adts_es,
    encrypt_h264_es,
    encrypt_h264_pes,
    nal_spans,
)

from .tools import IV, KEY, WRONG_KEY


def _fresh(data: bytes, key: bytes, iv: bytes, encrypt: bool) -> bytes:
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=12),
       st.booleans())
def test_messages_equal_fresh_contexts(blocks: list[int], encrypt: bool) -> None:
    msgs = [os.urandom(16 * n) for n in blocks]
    src = bytearray(b"".join(msgs))
    buf = bytearray(len(src) + 16)
    cbc = CbcMessages(KEY, IV, encrypt=encrypt)
    pos = 0
    with memoryview(src) as sv, memoryview(buf) as mv:
        for m in msgs:
            cbc.crypt(sv, mv, pos, len(m))
            pos += len(m)
    pos = 0
    for m in msgs:
        assert bytes(buf[pos : pos + len(m)]) == _fresh(m, KEY, IV, encrypt)
        assert bytes(buf[pos : pos + len(m)]) != _fresh(m, WRONG_KEY, IV, encrypt)
        pos += len(m)
    assert bytes(buf[pos:]) == bytes(16)  # the slack is not written past the messages


def test_round_trip_and_repr() -> None:
    msgs = [os.urandom(16 * n) for n in (3, 1, 7)]
    buf = bytearray(b"".join(msgs) + bytes(16))
    for encrypt in (True, False):
        cbc = CbcMessages(KEY, IV, encrypt=encrypt)
        src = bytearray(buf)
        with memoryview(src) as sv, memoryview(buf) as mv:
            pos = 0
            for m in msgs:
                cbc.crypt(sv, mv, pos, len(m))
                pos += len(m)
    assert bytes(buf[:-16]) == b"".join(msgs)
    assert KEY.hex() not in repr(CbcMessages(KEY, IV, encrypt=True))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 5, 6, 9]), st.integers(0, 900),
                          st.sampled_from([b"", b"\x00\x00", b"\x00\x00\x03"])),
                min_size=1, max_size=5))
def test_pes_builder_equals_header_plus_es(nals: list[tuple[int, int, bytes]]) -> None:
    es = b"".join(b"\x00\x00\x00\x01" + bytes((0x60 | t,)) + os.urandom(n) + z
                  for t, n, z in nals)
    head = bytes.fromhex("000001e0000080800521000100ff")
    want = head + encrypt_h264_es(es, KEY, IV)
    got = encrypt_h264_pes(es, head, CbcMessages(KEY, IV, encrypt=True))
    if any(t in (1, 5) and n > 47 for t, n, _ in nals):
        assert got == want and want[len(head):] != es
    else:
        assert got is None and want == head + es


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x00",
                                           b"\x00\x00", b""]),
                          st.binary(max_size=40)), max_size=8),
       st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x00\x00\x00"]))
def test_nal_spans_equal_iter_annexb(pieces: list[tuple[bytes, bytes]], tail: bytes) -> None:
    es = b"".join(a + b for a, b in pieces) + tail
    assert nal_spans(es) == list(iter_annexb(es))


def _adts_frame(payload: int, crc: bool = False) -> bytes:
    length = (9 if crc else 7) + payload
    hdr = bytes([0xFF, 0xF0 if crc else 0xF1, 0x50, 0x80 | (length >> 11),
                 (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])
    return hdr + (b"\x00\x00" if crc else b"") + os.urandom(payload)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.booleans()), min_size=1, max_size=6),
       st.sampled_from(["none", "sync", "short", "truncated"]))
def test_adts_fast_walk_equals_reference(frames: list[tuple[int, bool]], fault: str) -> None:
    """The header-byte walk gives the reference's bytes and setup data, and the same typed
    error (same message) for a lost sync word, a truncated header or a frame past the end."""
    from speke_packager.errors import CodecError

    from .reference import es_crypto as ref_es

    es = bytearray(b"".join(_adts_frame(n, c) for n, c in frames))
    if fault == "sync":
        es += b"\x12" * 9
    elif fault == "short":
        es += b"\xff\xf1\x50"
    elif fault == "truncated":
        es += _adts_frame(100)[:50]
    mine, theirs = bytearray(es), bytearray(es)
    try:
        want = ref_es.crypt_adts_es(theirs, KEY, IV)
    except CodecError as exc:
        with pytest.raises(CodecError) as got:
            crypt_adts_es(mine, KEY, IV)
        assert str(got.value) == str(exc)
        return
    assert crypt_adts_es(mine, KEY, IV) == want
    assert mine == theirs
    assert fault == "none" and (mine != es or all(n < 32 for n, _ in frames))
