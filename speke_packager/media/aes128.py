"""HLS ``METHOD=AES-128``: AES-128-CBC with PKCS#7 padding over a whole segment.

The same routine serves MPEG-TS segments and fMP4 media segments (RFC 8216 §4.3.2.4,
media-encryption.md §1): every byte of the file is one CBC message, chaining restarts for each
segment (and for each ``EXT-X-BYTERANGE`` sub-range), padding is always 1-16 bytes.

fMP4 init sections: write ``EXT-X-MAP`` *before* the first ``EXT-X-KEY`` and leave the init
section clear (recommended). An init section declared after the key tag must be encrypted too,
with :func:`encrypt_aes128` and the tag's explicit ``IV`` (an init section has no media sequence
number, so :func:`iv_from_sequence` cannot apply to it).

Keys and IVs are raw 16-byte values; nothing here logs or reports them.
"""

from __future__ import annotations

from typing import BinaryIO

from .._io import ThreadScratch
from ..crypto import aes_cbc_encryptor
from ..errors import UsageError

__all__ = [
    "Aes128StreamEncryptor",
    "encrypt_aes128",
    "encrypt_aes128_file",
    "encrypt_aes128_into",
    "iv_from_sequence",
]

_BLOCK = 16


def _check_key_iv(key: bytes, iv: bytes) -> None:
    if len(key) != _BLOCK:
        raise UsageError("AES-128 key must be 16 bytes")
    if len(iv) != _BLOCK:
        raise UsageError("AES-128 IV must be 16 bytes")


def _padding(total: int) -> bytes:
    n = _BLOCK - total % _BLOCK  # 1..16; an aligned length gets a whole block of 0x10
    return bytes((n,)) * n


def iv_from_sequence(media_sequence: int) -> bytes:
    """The implicit HLS IV: the media sequence number as a 128-bit big-endian integer.

    The sequence number is ``EXT-X-MEDIA-SEQUENCE`` plus the segment's position in the playlist
    (not a number taken from the file name). Values >= 2**32 are refused because hls.js uses only
    the low 32 bits."""
    if media_sequence < 0:
        raise UsageError("media sequence number must not be negative")
    if media_sequence >= 1 << 32:
        raise UsageError("media sequence number must be < 2**32 (hls.js keeps only 32 bits)")
    return media_sequence.to_bytes(_BLOCK, "big")


# segments up to this size reuse one per-thread work buffer
_SCRATCH = ThreadScratch(cap=32 << 20)


def encrypt_aes128(data: bytes | bytearray | memoryview, key: bytes, iv: bytes) -> bytes:
    """Encrypt one whole segment (or one byte range) with AES-128-CBC and PKCS#7 padding.

    The output is ``len(data) + 16 - len(data) % 16`` bytes long. One cipher call writes the
    whole-block part into a reused per-thread work buffer, only the last block is padded, and
    the result is one copy out of it."""
    _check_key_iv(key, iv)
    mv = memoryview(data).cast("B")
    n = len(mv)
    full = n - n % _BLOCK
    work = _SCRATCH.get(full + 2 * _BLOCK - 1)
    with memoryview(work) as ov:
        _encrypt_into(mv, ov, key, iv)
        return bytes(ov[: full + _BLOCK])


def _encrypt_into(mv: memoryview, ov: memoryview, key: bytes, iv: bytes) -> int:
    n = len(mv)
    full = n - n % _BLOCK
    enc = aes_cbc_encryptor(key, iv)
    if full:
        enc.update_into(mv[:full], ov)  # needs len(ov) >= full + 15
    enc.update_into(bytes(mv[full:]) + _padding(n), ov[full:])
    enc.finalize()
    return full + _BLOCK


def encrypt_aes128_into(data: bytes | bytearray | memoryview, out: bytearray | memoryview,
                        key: bytes, iv: bytes) -> int:
    """:func:`encrypt_aes128` into a caller's buffer (no output allocation, no copy); returns
    the ciphertext length. ``out`` must hold ``len(data) + 31 - len(data) % 16`` bytes (the
    cipher library wants 15 bytes of slack past the ciphertext)."""
    _check_key_iv(key, iv)
    mv = memoryview(data).cast("B")
    n = len(mv)
    full = n - n % _BLOCK
    ov = memoryview(out).cast("B")
    if len(ov) < full + 2 * _BLOCK - 1:
        raise UsageError(f"output buffer of {len(ov)} bytes is too small for {n} input bytes "
                         f"(needs {full + 2 * _BLOCK - 1})")
    return _encrypt_into(mv, ov, key, iv)


class Aes128StreamEncryptor:
    """Incremental AES-128-CBC + PKCS#7 for segments of any size in constant memory.

    Feed chunks of any size to :meth:`update` (it may return ``b""`` while less than a block is
    buffered) and call :meth:`finalize` once; the concatenated outputs equal
    :func:`encrypt_aes128` of the concatenated input. One instance encrypts one segment."""

    __slots__ = ("_enc", "_finished", "_total")

    def __init__(self, key: bytes, iv: bytes) -> None:
        _check_key_iv(key, iv)
        self._enc = aes_cbc_encryptor(key, iv)
        self._total = 0
        self._finished = False

    def __repr__(self) -> str:
        return f"Aes128StreamEncryptor(bytes_in={self._total}, finished={self._finished})"

    def update(self, chunk: bytes | memoryview) -> bytes:
        """Encrypt the next chunk; returns the whole blocks that are ready (maybe ``b""``)."""
        if self._finished:
            raise UsageError("Aes128StreamEncryptor.update() after finalize()")
        mv = memoryview(chunk).cast("B")
        self._total += len(mv)
        return self._enc.update(mv)  # the CBC context buffers a partial block itself

    def finalize(self) -> bytes:
        """Pad, encrypt the last block(s) and end the segment."""
        if self._finished:
            raise UsageError("Aes128StreamEncryptor.finalize() called twice")
        self._finished = True
        return self._enc.update(_padding(self._total)) + self._enc.finalize()


def encrypt_aes128_file(
    src: BinaryIO, dst: BinaryIO, key: bytes, iv: bytes, chunk: int = 1 << 20
) -> int:
    """Encrypt the stream ``src`` into ``dst`` chunk by chunk; returns the bytes written.

    Memory use is two buffers of about ``chunk`` bytes, reused for the whole file."""
    _check_key_iv(key, iv)
    if chunk < _BLOCK:
        raise UsageError("chunk size must be at least 16 bytes")
    enc = aes_cbc_encryptor(key, iv)
    inbuf = bytearray(chunk)
    outbuf = bytearray(chunk + _BLOCK)
    inview = memoryview(inbuf)
    outview = memoryview(outbuf)
    total = 0
    written = 0
    while True:
        got = src.readinto(inview)  # type: ignore[attr-defined]
        if not got:
            break
        total += got
        produced = enc.update_into(inview[:got], outbuf)
        if produced:
            dst.write(outview[:produced])
            written += produced
    last = enc.update(_padding(total)) + enc.finalize()
    dst.write(last)
    return written + len(last)
