"""Fast sample encryption: one cipher context per key and segment, reused for every sample.

:mod:`.sample_crypto` builds a fresh cipher context for every sample (or cbcs subsample), which
costs more than encrypting a typical audio frame. The engines here keep one context and never
copy the segment: they read the clear input and append ``(offset, ciphertext)`` patches of the
protected ranges (see :meth:`.segment.SegmentRewriter.patch`), so the output is assembled with
a single join.

* :class:`CencEngine` (AES-CTR): ``reset_nonce`` to the sample's counter block, then one
  ``update`` per protected range. Same bytes as :func:`.sample_crypto.cenc_sample`.
* :class:`CbcsEngine` (AES-CBC, pattern): one CBC context runs through every protected range of a
  segment. Each range must start its chain from the constant IV, but the context chains from the
  previous range's last ciphertext block ``C``; XOR-ing ``C ^ IV`` into the range's first
  plaintext block before the call makes the cipher see ``P0 ^ IV`` (CBC is
  ``E(P0 ^ chaining value)``), i.e. exactly a fresh chain. Pattern ranges are gathered with a
  strided numpy view (one ``crypt*16``-byte row every ``(crypt+skip)*16`` bytes) into one
  string, encrypted with one call into a reused buffer and scattered into a copy of the range.
  Same bytes as :func:`.sample_crypto.cbcs_sample`.

With ``in_place=True`` an engine instead writes the ciphertext into ``src`` (a writable
memoryview the caller owns) and appends no patches: :func:`.stream.encrypt_stream` uses it on
its own read buffer.

Engines hold mutable state: make one per segment (or per thread), never share one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...crypto import aes_cbc_encryptor, aes_ctr_encryptor

__all__ = ["CbcsEngine", "CencEngine", "Patches"]

Patches = list[tuple[int, bytes | bytearray]]
"""``(offset in the input, replacement bytes of the same length)``, in any order."""


def _protected(start: int, subsamples: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    pos = start
    for clear, prot in subsamples:
        pos += clear
        if prot:
            out.append((pos, prot))
            pos += prot
    return out


class CencEngine:
    """AES-CTR with one context: ``sample`` resets the counter and encrypts each range."""

    __slots__ = ("_ctx", "_in_place")

    def __init__(self, key: bytes, *, in_place: bool = False) -> None:
        self._ctx = aes_ctr_encryptor(key, bytes(16))
        self._in_place = in_place

    def sample(self, src: memoryview, start: int, size: int, counter: bytes, *,
               subsamples: Sequence[tuple[int, int]] | None, patches: Patches) -> None:
        """Patches for the protected bytes of ``src[start:start+size]`` (``counter``: the
        16-byte counter block of the sample); an ``in_place`` engine encrypts ``src`` itself
        instead."""
        ctx = self._ctx
        ctx.reset_nonce(counter)
        if self._in_place:
            ranges = [(start, size)] if subsamples is None else _protected(start, subsamples)
            end = len(src)
            for pos, n in ranges:
                if pos + n + 15 <= end:
                    ctx.update_into(src[pos:pos + n], src[pos:pos + n + 15])
                else:
                    src[pos:pos + n] = ctx.update(src[pos:pos + n])
            return
        if subsamples is None:
            if size:
                patches.append((start, ctx.update(src[start:start + size])))
            return
        pos = start
        for clear, prot in subsamples:
            pos += clear
            if prot:
                patches.append((pos, ctx.update(src[pos:pos + prot])))
                pos += prot


class CbcsEngine:
    """AES-CBC pattern encryption with one context chained through every protected range."""

    __slots__ = (
        "_arr",
        "_crypt",
        "_ctx",
        "_gmv",
        "_in_place",
        "_iv",
        "_last",
        "_rows_s",
        "_rows_v",
        "_skip",
        "_src",
    )

    def __init__(self, key: bytes, iv: bytes, crypt: int, skip: int, *,
                 in_place: bool = False) -> None:
        self._in_place = in_place
        iv16 = iv if len(iv) == 16 else iv + bytes(16 - len(iv))
        self._ctx = aes_cbc_encryptor(key, iv16)
        self._iv = int.from_bytes(iv16, "big")
        self._last = self._iv  # chaining value the context holds now
        self._crypt = crypt
        self._skip = skip
        self._gmv = memoryview(bytearray())
        self._rows_s = np.dtype(f"S{crypt * 16}")  # gather: rows to one bytes string
        self._rows_v = np.dtype(f"V{crypt * 16}")  # scatter: raw rows
        self._src: object = None
        self._arr = np.empty(0, np.uint8)

    def _chain(self, src: memoryview, pos: int, n: int) -> bytes | None:
        """Ciphertext of the whole blocks ``src[pos:pos+n]`` as a fresh chain from the IV
        (None: written into ``src`` for an ``in_place`` engine)."""
        ctx = self._ctx
        fix = self._last ^ self._iv
        if self._in_place:
            if fix:
                block = src[pos:pos + 16]
                block[:] = (int.from_bytes(block, "big") ^ fix).to_bytes(16, "big")
            stop = pos + n
            if stop + 15 <= len(src):
                ctx.update_into(src[pos:stop], src[pos:stop + 15])
            else:
                src[pos:stop] = ctx.update(src[pos:stop])
            self._last = int.from_bytes(src[stop - 16:stop], "big")
            return None
        if fix:
            head = (int.from_bytes(src[pos:pos + 16], "big") ^ fix).to_bytes(16, "big")
            out = ctx.update(head) + ctx.update(src[pos + 16:pos + n]) if n > 16 else \
                ctx.update(head)
        else:
            out = ctx.update(src[pos:pos + n])
        self._last = int.from_bytes(out[-16:], "big")
        return out

    def _array(self, src: memoryview) -> np.ndarray:
        if self._src is not src:
            self._arr = np.frombuffer(src, np.uint8)
            self._src = src
        return self._arr

    def _range(self, src: memoryview, pos: int, length: int, patches: Patches) -> None:
        crypt, skip = self._crypt, self._skip
        if skip == 0 or crypt == 0:
            n = length & ~15
            if n:
                done = self._chain(src, pos, n)
                if done is not None:
                    patches.append((pos, done))
            return
        group = crypt * 16
        if length < group:
            return
        stride = (crypt + skip) * 16
        groups = (length - group) // stride + 1
        if groups == 1:
            done = self._chain(src, pos, group)
            if done is not None:
                patches.append((pos, done))
            return
        n = groups * group
        if len(self._gmv) < n + 16:
            self._gmv = memoryview(bytearray(max(n + 16, 2 * len(self._gmv), 1 << 16)))
        # one strided gather of the crypt groups (numpy rows of `group`-byte strings)
        gathered = memoryview(np.ndarray((groups,), self._rows_s, buffer=self._array(src),
                                         offset=pos, strides=(stride,)).tobytes())
        g = self._gmv
        fix = self._last ^ self._iv
        ctx = self._ctx
        if fix:
            head = (int.from_bytes(gathered[:16], "big") ^ fix).to_bytes(16, "big")
            ctx.update_into(head, g[:31])
            ctx.update_into(gathered[16:], g[16:n + 15])
        else:
            ctx.update_into(gathered, g[:n + 15])
        self._last = int.from_bytes(g[n - 16:n], "big")
        if self._in_place:
            np.ndarray((groups,), self._rows_v, buffer=self._array(src), offset=pos,
                       strides=(stride,))[:] = np.frombuffer(g, self._rows_v, count=groups)
            return
        span = (groups - 1) * stride + group
        copy = bytearray(src[pos:pos + span])
        np.ndarray((groups,), self._rows_v, buffer=copy, strides=(stride,))[:] = np.frombuffer(
            g, self._rows_v, count=groups)
        patches.append((pos, copy))

    def sample(self, src: memoryview, start: int, size: int, *,
               subsamples: Sequence[tuple[int, int]] | None, patches: Patches) -> None:
        """Patches for ``src[start:start+size]``; a tail shorter than a crypt group stays
        clear."""
        if subsamples is None:
            self._range(src, start, size, patches)
            return
        pos = start
        for clear, prot in subsamples:
            pos += clear
            if prot:
                self._range(src, pos, prot, patches)
                pos += prot
