"""A bit reader for codec headers (MSB first, Exp-Golomb), over a big integer, not per byte;
emulation-prevention helpers; ``ue(v)`` look-up tables over 16-bit windows for the specialised
slice-header parsers (h264.py, hevc.py)."""

from __future__ import annotations

from ...errors import CodecError

__all__ = [
    "UE16_LEN",
    "UE16_LEN2",
    "UE16_VAL",
    "BitReader",
    "escaped_length",
    "skip_ue",
    "ue_long",
    "unescape_prefix",
]


class BitReader:
    """Read bits from ``data`` (already free of emulation-prevention bytes where relevant).

    Running out of bits raises :class:`CodecError` naming ``what``."""

    __slots__ = ("_nbits", "_val", "pos", "what")

    def __init__(self, data: bytes | bytearray | memoryview, what: str = "header") -> None:
        self._val = int.from_bytes(data, "big")
        self._nbits = len(data) * 8
        self.pos = 0
        self.what = what

    @classmethod
    def at(cls, val: int, nbits: int, pos: int, what: str) -> BitReader:
        """A reader over the ``nbits``-bit integer ``val`` (``val < 2**nbits``) at bit ``pos``.

        The fast slice-header parsers hand their rare branches to the generic reader this way;
        ``pos`` may lie past the end (every read then raises)."""
        r = cls.__new__(cls)
        r._val = val
        r._nbits = nbits
        r.pos = pos
        r.what = what
        return r

    @property
    def bits_left(self) -> int:
        return self._nbits - self.pos

    def _short(self) -> CodecError:
        return CodecError(f"{self.what}: truncated after {self.pos} bits")

    def u(self, n: int) -> int:
        """``n`` bits as an unsigned integer."""
        if n == 0:
            return 0
        end = self.pos + n
        if end > self._nbits:
            raise self._short()
        self.pos = end
        return (self._val >> (self._nbits - end)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.u(1) == 1

    def skip(self, n: int) -> None:
        if self.pos + n > self._nbits:
            raise self._short()
        self.pos += n

    def ue(self) -> int:
        """Unsigned Exp-Golomb (``ue(v)``); looks at the next 64 bits only (a code is at most
        63 bits), so the cost does not grow with the length of the data."""
        pos = self.pos
        left = self._nbits - pos
        if left <= 0:
            raise self._short()
        if left > 64:
            chunk = (self._val >> (left - 64)) & 0xFFFFFFFFFFFFFFFF
            width = 64
        else:
            chunk = self._val & ((1 << left) - 1)
            width = left
        if chunk == 0:
            if width < 64 or self._val & ((1 << left) - 1) == 0:
                raise self._short()
            raise CodecError(f"{self.what}: Exp-Golomb code too long at bit {pos}")
        zeros = width - chunk.bit_length()
        if zeros > 31:
            raise CodecError(f"{self.what}: Exp-Golomb code too long at bit {pos}")
        n = 2 * zeros + 1
        if n > width:
            self.pos = pos + zeros
            raise self._short()
        self.pos = pos + n
        return (chunk >> (width - n)) - 1

    def se(self) -> int:
        """Signed Exp-Golomb (``se(v)``)."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def byte_aligned(self) -> bool:
        return self.pos % 8 == 0


_EPB = b"\x00\x00\x03"


def unescape_prefix(nal: bytes | bytearray | memoryview, limit: int) -> tuple[bytes, list[int]]:
    """RBSP of the first ``limit`` escaped bytes of ``nal`` and the escaped positions of the
    emulation-prevention bytes removed (every ``00 00 03``, as a decoder removes them)."""
    raw = bytes(nal[:limit])
    epbs: list[int] = []
    pos = raw.find(_EPB)
    if pos < 0:
        return raw, epbs
    parts: list[bytes] = []
    last = 0
    while pos >= 0:
        epbs.append(pos + 2)
        parts.append(raw[last:pos + 2])
        last = pos + 3
        pos = raw.find(_EPB, last)
    parts.append(raw[last:])
    return b"".join(parts), epbs


def escaped_length(rbsp_len: int, epbs: list[int]) -> int:
    """Escaped byte count covering the first ``rbsp_len`` RBSP bytes (EPBs inside included)."""
    end = rbsp_len
    for p in epbs:
        if p < end:
            end += 1
        else:
            break
    return end


def _ue_tables() -> tuple[bytes, bytes]:
    # For z leading zeros (z <= 7) the code is 2z+1 bits: indices [2**(15-z), 2**(16-z)) in
    # runs of 2**(15-2z), one run per value 2**z - 1 .. 2**(z+1) - 2. Index 0..255 (eight or
    # more zeros) do not fit: length 0.
    lens = [b"\x00" * 256]
    vals = [b"\x00" * 256]
    for z in range(7, -1, -1):
        run = 1 << (15 - 2 * z)
        lens.append(bytes([2 * z + 1]) * (run << z))
        vals.append(b"".join(bytes([v]) * run for v in range((1 << z) - 1, (2 << z) - 1)))
    return b"".join(lens), b"".join(vals)


UE16_LEN, UE16_VAL = _ue_tables()
"""``ue(v)`` by the next 16 bits ``p``: ``UE16_LEN[p]`` is the code length (0: longer than 16
bits, not decoded here) and ``UE16_VAL[p]`` the value (0..254)."""


def _after_ue(table: bytes, add_length: bool) -> bytes:
    """A table over 16-bit windows ``p``: for a window that starts with a ue(v) code of L <= 15
    bits, ``table``'s entry for the window after that code (L zero bits shifted in). With
    ``add_length`` the entries are code lengths: L + the entry when it still fits in 16 bits,
    else 0. Built from strided slices (C speed): for L fixed, ``(p << L) & 0xFFFF`` steps
    through ``table[::2**L]`` once per value of the code."""
    parts = [bytes(256)]  # eight or more leading zeros: no code fits
    for z in range(7, -1, -1):  # windows [2**(15-z), 2**(16-z)): codes of 2z+1 bits
        n = 2 * z + 1
        chunk = table[::1 << n]
        if add_length:
            chunk = chunk.translate(bytes(n + c if 0 < c <= 16 - n else 0 for c in range(256)))
        parts.append(chunk * (1 << z))
    return b"".join(parts)


UE16_LEN2 = _after_ue(UE16_LEN, True)
"""Length of two consecutive ``ue(v)`` codes at the start of a 16-bit window (0: they do not
both fit): one look-up skips two fields whose values are not needed."""
_SECOND = _after_ue(UE16_VAL, False)
H264_FIRST3_LEN = _after_ue(UE16_LEN2, True)
"""Length of first_mb_in_slice, slice_type and pic_parameter_set_id when the three codes fit in
the 16-bit window (0: they do not)."""
H264_FIRST3_TYPE = _SECOND.translate(bytes(v % 5 for v in range(256)))
"""``slice_type % 5`` of such a window."""
H264_FIRST3_PPS = _after_ue(_SECOND, False)
"""pic_parameter_set_id of such a window."""
H264_DEBLOCK_LEN = H264_FIRST3_LEN[:0x4000] + bytes([3]) * 0x2000 + H264_FIRST3_LEN[0x6000:]
"""Length of disable_deblocking_filter_idc and, unless it is 1 (windows 010...), the two offsets
after it, when they fit in the 16-bit window (0: they do not)."""


def ue_long(val: int, q: int, what: str) -> tuple[int, int]:
    """``(q, value)`` after a ``ue(v)`` code longer than 16 bits (at most 63), for the
    table-driven slice-header parsers: ``val`` holds the header bits with 16 zero bits appended,
    ``q`` counts the real bits left. ``what`` names the header in the error."""
    r = q + 16
    w = val & ((1 << r) - 1)
    z = r - w.bit_length()
    if z > 31:
        raise CodecError(f"{what}: Exp-Golomb code too long")
    r -= z + z + 1
    return r - 16, (w >> r) - 1


def skip_ue(val: int, q: int, count: int, what: str) -> int:
    """``q`` after ``count`` ue(v)/se(v) codes whose values are not needed (see
    :func:`ue_long`)."""
    ue_len = UE16_LEN
    for _ in range(count):
        c = ue_len[(val >> q) & 0xFFFF]
        q = q - c if c else ue_long(val, q, what)[0]
    return q
