"""PSI tables for one program: PAT and PMT read and written (ISO/IEC 13818-1 §2.4.4).

CRC-32/MPEG-2 is checked on read and recomputed on write. Sections are read from one packet or
from a PUSI packet and its continuations; written PMTs must fit one packet (hls.js reads only
the first PMT packet).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import TsFormatError, UnsupportedMediaError
from .packets import PACKET_SIZE, PacketTable, build_packet

__all__ = [
    "EsInfo",
    "Pmt",
    "crc32_mpeg2",
    "find_program",
    "iter_descriptors",
    "pmt_packet",
]


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes | memoryview) -> int:
    """CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no final XOR).

    Used only on PSI sections (a few hundred bytes per segment), never on media payloads."""
    crc = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ t[(crc >> 24) ^ b]
    return crc


def iter_descriptors(blob: bytes) -> list[tuple[int, bytes]]:
    """Split a descriptor loop into ``(tag, body)`` pairs; :class:`TsFormatError` if broken."""
    out = []
    pos = 0
    while pos < len(blob):
        if pos + 2 > len(blob) or pos + 2 + blob[pos + 1] > len(blob):
            raise TsFormatError(f"descriptor at offset {pos} runs past its loop")
        out.append((blob[pos], blob[pos + 2 : pos + 2 + blob[pos + 1]]))
        pos += 2 + blob[pos + 1]
    return out


@dataclass(frozen=True, slots=True)
class EsInfo:
    """One elementary stream of the PMT: type, PID and its raw ES_info descriptors."""

    stream_type: int
    pid: int
    descriptors: bytes = b""

    def has_descriptor(self, tag: int) -> bool:
        return any(t == tag for t, _ in iter_descriptors(self.descriptors))


@dataclass(frozen=True, slots=True)
class Pmt:
    """A program map section (section_number 0 of 0)."""

    program_number: int
    version: int
    pcr_pid: int
    program_info: bytes
    streams: tuple[EsInfo, ...]

    def stream(self, pid: int) -> EsInfo | None:
        for s in self.streams:
            if s.pid == pid:
                return s
        return None

    def with_streams(self, streams: tuple[EsInfo, ...], *, version: int | None = None) -> Pmt:
        return replace(self, streams=streams,
                       version=self.version if version is None else version % 32)

    def to_section(self) -> bytes:
        """The section bytes from ``table_id`` to the CRC, reserved bits set to 1."""
        body = bytearray()
        body += self.program_number.to_bytes(2, "big")
        body.append(0xC0 | (self.version << 1) | 0x01)
        body += b"\x00\x00"
        body += (0xE000 | self.pcr_pid).to_bytes(2, "big")
        body += (0xF000 | len(self.program_info)).to_bytes(2, "big")
        body += self.program_info
        for s in self.streams:
            body.append(s.stream_type)
            body += (0xE000 | s.pid).to_bytes(2, "big")
            body += (0xF000 | len(s.descriptors)).to_bytes(2, "big")
            body += s.descriptors
        section_length = len(body) + 4
        if section_length > 1021:
            raise UnsupportedMediaError("PMT section longer than 1021 bytes")
        head = bytes((0x02, 0xB0 | (section_length >> 8), section_length & 0xFF))
        sec = head + bytes(body)
        return sec + crc32_mpeg2(sec).to_bytes(4, "big")


def _read_section(table: PacketTable, first: int, pid: int) -> bytes:
    """The PSI section starting in packet ``first`` (PUSI=1), continuing in later packets."""
    payload = bytes(table.payload(first))
    if not payload:
        raise TsFormatError("PSI packet without payload", packet_index=first, pid=pid)
    pointer = payload[0]
    data = payload[1 + pointer :]
    if len(data) < 3:
        raise TsFormatError("PSI section header cut off", packet_index=first, pid=pid)
    need = 3 + (((data[1] & 0x0F) << 8) | data[2])
    i = first + 1
    while len(data) < need and i < table.count:
        if table.pid(i) == pid and table.has_payload(i):
            if table.pusi(i):
                break
            data += bytes(table.payload(i))
        i += 1
    if len(data) < need:
        raise TsFormatError("PSI section truncated", packet_index=first, pid=pid)
    sec = data[:need]
    if crc32_mpeg2(sec) != 0:  # CRC over the section including its CRC is 0 when it matches
        raise TsFormatError("PSI section CRC-32 mismatch", packet_index=first, pid=pid)
    return sec


def _parse_pat(sec: bytes, idx: int) -> dict[int, int]:
    if sec[0] != 0x00:
        raise TsFormatError(f"PID 0 carries table_id 0x{sec[0]:02x}, not a PAT", packet_index=idx,
                            pid=0)
    programs: dict[int, int] = {}
    for pos in range(8, len(sec) - 4, 4):
        number = int.from_bytes(sec[pos : pos + 2], "big")
        pmt_pid = ((sec[pos + 2] & 0x1F) << 8) | sec[pos + 3]
        if number != 0:  # 0 = network PID
            programs[number] = pmt_pid
    return programs


def _parse_pmt(sec: bytes, idx: int, pid: int) -> Pmt:
    if sec[0] != 0x02:
        raise TsFormatError(f"PMT PID carries table_id 0x{sec[0]:02x}", packet_index=idx, pid=pid)
    if len(sec) < 16:
        raise TsFormatError("PMT section too short", packet_index=idx, pid=pid)
    if sec[6] != 0 or sec[7] != 0:
        raise UnsupportedMediaError(f"PMT with several sections (PID 0x{pid:04x})")
    pcr_pid = ((sec[8] & 0x1F) << 8) | sec[9]
    pil = ((sec[10] & 0x0F) << 8) | sec[11]
    end = len(sec) - 4
    if 12 + pil > end:
        raise TsFormatError("PMT program_info runs past the section", packet_index=idx, pid=pid)
    streams = []
    pos = 12 + pil
    while pos < end:
        if pos + 5 > end:
            raise TsFormatError("PMT stream entry cut off", packet_index=idx, pid=pid)
        es_len = ((sec[pos + 3] & 0x0F) << 8) | sec[pos + 4]
        if pos + 5 + es_len > end:
            raise TsFormatError("PMT ES_info runs past the section", packet_index=idx, pid=pid)
        streams.append(EsInfo(sec[pos], ((sec[pos + 1] & 0x1F) << 8) | sec[pos + 2],
                              sec[pos + 5 : pos + 5 + es_len]))
        pos += 5 + es_len
    return Pmt(
        program_number=int.from_bytes(sec[3:5], "big"),
        version=(sec[5] >> 1) & 0x1F,
        pcr_pid=pcr_pid,
        program_info=sec[12 : 12 + pil],
        streams=tuple(streams),
    )


@dataclass(frozen=True, slots=True)
class Program:
    """The single program of a segment and where its PMT packets are."""

    pmt_pid: int
    pmt: Pmt
    pmt_packets: tuple[int, ...]  # indices of PMT packets with PUSI=1


def find_program(table: PacketTable) -> Program:
    """Read the PAT and PMT of a single-program segment.

    HLS requires a PAT and a PMT in every TS segment (RFC 8216 §3.2); their absence, several
    programs or a PMT that changes its streams inside the segment are typed errors."""
    pusi = (table.words & (0x40 << 48)) != 0
    pats = np.flatnonzero(pusi & (table.pid_array == 0))
    pat_idx = int(pats[0]) if pats.size else None
    if pat_idx is None:
        raise TsFormatError("no PAT in the segment (HLS needs PAT and PMT in every segment)")
    programs = _parse_pat(_read_section(table, pat_idx, 0), pat_idx)
    if len(programs) != 1:
        raise UnsupportedMediaError(f"{len(programs)} programs in the PAT; only single-program TS "
                                    "is supported")
    pmt_pid = next(iter(programs.values()))
    idxs = tuple(np.flatnonzero(pusi & (table.pid_array == pmt_pid)).tolist())
    if not idxs:
        raise TsFormatError("no PMT in the segment", pid=pmt_pid)
    first = _read_section(table, idxs[0], pmt_pid)
    pmt = _parse_pmt(first, idxs[0], pmt_pid)
    for i in idxs[1:]:
        other = _parse_pmt(_read_section(table, i, pmt_pid), i, pmt_pid)
        if other.streams != pmt.streams:
            raise UnsupportedMediaError(f"PMT changes its streams inside the segment (packet {i})")
    for i in idxs:
        base = i * PACKET_SIZE
        payload = bytes(table.payload(i))
        if 1 + payload[0] + len(first) > PACKET_SIZE - (table.payload_start(i) - base):
            raise UnsupportedMediaError(
                f"PMT spans several packets (packet {i}); only one-packet PMTs are rewritten")
    return Program(pmt_pid, pmt, idxs)


def pmt_packet(table: PacketTable, index: int, section: bytes) -> bytes:
    """Packet ``index`` (a PMT packet) carrying ``section`` instead: same header and CC, the
    room filled as the original did (adaptation-field stuffing if it had an adaptation field,
    0xFF after the section otherwise, which PSI allows)."""
    pid = table.pid(index)
    body = b"\x00" + section  # pointer_field 0
    if len(body) > 184:
        raise UnsupportedMediaError(f"rewritten PMT ({len(section)} bytes) does not fit one packet "
                                    f"(PID 0x{pid:04x})")
    head = table.header(index)
    cc = head[3] & 0x0F
    if head[3] & 0x20:
        core = table.af_core(index)
        if len(body) + (1 + len(core) if core else 0) > 184:
            raise UnsupportedMediaError(f"rewritten PMT and the packet's adaptation field do not "
                                        f"fit one packet (PID 0x{pid:04x})")
        return build_packet(head[:3], cc, core, body)
    return head[:3] + bytes((0x10 | cc,)) + body + b"\xff" * (184 - len(body))
