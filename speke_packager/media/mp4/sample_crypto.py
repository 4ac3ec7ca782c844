"""Encrypt/decrypt one sample in place for ``cenc`` (AES-CTR) and ``cbcs`` (AES-CBC pattern).

One cipher context per sample (cenc: one CTR stream fed every protected range; cbcs: a fresh CBC
chain per subsample, its crypt blocks gathered into one buffer with 16 strided slice copies,
encrypted with one call and scattered back). No Python loop per byte or per block.

These are the reference ciphers (the decryptor uses them; tests/mp4/test_engine.py pins the
encryptor's faster :mod:`.engine` against them): simple, but a fresh context per sample costs
more than encrypting a typical audio frame.
"""

from __future__ import annotations

from ...crypto import (
    aes_cbc_decryptor,
    aes_cbc_encryptor,
    aes_ctr_encryptor,
)

__all__ = ["cbcs_sample", "cenc_sample", "counter_block"]


def counter_block(iv: bytes) -> bytes:
    """CENC counter block: 8-byte IV -> ``IV || 0^8``; 16-byte IV as is."""
    return iv + bytes(8) if len(iv) == 8 else iv


def cenc_sample(buf: bytearray, start: int, size: int, *, key: bytes, iv: bytes,
                subsamples: list[tuple[int, int]] | None) -> None:
    """AES-CTR over the protected bytes of ``buf[start:start+size]`` (encrypt == decrypt)."""
    mv = memoryview(buf)
    ctx = aes_ctr_encryptor(key, counter_block(iv))
    if subsamples is None:
        mv[start:start + size] = ctx.update(mv[start:start + size])
        return
    pos = start
    for clear, prot in subsamples:
        pos += clear
        if prot:
            mv[pos:pos + prot] = ctx.update(mv[pos:pos + prot])
            pos += prot


def _pattern_range(buf: bytearray, pos: int, length: int, *, key: bytes, iv: bytes,
                   crypt: int, skip: int, decrypt: bool) -> None:
    iv16 = iv if len(iv) == 16 else iv + bytes(16 - len(iv))
    ctx = aes_cbc_decryptor(key, iv16) if decrypt else aes_cbc_encryptor(key, iv16)
    mv = memoryview(buf)
    if skip == 0 or crypt == 0:
        n = length & ~15
        if n:
            mv[pos:pos + n] = ctx.update(mv[pos:pos + n])
        return
    group = crypt * 16
    stride = (crypt + skip) * 16
    if length < group:
        return
    groups = (length - group) // stride + 1
    if groups == 1:
        mv[pos:pos + group] = ctx.update(mv[pos:pos + group])
        return
    last = pos + (groups - 1) * stride
    gathered = bytearray(groups * group)
    for j in range(group):
        gathered[j::group] = buf[pos + j:last + j + 1:stride]
    done = ctx.update(bytes(gathered))
    for j in range(group):
        buf[pos + j:last + j + 1:stride] = done[j::group]


def cbcs_sample(buf: bytearray, start: int, size: int, *, key: bytes, iv: bytes,
                subsamples: list[tuple[int, int]] | None, crypt: int, skip: int,
                decrypt: bool = False) -> None:
    """cbcs over ``buf[start:start+size]``: the CBC chain and the pattern restart from the
    constant IV at each protected range; a tail shorter than a crypt group stays clear."""
    if subsamples is None:
        _pattern_range(buf, start, size, key=key, iv=iv, crypt=crypt, skip=skip,
                       decrypt=decrypt)
        return
    pos = start
    for clear, prot in subsamples:
        pos += clear
        if prot:
            _pattern_range(buf, pos, prot, key=key, iv=iv, crypt=crypt, skip=skip,
                           decrypt=decrypt)
            pos += prot
