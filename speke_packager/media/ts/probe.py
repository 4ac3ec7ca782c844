"""What is inside a TS segment: one :class:`TrackInfo` per PMT stream, read from the media.

Video size comes from the first SPS (H.264 7.3.2.1.1, HEVC 7.3.2.2), audio channels from the
first ADTS header or AC-3/E-AC-3 syncframe. Only the first PES of each stream is parsed.
"""

from __future__ import annotations

import itertools

from ...model import TrackInfo, TrackKind
from ..codecs import h264, hevc
from ..codecs.ac3 import parse_syncframe
from ..codecs.adts import parse_adts_header
from ..codecs.nal import iter_annexb
from .packets import split_packets
from .pes import PesUnit, collect_pes, pes_header_size
from .psi import EsInfo, find_program, iter_descriptors

__all__ = ["probe_ts"]

def _kind_codec(es: EsInfo) -> tuple[TrackKind, str]:
    t = es.stream_type
    if t in (0x1B, 0xDB):
        return TrackKind.VIDEO, "avc1"
    if t in (0x24, 0x27):
        return TrackKind.VIDEO, "hvc1"
    if t in (0x0F, 0xCF):
        return TrackKind.AUDIO, "mp4a"
    if t in (0x81, 0xC1):
        return TrackKind.AUDIO, "ac-3"
    if t in (0x87, 0xC2):
        return TrackKind.AUDIO, "ec-3"
    if t in (0x03, 0x04):
        return TrackKind.AUDIO, "mp3"
    if t == 0x06:
        for tag, body in iter_descriptors(es.descriptors):
            if tag == 0x6A or (tag == 0x05 and body[:4] == b"AC-3"):
                return TrackKind.AUDIO, "ac-3"
            if tag == 0x7A or (tag == 0x05 and body[:4] == b"EAC3"):
                return TrackKind.AUDIO, "ec-3"
            if tag == 0x59:
                return TrackKind.TEXT, "dvb-subtitles"
    if t == 0x15:
        return TrackKind.OTHER, "id3"
    return TrackKind.OTHER, f"ts-0x{t:02x}"


def _pts(pes: bytes | memoryview) -> int | None:
    if len(pes) < 14 or not pes[7] & 0x80:
        return None
    b = pes[9:14]
    return (((b[0] >> 1) & 7) << 30) | (b[1] << 22) | ((b[2] >> 1) << 15) | (b[3] << 7) | (
        b[4] >> 1)


def _frame_rate(units: list[PesUnit]) -> float:
    """Frames per second from the PTS of up to 32 video PES (one access unit each): the
    median step between sorted PTS values; 0.0 when it cannot be told."""
    pts = sorted({p for u in units[:32] if (p := _pts(u.data)) is not None})
    steps = sorted(b - a for a, b in itertools.pairwise(pts) if b > a)
    if not steps:
        return 0.0
    return round(90000 / steps[len(steps) // 2], 3)


def probe_ts(data: bytes | memoryview) -> list[TrackInfo]:
    """One :class:`TrackInfo` per PMT stream, in PMT order; ``track_id`` is the PID.

    Codecs: ``avc1`` (H.264), ``hvc1`` (HEVC), ``mp4a`` (AAC), ``ac-3``, ``ec-3``; clear and
    SAMPLE-AES stream types alike. Width/height 0 or channels 0 mean "no SPS / frame seen"."""
    table = split_packets(data)
    program = find_program(table)
    wanted = {es.pid for es in program.pmt.streams}
    first_pes: dict[int, list[int]] = {pid: [] for pid in wanted}
    for i, pid in enumerate(table.pids):
        if pid in first_pes:
            first_pes[pid].append(i)
    tracks = []
    for es in program.pmt.streams:
        kind, codec = _kind_codec(es)
        width = height = channels = 0
        units = collect_pes(table, es.pid, first_pes[es.pid]) if kind is not TrackKind.OTHER \
            else []
        for u in units[:8]:
            payload = u.data[pes_header_size(u.data):]
            if codec == "avc1" and not width:
                for s, e in iter_annexb(payload):
                    if payload[s] & 0x1F == 7:
                        sps = h264.parse_sps(payload[s:e])
                        width, height = sps.width, sps.height
                        break
            elif codec == "hvc1" and not width:
                for s, e in iter_annexb(payload):
                    if (payload[s] >> 1) & 0x3F == 33:
                        hsps = hevc.parse_sps(payload[s:e])
                        width, height = hsps.width, hsps.height
                        break
            elif codec == "mp4a" and payload:
                channels = parse_adts_header(payload).channel_configuration
            elif codec in ("ac-3", "ec-3") and payload:
                channels = parse_syncframe(payload).channels
            if width or channels:
                break
        fps = _frame_rate(units) if kind is TrackKind.VIDEO else 0.0
        tracks.append(TrackInfo(kind=kind, codec=codec, width=width, height=height,
                                channels=channels, fps=fps, track_id=es.pid))
    return tracks
