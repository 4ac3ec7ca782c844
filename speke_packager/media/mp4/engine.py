"""Fast sample encryption: one cipher context per key and segment, whole trafs at a time.

:mod:`.sample_crypto` builds a fresh cipher context for every sample (or cbcs subsample), which
costs more than encrypting a typical audio frame. The engines here keep one context, never
copy the segment, and do their per-byte and per-block work in numpy or OpenSSL. No cipher call
ever gets overlapping input and output buffers (cryptography >= 51 refuses them; no release
documents them): clear bytes are read from ``src`` and the ciphertext is written once into a
separate buffer.

* :class:`CencEngine` (AES-CTR): ``reset_nonce`` to the sample's counter block, then one
  ``update_into`` per protected range from ``src`` straight into ``out`` (a buffer of the same
  layout as ``src``, e.g. a reused per-thread one), the few clear subsample bytes copied beside
  them, so ``out[start:start+size]`` is the whole encrypted sample: the caller appends it as a
  patch (one per traf when the samples lie end to end). Whole-sample audio builds every counter
  block of a traf with numpy and XORs one ECB keystream into ``out``. Without ``out``, patches
  are fresh bytes. Same bytes as :func:`.sample_crypto.cenc_sample`.
* :class:`CbcsEngine` (AES-CBC, pattern). Every protected range is its own CBC message from
  the constant IV. The hot path takes a whole traf (:meth:`CbcsEngine.ranges` for video,
  :meth:`CbcsEngine.whole_samples` for audio):

  - a range is ``units`` crypt groups (``crypt*16`` bytes every ``(crypt+skip)*16``; whole
    blocks when the pattern is ``0:0``), and its message is those groups back to back. The
    offsets of every group of every range of the traf are built with numpy and the groups
    gathered with ONE fancy index of a byte-strided ``V<crypt*16>`` window over the buffer
    (no numpy view per range), and scattered back with one more at the end.
  - serial path: one CBC context runs through the ranges, one ``update_into`` per range from
    the gather buffer into a second (cipher) buffer, which is what gets scattered. The
    context chains from the previous range's last ciphertext block ``C``; XOR-ing
    ``C ^ IV`` into the range's first plaintext block first makes the cipher see ``P0 ^ IV``
    (CBC is ``E(P0 ^ chaining value)``), i.e. exactly a fresh chain: two ``int.from_bytes``
    and a ``to_bytes`` per range, nothing per block.
  - lane-parallel path (many short messages of similar length: AAC frames, 20-40 blocks
    each): range ``j`` is lane ``j`` and its ``k``-th block sits in column ``k``; the blocks
    are gathered column by column (lanes longest first, so a column's live lanes are a
    prefix) and ``C[:, k] = AES-ECB(P[:, k] ^ C[:, k-1])`` (``C[:, -1]`` = IV) is one numpy
    XOR and ONE ECB ``update_into`` per column for all lanes (from the gathered plaintext
    column into the ciphertext buffer): ~max_blocks cipher calls per traf instead
    of one per sample, and the blocks of a column pipeline in AES-NI. A cost model
    (``_COLUMN_COST`` per column against ``_RANGE_COST`` per range) picks it per traf.
  - patches: one patch for the whole traf when its samples lie end to end, else one per
    range (slices of one copy). Ranges out of order or overlapping fall back to
    :meth:`CbcsEngine.sample`, one range at a time (the same chain fix-up, a strided numpy
    view per range).

  Same bytes as :func:`.sample_crypto.cbcs_sample` on each sample in turn; the engine's chain
  stays valid across calls (a lane-parallel batch does not touch the CBC context). With
  ``in_place=True`` the ciphertext is scattered into ``src`` itself (a writable buffer the
  caller owns and writes out: the cipher still never reads and writes the same memory),
  otherwise into a copy that becomes a patch.

Engines hold mutable state: make one per segment (or per thread), never share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..._io import ThreadScratch
from ...crypto import (
    aes_cbc_encryptor,
    aes_ctr_encryptor,
    aes_ecb_encrypt_block,
    aes_ecb_encryptor,
)

if TYPE_CHECKING:
    from ...crypto import CipherContext

__all__ = ["CbcsEngine", "CencEngine", "Patches"]

_MASK64 = (1 << 64) - 1

Patches = list[tuple[int, bytes | bytearray | memoryview]]
"""``(offset in the input, replacement bytes of the same length)``, in any order."""


# cost model (ns, fitted to measurements): the lane-parallel path costs a fixed part, a column
# (an ECB call and an XOR) and a little per block more than the serial one, which costs a range
# (its CBC call and fix-up)
_LANES_MIN = 8
_LANES_FIXED = 20_000
_COLUMN_COST = 5_000
_LANE_BLOCK = 10
_RANGE_COST = 1_300
_LANE_TABLE = 4096  # lanes x columns may exceed 4x the blocks by this much (uneven lengths)

_CIPHER = ThreadScratch()  # cbcs: the ciphertext of a traf's gathered ranges, then scattered


def _span(pos: np.ndarray, size: np.ndarray) -> tuple[int, int] | None:
    """``(start, end)`` when the samples lie end to end, else None."""
    if len(pos) > 1 and bool(np.any(pos[1:] != pos[:-1] + size[:-1])):
        return None
    return int(pos[0]), int(pos[-1] + size[-1])


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
    """AES-CTR with one context: ``sample`` resets the counter and encrypts each range.

    ``out``: a writable buffer laid out like every ``src`` given to this engine (at least
    ``len(src) + 15`` bytes: the cipher library's output slack): the encrypted samples are
    written there and the patches are views of it. Without it, patches are fresh bytes."""

    __slots__ = ("_ctx", "_key", "_out")

    def __init__(self, key: bytes, *, out: memoryview | None = None) -> None:
        self._ctx = aes_ctr_encryptor(key, bytes(16))
        self._key = key
        self._out = out

    @property
    def output(self) -> memoryview:
        """The ``out`` buffer (a :class:`ValueError` without one)."""
        if self._out is None:
            raise ValueError("this CencEngine writes patches, not into an out buffer")
        return self._out

    def whole_samples(self, src: memoryview, starts: Sequence[int], sizes: Sequence[int],
                      high: int, low: int, *, patches: Patches) -> None:
        """Whole-sample CTR (audio) for many samples: sample ``i`` gets the counter block
        ``((high + i) mod 2**64) || low``; same bytes as :meth:`sample` on each.

        When the samples lie end to end, every counter block of every sample is built with
        numpy, the keystream comes from one AES-ECB call, each sample's share (its first
        ``size`` bytes) is selected with one mask and XOR-ed with the data in one operation:
        a single patch instead of a cipher call and a patch per frame."""
        n = len(starts)
        if n == 0:
            return
        start_a = np.array(starts, np.int64)
        size_a = np.array(sizes, np.int64)
        longest = (int(size_a.max()) + 15) // 16
        if (n < 4 or bool(np.any(start_a[1:] != start_a[:-1] + size_a[:-1]))
                or low + longest >= 1 << 64):  # a low-half carry: leave it to OpenSSL
            for i, (start, size) in enumerate(zip(starts, sizes, strict=True)):
                counter = ((high + i) & _MASK64).to_bytes(8, "big") + low.to_bytes(8, "big")
                self.sample(src, start, size, counter, subsamples=None, patches=patches)
            return
        blocks = (size_a + 15) // 16
        total = int(blocks.sum())
        first = np.cumsum(blocks) - blocks  # (small arrays only: a page fault costs more
        ctr = np.empty((total, 2), ">u8")  # than the AES of the page)
        ctr[:, 0] = np.repeat(np.arange(n, dtype=np.uint64) + np.uint64(high), blocks)
        ctr[:, 1] = (np.arange(total, dtype=np.int64) - np.repeat(first, blocks)).astype(
            np.uint64) + np.uint64(low)
        stream = np.frombuffer(aes_ecb_encrypt_block(self._key, ctr.tobytes()), np.uint8)
        length = int(size_a.sum())
        if length != total * 16:  # drop the tail of each sample's last keystream block
            runs = np.empty(2 * n, np.int64)  # (size, padding) per sample -> keep / drop
            runs[0::2] = size_a
            runs[1::2] = blocks * 16 - size_a
            keep = np.repeat(np.tile(np.array([True, False]), n), runs)
            stream = stream[keep]
        start = starts[0]
        data = np.frombuffer(src, np.uint8, count=length, offset=start)
        out = self._out
        if out is not None:
            np.bitwise_xor(data, stream, out=np.frombuffer(out, np.uint8, count=length,
                                                           offset=start))
            patches.append((start, out[start:start + length]))
        else:
            patches.append((start, np.bitwise_xor(data, stream).data))

    def sample(self, src: memoryview, start: int, size: int, counter: bytes, *,
               subsamples: Sequence[tuple[int, int]] | None, patches: Patches | None) -> None:
        """Encrypt the protected bytes of ``src[start:start+size]`` (``counter``: the 16-byte
        counter block of the sample). With ``out``, the whole sample (clear subsample bytes
        copied) lands in ``out[start:start+size]`` and is appended to ``patches`` as one view
        (``patches=None``: the caller appends a larger span itself); without, each protected
        range becomes a patch of fresh bytes."""
        ctx = self._ctx
        ctx.reset_nonce(counter)
        out = self._out
        if out is not None:
            if subsamples is None:
                if size:
                    ctx.update_into(src[start:start + size], out[start:])
            else:
                update = ctx.update_into
                pos = start
                for clear, prot in subsamples:
                    if clear:
                        out[pos:pos + clear] = src[pos:pos + clear]
                        pos += clear
                    if prot:
                        update(src[pos:pos + prot], out[pos:])
                        pos += prot
                end = start + size
                if pos < end:  # (a mapper covers the whole sample; never trust it to)
                    out[pos:end] = src[pos:end]
            if patches is not None and size:
                patches.append((start, out[start:start + size]))
            return
        if patches is None:
            raise ValueError("CencEngine.sample without an out buffer needs patches")
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
        "_bpu",
        "_crypt",
        "_ctx",
        "_ecb",
        "_gmv",
        "_gv",
        "_in_place",
        "_iv",
        "_iv64",
        "_key",
        "_last",
        "_rows_s",
        "_rows_v",
        "_skip",
        "_src",
        "_unit",
        "_ustride",
    )

    def __init__(self, key: bytes, iv: bytes, crypt: int, skip: int, *,
                 in_place: bool = False) -> None:
        self._in_place = in_place
        iv16 = iv if len(iv) == 16 else iv + bytes(16 - len(iv))
        self._ctx = aes_cbc_encryptor(key, iv16)
        self._key = key
        self._iv = int.from_bytes(iv16, "big")
        self._iv64 = np.frombuffer(iv16, np.uint64)  # native order, like the block views
        self._ecb: CipherContext | None = None  # made on the first lane-parallel call
        self._last = self._iv  # chaining value the context holds now
        self._crypt = crypt
        self._skip = skip
        whole = skip == 0 or crypt == 0
        # a range is a run of `units` of `_unit` bytes, one every `_ustride` bytes; its CBC
        # message is those units back to back (`_bpu` blocks each)
        self._unit = 16 if whole else crypt * 16
        self._ustride = 16 if whole else (crypt + skip) * 16
        self._bpu = 1 if whole else crypt
        self._gmv = memoryview(bytearray())
        self._gv = np.empty(0, f"V{crypt * 16}")  # the rows of _gmv
        self._rows_s = np.dtype(f"S{crypt * 16}")  # gather: rows to one bytes string
        self._rows_v = np.dtype(f"V{crypt * 16}")  # scatter: raw rows
        self._src: object = None
        self._arr = np.empty(0, np.uint8)

    # -- many ranges at once ----------------------------------------------------------------------
    def whole_samples(self, src: memoryview, starts: Sequence[int], sizes: Sequence[int], *,
                      patches: Patches, contiguous: bool | None = None) -> None:
        """Whole-sample cbcs (audio: no subsamples) of many samples; same bytes as
        :meth:`sample` on each in turn. Each sample is its own CBC message from the constant
        IV, so when the samples are many and of similar size they run as lanes of one
        lane-parallel CBC (see the module docstring). ``contiguous``: whether the samples lie
        end to end (one patch for all), if the caller knows (None: checked here)."""
        span: tuple[int, int] | None = None
        if contiguous and starts:
            span = starts[0], starts[-1] + sizes[-1]
        self._batch(src, starts, sizes, span, patches, samples=contiguous is None)

    def ranges(self, src: memoryview, positions: Sequence[int], lengths: Sequence[int], *,
               span: tuple[int, int] | None, patches: Patches) -> None:
        """Every protected range of a traf (in sample order): same bytes as :meth:`sample` on
        each sample. ``span``: the traf's samples lie end to end in ``[span)``, so one patch
        may cover them all (None: one patch per range)."""
        self._batch(src, positions, lengths, span, patches, samples=False)

    def _batch(self, src: memoryview, positions: Sequence[int], lengths: Sequence[int],
               span: tuple[int, int] | None, patches: Patches, *, samples: bool = True) -> None:
        if not positions:
            return
        pos = np.array(positions, np.int64)
        length = np.array(lengths, np.int64)
        if samples:
            span = _span(pos, length)
        unit, ustride = self._unit, self._ustride
        if unit == ustride:
            units = length >> 4
        else:
            units = np.where(length >= unit, (length - unit) // ustride + 1, 0)
        keep = units > 0
        if not keep.all():
            pos = pos[keep]
            units = units[keep]
        n = len(pos)
        if n == 0:
            return
        ext = (units - 1) * ustride + unit  # bytes from a range's start to its last unit's end
        if n > 1 and bool(np.any(pos[1:] < pos[:-1] + ext[:-1])):
            # out of order or overlapping: one range after the other, as before
            for p, m in zip(positions, lengths, strict=True):
                self._range(src, p, m, patches)
            return
        lo = int(pos[0])
        hi = int(pos[-1] + ext[-1])
        if self._in_place:
            arr = self._array(src)
            rel = pos
        else:
            if span is not None:
                lo, hi = span
            copy = bytearray(src[lo:hi])
            arr = np.frombuffer(copy, np.uint8)
            rel = pos - lo
        blocks = units * self._bpu
        most = int(blocks.max())
        total = int(blocks.sum())
        if (n >= _LANES_MIN and most * n <= 4 * total + _LANE_TABLE  # (a small lane table)
                and _LANES_FIXED + most * _COLUMN_COST + total * _LANE_BLOCK < n * _RANGE_COST):
            self._lanes(arr, rel, blocks, most)
        else:
            self._serial(arr, rel, units)
        if self._in_place:
            return
        if span is not None:
            patches.append((lo, copy))
            return
        view = memoryview(copy)
        for p, e in zip(rel.tolist(), ext.tolist(), strict=True):
            patches.append((p + lo, view[p:p + e]))

    def _serial(self, arr: np.ndarray, rel: np.ndarray, units: np.ndarray) -> None:
        """One gather of every range's units, one CBC call per range (its first block fixed
        up as in :meth:`_chain`), one scatter."""
        unit, ustride = self._unit, self._ustride
        first = np.cumsum(units) - units
        count = int(first[-1] + units[-1])
        offsets = np.repeat(rel - first * ustride, units) + np.arange(count) * ustride
        window = np.ndarray((len(arr) - unit + 1,), f"V{unit}", buffer=arr, strides=(1,))
        gathered = window[offsets]
        g = gathered.view(np.uint8).data
        ends = ((first + units) * unit).tolist()
        stop = ends[-1]
        cipher = self._cipher_rows(stop)
        c = memoryview(cipher)
        ctx = self._ctx
        update = ctx.update_into
        from_bytes = int.from_bytes
        iv = self._iv
        last = self._last
        a = 0
        for b in ends:
            fix = last ^ iv
            if fix:
                g[a:a + 16] = (from_bytes(g[a:a + 16], "big") ^ fix).to_bytes(16, "big")
            update(g[a:b], c[a:])
            last = from_bytes(c[b - 16:b], "big")
            a = b
        self._last = last
        window[offsets] = np.frombuffer(cipher, f"V{unit}", count=count)

    def _lanes(self, arr: np.ndarray, rel: np.ndarray, blocks: np.ndarray, most: int) -> None:
        """Lane-parallel CBC: range ``j`` is lane ``j``, its ``k``-th block sits in column
        ``k``; ``C[:, k] = AES-ECB(P[:, k] ^ C[:, k-1])`` (``C[:, -1]`` = IV) with one ECB call
        per column over the lanes that still have a block. The CBC context is not used."""
        order = np.argsort(-blocks, kind="stable")
        length = blocks[order]  # longest first: a column's live lanes are a prefix
        k = np.arange(most)
        bpu = self._bpu
        ustride = self._ustride
        step = k * ustride if bpu == 1 else (k // bpu) * ustride + (k % bpu) * 16
        live = k[:, None] < length[None, :]
        offsets = (rel[order][None, :] + step[:, None])[live]  # column by column
        counts = live.sum(axis=1).tolist()
        window = np.ndarray((len(arr) - 15,), "V16", buffer=arr, strides=(1,))
        cols = window[offsets]
        g64 = cols.view(np.uint64).reshape(-1, 2)
        g = cols.view(np.uint8).data
        total = len(offsets)
        cipher = self._cipher_rows(16 * total)
        c = memoryview(cipher)
        c64 = np.frombuffer(cipher, np.uint64, count=2 * total).reshape(-1, 2)
        ecb = self._ecb
        if ecb is None:
            ecb = self._ecb = aes_ecb_encryptor(self._key)
        update = ecb.update_into
        s = prev = 0
        for n in counts:
            if s:
                g64[s:s + n] ^= c64[prev:prev + n]
            else:
                g64[:n] ^= self._iv64
            update(g[16 * s:16 * (s + n)], c[16 * s:])
            prev = s
            s += n
        window[offsets] = np.frombuffer(cipher, "V16", count=total)

    # -- one range at a time ----------------------------------------------------------------------
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
            cipher = self._cipher_rows(n)
            ctx.update_into(src[pos:stop], cipher)
            src[pos:stop] = memoryview(cipher)[:n]
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

    @staticmethod
    def _cipher_rows(n: int) -> bytearray:
        """This thread's cipher output buffer for ``n`` bytes (+ the cipher library's slack)."""
        return _CIPHER.get(n + 16)

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
            self._gv = np.frombuffer(self._gmv, self._rows_v, count=len(self._gmv) // group)
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
                       strides=(stride,))[:] = self._gv[:groups]
            return
        span = (groups - 1) * stride + group
        copy = bytearray(src[pos:pos + span])
        np.ndarray((groups,), self._rows_v, buffer=copy, strides=(stride,))[:] = self._gv[:groups]
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
