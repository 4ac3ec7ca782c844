"""RFC 6381 ``codecs`` strings (HLS CODECS, DASH @codecs) from a clear sample entry's bytes."""

from __future__ import annotations

from .boxes import iter_boxes, sample_entry_prefix_len

__all__ = ["codec_string"]

_PARSED = frozenset({b"avc1", b"avc3", b"hvc1", b"hev1", b"mp4a", b"vp09", b"Opus"})


def _descriptor(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, payload start, payload end) of the MPEG-4 descriptor at ``pos``."""
    tag = buf[pos]
    pos += 1
    size = 0
    for _ in range(4):
        b = buf[pos]
        pos += 1
        size = (size << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    return tag, pos, min(pos + size, len(buf))


def _mp4a(esds: bytes) -> str:
    """``mp4a.40.N`` from an esds payload (after version/flags)."""
    try:
        tag, p, _ = _descriptor(esds, 4)
        if tag != 3:
            return "mp4a.40.2"
        flags = esds[p + 2]
        p += 3
        if flags & 0x80:
            p += 2
        if flags & 0x40:
            p += 1 + esds[p]
        if flags & 0x20:
            p += 2
        tag, p, _ = _descriptor(esds, p)
        if tag != 4:
            return "mp4a.40.2"
        oti = esds[p]
        if oti != 0x40:
            return f"mp4a.{oti:02x}"
        tag, q, _ = _descriptor(esds, p + 13)
        if tag != 5:
            return "mp4a.40.2"
        aot = esds[q] >> 3
        if aot == 31:
            aot = 32 + (((esds[q] & 7) << 3) | (esds[q + 1] >> 5))
        return f"mp4a.40.{aot}"
    except IndexError:
        return "mp4a.40.2"


def _hvcc(c: bytes, fourcc: str) -> str:
    space = "ABC"[(c[1] >> 6) - 1] if c[1] >> 6 else ""
    tier = "H" if c[1] & 0x20 else "L"
    profile = c[1] & 0x1F
    compat = int.from_bytes(c[2:6], "big")
    rev = int(f"{compat:032b}"[::-1], 2)
    cons = bytearray(c[6:12])
    while cons and cons[-1] == 0:
        cons.pop()
    out = f"{fourcc}.{space}{profile}.{rev:X}.{tier}{c[12]}"
    return out + "".join(f".{b:02X}" for b in cons)


def codec_string(entry: bytes) -> str:
    """The codecs string of a whole sample entry box (``avc1.64001f``, ``hvc1.1.6.L93.B0``,
    ``mp4a.40.2``, ``ac-3``, ``ec-3``, ``vp09.00.10.08``, ``opus``)."""
    fourcc = entry[4:8]
    name = fourcc.decode("latin-1")
    if fourcc not in _PARSED:
        return name  # (ac-3, ec-3, and codecs we do not describe further)
    payload = entry[8:]
    n = sample_entry_prefix_len(fourcc, payload, name) or 0
    kids = {b.type: bytes(entry[8 + b.payload_start:8 + b.end])
            for b in iter_boxes(payload, n, path=name)}
    if fourcc in (b"avc1", b"avc3") and len(kids.get(b"avcC", b"")) >= 4:
        c = kids[b"avcC"]
        return f"{name}.{c[1]:02x}{c[2]:02x}{c[3]:02x}"
    if fourcc in (b"hvc1", b"hev1") and len(kids.get(b"hvcC", b"")) >= 13:
        return _hvcc(kids[b"hvcC"], name)
    if fourcc == b"mp4a" and b"esds" in kids:
        return _mp4a(kids[b"esds"])
    if fourcc == b"vp09" and len(kids.get(b"vpcC", b"")) >= 7:
        v = kids[b"vpcC"]
        return f"vp09.{v[4]:02d}.{v[5]:02d}.{v[6] >> 4:02d}"
    if fourcc == b"Opus":
        return "opus"
    return name
