"""RFC 6381 ``codecs`` strings (HLS CODECS, DASH @codecs) from a clear sample entry's bytes."""

from __future__ import annotations

from .boxes import iter_boxes, sample_entry_prefix_len

__all__ = ["codec_string", "known_codec_string"]

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


def _mp4a(esds: bytes) -> str | None:
    """``mp4a.40.N`` from an esds payload (after version/flags); None when the ES or decoder
    config descriptor cannot be read (``mp4a.40.2`` when only the AudioSpecificConfig is
    missing)."""
    try:
        tag, p, _ = _descriptor(esds, 4)
        if tag != 3:
            return None
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
            return None
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
        return None


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


def _read(entry: bytes) -> tuple[str | None, str]:
    """(the codecs string when the codec is one we describe and its configuration is readable,
    else None; what :func:`codec_string` says instead)."""
    fourcc = entry[4:8]
    name = fourcc.decode("latin-1")
    if fourcc in (b"ac-3", b"ec-3"):
        return name, name
    if fourcc not in _PARSED:
        return None, name  # (codecs we do not describe further)
    payload = entry[8:]
    n = sample_entry_prefix_len(fourcc, payload, name) or 0
    kids = {b.type: bytes(entry[8 + b.payload_start:8 + b.end])
            for b in iter_boxes(payload, n, path=name)}
    if fourcc in (b"avc1", b"avc3") and len(kids.get(b"avcC", b"")) >= 4:
        c = kids[b"avcC"]
        return f"{name}.{c[1]:02x}{c[2]:02x}{c[3]:02x}", name
    if fourcc in (b"hvc1", b"hev1") and len(kids.get(b"hvcC", b"")) >= 13:
        return _hvcc(kids[b"hvcC"], name), name
    if fourcc == b"mp4a" and b"esds" in kids:
        return _mp4a(kids[b"esds"]), "mp4a.40.2"
    if fourcc == b"vp09" and len(kids.get(b"vpcC", b"")) >= 7:
        v = kids[b"vpcC"]
        return f"vp09.{v[4]:02d}.{v[5]:02d}.{v[6] >> 4:02d}", name
    if fourcc == b"Opus":
        return "opus", name
    return None, name


def codec_string(entry: bytes) -> str:
    """The codecs string of a whole sample entry box (``avc1.64001f``, ``hvc1.1.6.L93.B0``,
    ``mp4a.40.2``, ``ac-3``, ``ec-3``, ``vp09.00.10.08``, ``opus``); the bare fourcc for a
    codec we do not describe (``mp4a.40.2`` for an unreadable esds)."""
    known, fallback = _read(entry)
    return known if known is not None else fallback


def known_codec_string(entry: bytes) -> str | None:
    """As :func:`codec_string`, but None where that would fall back to a guess or the bare
    fourcc (manifests then leave the codecs attribute out)."""
    return _read(entry)[0]
