"""What is inside a TS segment: one :class:`TrackInfo` per PMT stream, read from the media.

Video size comes from the first SPS (H.264 7.3.2.1.1, HEVC 7.3.2.2), audio channels from the
first ADTS header or AC-3/E-AC-3 syncframe. Only the first PES of each stream is parsed.
"""

from __future__ import annotations

import itertools

from ...errors import CodecError
from ...model import TrackInfo, TrackKind
from ..codecs.ac3 import parse_syncframe
from ..codecs.adts import parse_adts_header
from ..codecs.nal import iter_annexb, unescape_emulation
from .packets import split_packets
from .pes import PesUnit, collect_pes, pes_header_size
from .psi import EsInfo, find_program, iter_descriptors

__all__ = ["probe_ts"]

_H264_HIGH = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class _Bits:
    """Big-endian bit reader over an RBSP (probe only: a few hundred bits per stream)."""

    def __init__(self, data: bytes) -> None:
        self._v = int.from_bytes(data, "big")
        self._n = len(data) * 8
        self._p = 0

    def u(self, n: int) -> int:
        if self._p + n > self._n:
            raise CodecError("parameter set ends early")
        self._p += n
        return (self._v >> (self._n - self._p)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CodecError("invalid Exp-Golomb code in a parameter set")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _h264_size(nal: bytes) -> tuple[int, int]:
    r = _Bits(unescape_emulation(nal[1:], strict_next=False))
    profile = r.u(8)
    r.u(16)
    r.ue()
    chroma = 1
    if profile in _H264_HIGH:
        chroma = r.ue()
        if chroma == 3:
            r.u(1)
        r.ue()
        r.ue()
        r.u(1)
        if r.u(1):
            for i in range(8 if chroma != 3 else 12):
                if r.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    r.ue()
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()
    r.u(1)
    w_mbs = r.ue() + 1
    h_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)
    r.u(1)
    width, height = w_mbs * 16, (2 - frame_mbs_only) * h_units * 16
    if r.u(1):
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        cx = 1 if chroma == 0 else sub_w
        cy = (1 if chroma == 0 else sub_h) * (2 - frame_mbs_only)
        width -= cx * (left + right)
        height -= cy * (top + bottom)
    return width, height


def _hevc_size(nal: bytes) -> tuple[int, int]:
    r = _Bits(unescape_emulation(nal[2:], strict_next=False))
    r.u(4)
    max_sub = r.u(3)
    r.u(1)
    r.u(96)  # general profile/tier/level
    flags = [(r.u(1), r.u(1)) for _ in range(max_sub)]
    if max_sub:
        r.u(2 * (8 - max_sub))
    for prof, lev in flags:
        if prof:
            r.u(88)
        if lev:
            r.u(8)
    r.ue()
    chroma = r.ue()
    if chroma == 3:
        r.u(1)
    width, height = r.ue(), r.ue()
    if r.u(1):
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    return width, height


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


def _pts(pes: bytes) -> int | None:
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
                        width, height = _h264_size(payload[s:e])
                        break
            elif codec == "hvc1" and not width:
                for s, e in iter_annexb(payload):
                    if (payload[s] >> 1) & 0x3F == 33:
                        width, height = _hevc_size(payload[s:e])
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
