"""Fast in-place sample encryption: one cipher context per key and segment, reused per sample.

:mod:`.sample_crypto` builds a fresh cipher context for every sample (or cbcs subsample), which
costs more than encrypting a typical audio frame. The engines here keep one context:

* :class:`CencEngine` (AES-CTR): ``reset_nonce`` to the sample's counter block, then
  ``update_into`` on each protected range in place. Same bytes as
  :func:`.sample_crypto.cenc_sample`.
* :class:`CbcsEngine` (AES-CBC, pattern): one CBC context runs through every protected range of a
  segment. Each range must start its chain from the constant IV, but the context chains from the
  previous range's last ciphertext block ``C``; XOR-ing ``C ^ IV`` into the range's first
  plaintext block before the call makes the cipher see ``P0 ^ IV`` (CBC is
  ``E(P0 ^ chaining value)``), i.e. exactly a fresh chain. Pattern ranges are gathered with a
  strided numpy view (``(groups, crypt*16)`` rows, ``(crypt+skip)*16`` apart) into one reused
  buffer, encrypted with one call and scattered back. Same bytes as
  :func:`.sample_crypto.cbcs_sample`.

Engines hold mutable state: make one per segment (or per thread), never share one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...crypto import aes_cbc_encryptor, aes_ctr_encryptor

__all__ = ["CbcsEngine", "CencEngine"]

_SLACK = 15  # update_into wants len(data) + block_size - 1 bytes of output room


class CencEngine:
    """AES-CTR with one context: ``sample`` resets the counter and encrypts in place."""

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        self._ctx = aes_ctr_encryptor(key, bytes(16))

    def sample(self, mv: memoryview, start: int, size: int, counter: bytes,
               subsamples: Sequence[tuple[int, int]] | None) -> None:
        """Encrypt the protected bytes of ``mv[start:start+size]`` (``counter``: 16 bytes)."""
        ctx = self._ctx
        ctx.reset_nonce(counter)
        end = len(mv)
        if subsamples is None:
            if start + size + _SLACK <= end:
                ctx.update_into(mv[start:start + size], mv[start:start + size + _SLACK])
            else:
                mv[start:start + size] = ctx.update(mv[start:start + size])
            return
        pos = start
        for clear, prot in subsamples:
            pos += clear
            if prot:
                stop = pos + prot
                if stop + _SLACK <= end:
                    ctx.update_into(mv[pos:stop], mv[pos:stop + _SLACK])
                else:
                    mv[pos:stop] = ctx.update(mv[pos:stop])
                pos = stop


class CbcsEngine:
    """AES-CBC pattern encryption with one context chained through every protected range."""

    __slots__ = ("_arr", "_buf", "_crypt", "_ctx", "_gather", "_gmv", "_iv", "_last", "_skip")

    def __init__(self, key: bytes, iv: bytes, crypt: int, skip: int) -> None:
        iv16 = iv if len(iv) == 16 else iv + bytes(16 - len(iv))
        self._ctx = aes_cbc_encryptor(key, iv16)
        self._iv = int.from_bytes(iv16, "big")
        self._last = self._iv  # chaining value the context holds now
        self._crypt = crypt
        self._skip = skip
        self._gather = np.empty(0, np.uint8)
        self._gmv = memoryview(bytearray())
        self._buf: object = None
        self._arr = np.empty(0, np.uint8)

    def _chain(self, mv: memoryview, pos: int, n: int) -> None:
        """CBC-encrypt whole blocks ``mv[pos:pos+n]`` in place as a fresh chain from the IV."""
        fix = self._last ^ self._iv
        if fix:
            head = mv[pos:pos + 16]
            head[:] = (int.from_bytes(head, "big") ^ fix).to_bytes(16, "big")
        stop = pos + n
        if stop + _SLACK <= len(mv):
            self._ctx.update_into(mv[pos:stop], mv[pos:stop + _SLACK])
        else:
            mv[pos:stop] = self._ctx.update(mv[pos:stop])
        self._last = int.from_bytes(mv[stop - 16:stop], "big")

    def _array(self, buf: bytearray) -> np.ndarray:
        if self._buf is not buf or len(self._arr) != len(buf):
            self._arr = np.frombuffer(buf, np.uint8)
            self._buf = buf
        return self._arr

    def _range(self, buf: bytearray, mv: memoryview, pos: int, length: int) -> None:
        crypt, skip = self._crypt, self._skip
        if skip == 0 or crypt == 0:
            n = length & ~15
            if n:
                self._chain(mv, pos, n)
            return
        group = crypt * 16
        if length < group:
            return
        stride = (crypt + skip) * 16
        groups = (length - group) // stride + 1
        if groups == 1:
            self._chain(mv, pos, group)
            return
        n = groups * group
        if len(self._gather) < n + 16:
            size = max(n + 16, 2 * len(self._gather), 1 << 16)
            store = bytearray(size)
            self._gather = np.frombuffer(store, np.uint8)
            self._gmv = memoryview(store)
        arr = self._array(buf)
        view = np.ndarray((groups, group), np.uint8, buffer=arr, offset=pos,
                          strides=(stride, 1))
        rows = self._gather[:n].reshape(groups, group)
        np.copyto(rows, view)
        self._chain(self._gmv, 0, n)
        np.copyto(view, rows)

    def sample(self, buf: bytearray, mv: memoryview, start: int, size: int,
               subsamples: Sequence[tuple[int, int]] | None) -> None:
        """Encrypt ``buf[start:start+size]`` in place (``mv`` is ``memoryview(buf)``); a tail
        shorter than a crypt group stays clear."""
        if subsamples is None:
            self._range(buf, mv, start, size)
            return
        pos = start
        for clear, prot in subsamples:
            pos += clear
            if prot:
                self._range(buf, mv, pos, prot)
                pos += prot
