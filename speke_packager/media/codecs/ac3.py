"""AC-3 (ATSC A/52 §5.4) and E-AC-3 (A/52 Annex E) syncframe headers and frame walking."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import CodecError

__all__ = ["Ac3Frame", "iter_syncframes", "parse_syncframe"]

# A/52 Table 5.18: words per syncframe for frmsizecod // 2, per fscod (48, 44.1, 32 kHz).
_AC3_WORDS_48 = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896,
                 1024, 1152, 1280)
_AC3_WORDS_32 = tuple(w * 3 // 2 for w in _AC3_WORDS_48)
_AC3_WORDS_441 = (69, 87, 104, 121, 139, 174, 208, 243, 278, 348, 417, 487, 557, 696, 835, 975,
                  1114, 1253, 1393)
_ACMOD_CHANNELS = (2, 1, 2, 3, 3, 4, 4, 5)
_FSCOD_RATES = (48000, 44100, 32000)
_EAC3_REDUCED_RATES = (24000, 22050, 16000)


@dataclass(frozen=True, slots=True)
class Ac3Frame:
    """The header facts of one AC-3 or E-AC-3 syncframe."""

    eac3: bool
    frame_size: int  # bytes, sync word included
    sample_rate: int
    acmod: int
    lfeon: bool
    bsid: int
    strmtyp: int = 0  # E-AC-3: 0 independent, 1 dependent, 2 AC-3 convertible
    substreamid: int = 0

    @property
    def channels(self) -> int:
        return _ACMOD_CHANNELS[self.acmod] + int(self.lfeon)


def _lfeon_ac3(b: bytes, acmod: int) -> bool:
    # byte 6 starts with acmod(3); then cmixlev(2) if acmod&1 and acmod != 1, surmixlev(2) if
    # acmod&4, dsurmod(2) if acmod == 2, then lfeon(1) (A/52 Table 5.1).
    bit = 6 * 8 + 3
    if (acmod & 1) and acmod != 1:
        bit += 2
    if acmod & 4:
        bit += 2
    if acmod == 2:
        bit += 2
    byte, off = divmod(bit, 8)
    if byte >= len(b):
        return False
    return bool((b[byte] >> (7 - off)) & 1)


def parse_syncframe(buf: bytes | bytearray | memoryview, offset: int = 0) -> Ac3Frame:
    """Parse the AC-3 or E-AC-3 syncframe header at ``offset`` (told apart by ``bsid``)."""
    if len(buf) - offset < 8:
        raise CodecError(f"truncated AC-3 syncframe header at offset {offset}")
    b = bytes(buf[offset : offset + 8])
    if b[0] != 0x0B or b[1] != 0x77:
        raise CodecError(f"AC-3 sync word 0B 77 missing at offset {offset}")
    bsid = b[5] >> 3
    if bsid <= 10:  # AC-3 (bsid 0..8, 9/10 lower-rate variants)
        fscod = b[4] >> 6
        frmsizecod = b[4] & 0x3F
        if fscod == 3 or frmsizecod >= 38:
            raise CodecError(f"reserved AC-3 fscod/frmsizecod at offset {offset}")
        if fscod == 0:
            words = _AC3_WORDS_48[frmsizecod >> 1]
        elif fscod == 1:
            words = _AC3_WORDS_441[frmsizecod >> 1] + (frmsizecod & 1)
        else:
            words = _AC3_WORDS_32[frmsizecod >> 1]
        acmod = b[6] >> 5
        return Ac3Frame(eac3=False, frame_size=2 * words, sample_rate=_FSCOD_RATES[fscod],
                        acmod=acmod, lfeon=_lfeon_ac3(b, acmod), bsid=bsid)
    if bsid <= 16:  # E-AC-3
        strmtyp = b[2] >> 6
        substreamid = (b[2] >> 3) & 0x07
        frmsiz = ((b[2] & 0x07) << 8) | b[3]
        fscod = b[4] >> 6
        if fscod == 3:
            fscod2 = (b[4] >> 4) & 0x03
            if fscod2 == 3:
                raise CodecError(f"reserved E-AC-3 fscod2 at offset {offset}")
            rate = _EAC3_REDUCED_RATES[fscod2]
        else:
            rate = _FSCOD_RATES[fscod]
        acmod = (b[4] >> 1) & 0x07
        return Ac3Frame(eac3=True, frame_size=2 * (frmsiz + 1), sample_rate=rate, acmod=acmod,
                        lfeon=bool(b[4] & 0x01), bsid=bsid, strmtyp=strmtyp,
                        substreamid=substreamid)
    raise CodecError(f"unknown AC-3 bsid {bsid} at offset {offset}")


def iter_syncframes(
    buf: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, Ac3Frame]]:
    """Yield ``(offset, frame)`` for each syncframe in ``buf[start:end]``, back to back.

    Lost sync or a frame running past ``end`` raises :class:`CodecError`."""
    stop = len(buf) if end is None else end
    pos = start
    while pos < stop:
        fr = parse_syncframe(buf, pos)
        if pos + fr.frame_size > stop:
            raise CodecError(
                f"AC-3 syncframe at offset {pos} needs {fr.frame_size} bytes, "
                f"only {stop - pos} left")
        yield pos, fr
        pos += fr.frame_size
