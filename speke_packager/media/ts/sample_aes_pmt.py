"""SAMPLE-AES signalling in the PMT (media-encryption.md §2-§3): which elementary streams are
encrypted, their SAMPLE-AES stream types, the ``private_data_indicator`` descriptors and the
``'apad'`` registration descriptor with the audio setup information; and back for decryption.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UnsupportedMediaError
from ..codecs.ac3 import parse_syncframe
from .psi import EsInfo, Pmt, iter_descriptors

__all__ = [
    "AAC",
    "AC3",
    "EAC3",
    "H264",
    "StreamPlan",
    "audio_setup_descriptor",
    "clear_pmt",
    "encrypted_pmt",
    "stream_plans",
]

H264, AAC, AC3, EAC3 = "h264", "aac", "ac3", "eac3"

_CLEAR_TYPE = {0x1B: H264, 0x0F: AAC, 0x81: AC3, 0x87: EAC3}
_SAES_TYPE = {H264: 0xDB, AAC: 0xCF, AC3: 0xC1, EAC3: 0xC2}
_SAES_TO_CODEC = {v: k for k, v in _SAES_TYPE.items()}
_RESTORED_TYPE = {H264: 0x1B, AAC: 0x0F, AC3: 0x81, EAC3: 0x87}
_PRIVATE_DATA_ID = {H264: b"zavc", AAC: b"aacd", AC3: b"ac3d", EAC3: b"ec3d"}
_AUDIO_TYPE = {AAC: b"zaac", AC3: b"zac3", EAC3: b"zec3"}
_NO_SAES_DEFINITION = {0x24: "HEVC", 0x27: "HEVC", 0x1F: "SVC", 0x20: "MVC"}


def _codec_of(es: EsInfo) -> str | None:
    """The codec SAMPLE-AES can encrypt for a clear PMT entry, or None (pass-through)."""
    if es.stream_type in _CLEAR_TYPE:
        return _CLEAR_TYPE[es.stream_type]
    if es.stream_type == 0x06:  # DVB: private data + AC-3 (0x6A) / E-AC-3 (0x7A) descriptor
        for tag, body in iter_descriptors(es.descriptors):
            if tag == 0x6A or (tag == 0x05 and body[:4] == b"AC-3"):
                return AC3
            if tag == 0x7A or (tag == 0x05 and body[:4] == b"EAC3"):
                return EAC3
    return None


def _dec3(first10: bytes) -> bytes:
    """A one-substream ``dec3`` payload from an E-AC-3 syncframe header (bsmod written 0)."""
    fr = parse_syncframe(first10 + bytes(8))
    b4 = first10[4]
    fscod = b4 >> 6
    blocks = 6 if fscod == 3 else (1, 2, 3, 6)[(b4 >> 4) & 0x03]
    rate_kbps = fr.frame_size * 8 * fr.sample_rate // (blocks * 256) // 1000
    v = (rate_kbps & 0x1FFF) << 3  # num_ind_sub - 1 = 0
    sub = (fscod << 22) | (fr.bsid << 17) | (fr.acmod << 9) | (int(fr.lfeon) << 8)
    return v.to_bytes(2, "big") + sub.to_bytes(3, "big")


def audio_setup_descriptor(codec: str, setup: bytes) -> bytes:
    """The ``'apad'`` registration descriptor: audio_type, priming 0, version 1, setup data."""
    data = setup if codec != EAC3 else _dec3(setup)
    body = b"apad" + _AUDIO_TYPE[codec] + b"\x00\x00" + b"\x01" + bytes((len(data),)) + data
    return bytes((0x05, len(body))) + body


@dataclass(slots=True)
class StreamPlan:
    """One elementary stream SAMPLE-AES encrypts (or decrypts): its PID and codec."""

    pid: int
    codec: str


def stream_plans(pmt: Pmt, *, encrypt: bool, strict: bool) -> list[StreamPlan]:
    """The streams of ``pmt`` to encrypt (clear types) or decrypt (SAMPLE-AES types); refuses
    streams that are already protected or have no SAMPLE-AES definition (and, with ``strict``,
    every stream that would pass through clear)."""
    plans = []
    for es in pmt.streams:
        if encrypt:
            if es.stream_type in _SAES_TO_CODEC:
                raise UnsupportedMediaError(
                    f"PID 0x{es.pid:04x} is already SAMPLE-AES (stream type "
                    f"0x{es.stream_type:02x})")
            if es.stream_type in _NO_SAES_DEFINITION:
                raise UnsupportedMediaError(
                    f"{_NO_SAES_DEFINITION[es.stream_type]} in MPEG-TS has no SAMPLE-AES "
                    f"definition (PID 0x{es.pid:04x}); use fMP4 with cbcs")
            codec = _codec_of(es)
            if codec is None:
                if strict:
                    raise UnsupportedMediaError(
                        f"stream type 0x{es.stream_type:02x} on PID 0x{es.pid:04x} cannot be "
                        "SAMPLE-AES encrypted")
                continue
        else:
            if es.stream_type not in _SAES_TO_CODEC:
                continue
            codec = _SAES_TO_CODEC[es.stream_type]
        plans.append(StreamPlan(es.pid, codec))
    return plans


def encrypted_pmt(pmt: Pmt, setups: dict[int, bytes], plans: list[StreamPlan]) -> Pmt:
    """``pmt`` with SAMPLE-AES stream types and descriptors (``setups``: audio setup data per
    PID) and version_number + 1."""
    by_pid = {p.pid: p.codec for p in plans}
    streams = []
    for es in pmt.streams:
        codec = by_pid.get(es.pid)
        if codec is None:
            streams.append(es)
            continue
        extra = b"\x0f\x04" + _PRIVATE_DATA_ID[codec]
        if codec != H264:
            extra += audio_setup_descriptor(codec, setups[es.pid])
        streams.append(EsInfo(_SAES_TYPE[codec], es.pid, es.descriptors + extra))
    return pmt.with_streams(tuple(streams), version=pmt.version + 1)


def clear_pmt(pmt: Pmt, plans: list[StreamPlan]) -> Pmt:
    """The clear PMT an :func:`encrypted_pmt` was made from."""
    by_pid = {p.pid: p.codec for p in plans}
    streams = []
    ours = set(_PRIVATE_DATA_ID.values())
    for es in pmt.streams:
        codec = by_pid.get(es.pid)
        if codec is None:
            streams.append(es)
            continue
        kept = b"".join(bytes((t, len(b))) + b for t, b in iter_descriptors(es.descriptors)
                        if not (t == 0x0F and b in ours) and not (t == 0x05 and b[:4] == b"apad"))
        streams.append(EsInfo(_RESTORED_TYPE[codec], es.pid, kept))
    return pmt.with_streams(tuple(streams), version=pmt.version - 1)
