"""AAC in ADTS framing (ISO/IEC 13818-7 / 14496-3 §1.A.2): headers, frame walking, setup data.

Only headers are parsed; payload bytes are never looked at, so walking a stream costs one small
Python step per frame (about 47 per second of 48 kHz audio), never per byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import CodecError

__all__ = [
    "SAMPLE_RATES",
    "AdtsHeader",
    "iter_adts_frames",
    "parse_adts_header",
]

SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
                8000, 7350)


@dataclass(frozen=True, slots=True)
class AdtsHeader:
    """The fields of one ADTS header that packagers need."""

    protection_absent: bool
    profile: int  # ADTS profile = audio object type - 1 (1 = AAC LC)
    sampling_frequency_index: int
    channel_configuration: int
    frame_length: int  # header included
    raw_blocks: int  # number_of_raw_data_blocks_in_frame + 1

    @property
    def header_size(self) -> int:
        """7 bytes, or 9 when a CRC follows the fixed/variable header."""
        return 7 if self.protection_absent else 9

    @property
    def audio_object_type(self) -> int:
        return self.profile + 1

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATES[self.sampling_frequency_index]

    def audio_specific_config(self) -> bytes:
        """The 2-byte AudioSpecificConfig (aot:5, sf_index:4, channels:4, 3 zero bits)."""
        v = (self.audio_object_type << 11) | (self.sampling_frequency_index << 7) | (
            self.channel_configuration << 3)
        return v.to_bytes(2, "big")


def parse_adts_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> AdtsHeader:
    """Parse the ADTS header at ``offset``; :class:`CodecError` if it is not a valid one."""
    if len(buf) - offset < 7:
        raise CodecError(f"truncated ADTS header at offset {offset}")
    b = bytes(buf[offset : offset + 7])
    if b[0] != 0xFF or (b[1] & 0xF6) != 0xF0:
        raise CodecError(f"ADTS sync word missing at offset {offset}")
    sf_index = (b[2] >> 2) & 0x0F
    if sf_index >= len(SAMPLE_RATES):
        raise CodecError(f"reserved ADTS sampling_frequency_index {sf_index} at offset {offset}")
    frame_length = ((b[3] & 0x03) << 11) | (b[4] << 3) | (b[5] >> 5)
    hdr = AdtsHeader(
        protection_absent=bool(b[1] & 0x01),
        profile=b[2] >> 6,
        sampling_frequency_index=sf_index,
        channel_configuration=((b[2] & 0x01) << 2) | (b[3] >> 6),
        frame_length=frame_length,
        raw_blocks=(b[6] & 0x03) + 1,
    )
    if frame_length < hdr.header_size:
        raise CodecError(f"ADTS frame_length {frame_length} shorter than its header at {offset}")
    return hdr


def iter_adts_frames(
    buf: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, AdtsHeader]]:
    """Yield ``(offset, header)`` for each ADTS frame in ``buf[start:end]``.

    Frames must follow each other without gaps; a lost sync word or a frame that runs past
    ``end`` raises :class:`CodecError` (never a silently skipped frame)."""
    stop = len(buf) if end is None else end
    pos = start
    while pos < stop:
        hdr = parse_adts_header(buf, pos)
        if pos + hdr.frame_length > stop:
            raise CodecError(
                f"ADTS frame at offset {pos} needs {hdr.frame_length} bytes, "
                f"only {stop - pos} left")
        yield pos, hdr
        pos += hdr.frame_length
