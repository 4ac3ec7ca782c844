"""NAL unit helpers shared by H.264 and HEVC: Annex B splitting, emulation prevention.

All functions run at C speed (``bytes.find``/``re``), never per byte in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

ESCAPE_RE = re.compile(b"\x00\x00(?=[\x00-\x03])")
"""Where emulation prevention inserts ``03``: after each ``00 00`` followed by ``00``-``03``."""
_UNESCAPE_RE = re.compile(b"\x00\x00\x03(?=[\x00-\x03])")
_UNESCAPE_ALL_RE = re.compile(b"\x00\x00\x03")


def escape_emulation(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes: ``00 00 0x`` (x <= 3) -> ``00 00 03 0x``."""
    return ESCAPE_RE.sub(b"\x00\x00\x03", rbsp)


def unescape_emulation(nal: bytes, *, strict_next: bool = True) -> bytes:
    """Remove one layer of emulation-prevention bytes.

    With ``strict_next`` only ``00 00 03`` followed by a byte <= 3 is unescaped (the inverse of
    :func:`escape_emulation`); otherwise every ``00 00 03`` loses its ``03`` (decoder view, H.264
    7.4.1)."""
    if strict_next:
        return _UNESCAPE_RE.sub(b"\x00\x00", nal)
    return _UNESCAPE_ALL_RE.sub(b"\x00\x00", nal)


def iter_annexb(data: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of each NAL unit in an Annex B byte stream.

    ``start`` is the first byte after the start code (the NAL header); ``end`` excludes the next
    start code and the zero byte of a 4-byte start code (trailing zero bytes before a start code
    belong to the start code, as FFmpeg and Shaka Packager measure)."""
    buf = bytes(data)
    n = len(buf)
    pos = buf.find(b"\x00\x00\x01")
    while pos != -1:
        start = pos + 3
        nxt = buf.find(b"\x00\x00\x01", start)
        if nxt == -1:
            end = n
            # trailing_zero_8bits at the very end belong to no NAL
            while end > start and buf[end - 1] == 0:
                end -= 1
        else:
            end = nxt
            while end > start and buf[end - 1] == 0:
                end -= 1
        if end > start:
            yield start, end
        pos = nxt


def iter_length_prefixed(
    sample: bytes | memoryview, length_size: int
) -> Iterator[tuple[int, int]]:
    """Yield ``(offset_of_length_field, nal_size)`` for each NAL of a length-prefixed sample.

    Raises :class:`~speke_packager.errors.CodecError` when a length runs past the sample."""
    from ...errors import CodecError

    if length_size not in (1, 2, 4):
        raise CodecError(f"unsupported NAL length size {length_size}")
    mv = memoryview(sample)
    n = len(mv)
    pos = 0
    while pos < n:
        if pos + length_size > n:
            raise CodecError(f"truncated NAL length field at offset {pos}")
        size = int.from_bytes(mv[pos : pos + length_size], "big")
        if pos + length_size + size > n:
            raise CodecError(
                f"NAL of {size} bytes at offset {pos} runs past the end of the sample ({n} bytes)"
            )
        yield pos, size
        pos += length_size + size
