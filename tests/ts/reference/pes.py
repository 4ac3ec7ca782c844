"""PES layer: gather the PES packets of one PID, read their headers, put grown PES back.

Re-packetising (media-encryption.md §2): a PES keeps its original TS packets in order, each with
its 4-byte header and adaptation-field fields (PCR, random_access, discontinuity, ...); only
adaptation-field stuffing changes. Bytes that no longer fit go into new packets of the same PID
right after the PES's last packet. Room left over becomes adaptation-field stuffing, never 0xFF in
the payload. PCR, PTS and DTS are never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

from speke_packager.errors import TsFormatError, UnsupportedMediaError
from speke_packager.media.ts.packets import PacketTable, build_packet

__all__ = [
    "PesUnit",
    "collect_pes",
    "min_new_packets",
    "pes_header_size",
    "repacketise",
    "set_pes_length",
]

_MAX_PAYLOAD = 184


@dataclass(slots=True)
class PesUnit:
    """One PES of a PID: its payload-carrying packets, their payload spans and its bytes."""

    pid: int
    packets: list[int]
    spans: list[tuple[int, int]]  # absolute (start, end) of each packet's payload
    data: bytes

    @property
    def first_packet(self) -> int:
        return self.packets[0]


def collect_pes(table: PacketTable, pid: int, indices: list[int]) -> list[PesUnit]:
    """Split the packets ``indices`` of ``pid`` into whole PES (PUSI=1 to the next PUSI=1).

    Payload bytes before the first PES start (a PES begun in an earlier segment) are refused:
    they could be neither parsed nor encrypted."""
    d = table.data
    mv = memoryview(d)
    units: list[PesUnit] = []
    packets: list[int] = []
    spans: list[tuple[int, int]] = []

    def close() -> None:
        if packets:
            units.append(PesUnit(pid, packets, spans, b"".join(mv[s:e] for s, e in spans)))

    for i in indices:
        base = i * 188
        ctl = d[base + 3]
        if d[base + 1] & 0x80:
            raise TsFormatError("transport_error_indicator set (damaged packet)",
                                packet_index=i, pid=pid)
        if not ctl & 0x10:
            continue  # adaptation field only
        if ctl & 0x20:
            start = table.payload_start(i)  # validates the adaptation field length
        else:
            if ctl & 0xC0:
                table.payload_start(i)  # raises: scrambled
            start = base + 4
        if d[base + 1] & 0x40:
            close()
            packets, spans = [i], [(start, base + 188)]
        elif not packets:
            raise TsFormatError("payload continues a PES that started before the segment",
                                packet_index=i, pid=pid)
        else:
            packets.append(i)
            spans.append((start, base + 188))
    close()
    for u in units:
        check_pes(u)
    return units


def pes_header_size(data: bytes | memoryview) -> int:
    """Bytes before the elementary stream data (6 + 3 + PES_header_data_length)."""
    return 9 + data[8]


def check_pes(unit: PesUnit) -> None:
    """Check the start code, the optional header and PES_packet_length against the packets."""
    d = unit.data
    i0 = unit.first_packet
    if len(d) < 9 or d[0] != 0 or d[1] != 0 or d[2] != 1:
        raise TsFormatError("PES start code 00 00 01 missing", packet_index=i0, pid=unit.pid)
    sid = d[3]
    if sid in (0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xFF, 0xF2, 0xF8):
        raise UnsupportedMediaError(f"PES stream_id 0x{sid:02x} without the optional header "
                                    f"(PID 0x{unit.pid:04x})")
    if d[6] & 0xC0 != 0x80:
        raise TsFormatError("PES optional header marker '10' missing", packet_index=i0,
                            pid=unit.pid)
    if d[6] & 0x30:
        raise TsFormatError("PES already scrambled (PES_scrambling_control != 0)",
                            packet_index=i0, pid=unit.pid)
    if pes_header_size(d) > len(d):
        raise TsFormatError("PES header longer than the PES", packet_index=i0, pid=unit.pid)
    declared = (d[4] << 8) | d[5]
    if declared:
        if len(d) > 6 + declared:
            raise TsFormatError(f"PES carries {len(d) - 6} bytes, longer than its declared "
                                f"PES_packet_length {declared}", packet_index=unit.packets[-1],
                                pid=unit.pid)
        if len(d) < 6 + declared:
            raise TsFormatError(f"PES truncated: {len(d) - 6} of {declared} declared bytes",
                                packet_index=unit.packets[-1], pid=unit.pid)


def set_pes_length(pes: bytearray, *, was_unbounded: bool, pid: int) -> None:
    """Fix PES_packet_length after the PES changed size (0 stays 0; > 65535 -> 0 for video)."""
    if was_unbounded:
        return
    n = len(pes) - 6
    if n > 0xFFFF:
        if 0xE0 <= pes[3] <= 0xEF:
            n = 0  # unbounded length is allowed for video PES only
        else:
            raise UnsupportedMediaError(f"non-video PES grew past 65535 bytes (PID 0x{pid:04x})")
    pes[4] = n >> 8
    pes[5] = n & 0xFF


def _caps(table: PacketTable, unit: PesUnit) -> tuple[list[int], list[bytes]]:
    cores = [table.af_core(i) for i in unit.packets]
    return [_MAX_PAYLOAD - (1 + len(c) if c else 0) for c in cores], cores


def min_new_packets(table: PacketTable, unit: PesUnit, new_len: int) -> int:
    """How many packets must be added so that ``new_len`` bytes fit ``unit``'s packets."""
    if new_len <= len(unit.data):
        return 0  # the original layout already held that much
    caps, _ = _caps(table, unit)
    over = new_len - sum(caps)
    return 0 if over <= 0 else -(-over // _MAX_PAYLOAD)


def repacketise(table: PacketTable, unit: PesUnit, new_pes: bytes, extra: int, cc_shift: int
                ) -> list[bytes]:
    """Packets carrying ``new_pes`` in place of ``unit``: its original packets (CC shifted by
    ``cc_shift``), then ``extra`` new packets, each packet with at least one payload byte.

    Callers keep the original layout themselves when the size did not change."""
    caps, cores = _caps(table, unit)
    n_orig = len(unit.packets)
    total = n_orig + extra
    if len(new_pes) < total:
        raise UnsupportedMediaError(f"PES of {len(new_pes)} bytes cannot fill {total} packets")
    out: list[bytes] = []
    pos = 0
    remaining = len(new_pes)
    last_cc = 0
    for j in range(total):
        if j < n_orig:
            i = unit.packets[j]
            head = table.header(i)
            cc = (head[3] + cc_shift) & 0x0F
            cap, core, head3 = caps[j], cores[j], head[:3]
        else:
            cc = (last_cc + 1) & 0x0F
            cap, core = _MAX_PAYLOAD, b""
            head3 = bytes((0x47, head3[1] & 0x1F, head3[2]))  # PUSI, TEI, priority cleared
        take = min(cap, remaining - (total - j - 1))
        out.append(build_packet(head3, cc, core, new_pes[pos : pos + take]))
        pos += take
        remaining -= take
        last_cc = cc
    assert remaining == 0, "PES bytes left after re-packetising"
    return out
