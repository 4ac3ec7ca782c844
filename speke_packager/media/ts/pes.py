"""PES layer: gather the PES packets of one PID, read their headers, put grown PES back.

Re-packetising (media-encryption.md §2): a PES keeps its original TS packets in order, each with
its 4-byte header and adaptation-field fields (PCR, random_access, discontinuity, ...); only
adaptation-field stuffing changes. Bytes that no longer fit go into new packets of the same PID
right after the PES's last packet. Room left over becomes adaptation-field stuffing, never 0xFF in
the payload. PCR, PTS and DTS are never recomputed.

Gathering (:func:`gather_pid`) reads the header fields of a PID's packets from one strided
8-byte read per packet (:mod:`.packets`), copies the payload rows with one ``take`` and checks
every PES. With a :class:`GatherScratch` (the SAMPLE-AES video hot path) the rows go into a
reused per-thread buffer and each PES is made contiguous in place there: only the spans after
an adaptation field inside the PES (usually the last packet's tail) move, and
:meth:`PidPayload.uncompact` moves them back so one scatter can write the rows back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..._io import ThreadScratch
from ...errors import TsFormatError, UnsupportedMediaError
from .packets import PacketTable, build_packet

__all__ = [
    "GatherScratch",
    "PesUnit",
    "PidPayload",
    "collect_pes",
    "gather_pid",
    "min_new_packets",
    "packet_room",
    "pes_header_size",
    "repacketise",
    "set_pes_length",
]

_MAX_PAYLOAD = 184


@dataclass(slots=True)
class PesUnit:
    """One PES of a PID: its payload-carrying packets and its bytes (``bytes``, or a view of
    the run buffer of :func:`gather_pid` with ``scratch``)."""

    pid: int
    packets: list[int]
    data: bytes | memoryview

    @property
    def first_packet(self) -> int:
        return self.packets[0]


@dataclass(slots=True)
class PidPayload:
    """Every PES of one PID, gathered with whole-array copies.

    ``indices``: all packets of the PID; ``payload_packets``: those carrying payload;
    ``body``: bytes 4..187 of each payload packet, back to back; ``unit_ranges``: per PES, the
    ``(start, end)`` spans of ``body`` that hold its bytes (adaptation fields cut out), whose
    concatenation is the PES. Few spans: only packets with an adaptation field (PCR, stuffing)
    break the runs."""

    pid: int
    indices: npt.NDArray[np.intp]
    payload_packets: npt.NDArray[np.intp]
    body: npt.NDArray[np.uint8]
    unit_ranges: list[list[tuple[int, int]]]
    units: list[PesUnit]
    unit_at: list[int] | None = None  # compacted: where each PES starts in ``body``
    moves: list[tuple[int, int, int]] | None = None  # compacted: (to, from, length) in ``body``
    dirty: bool = False  # ``body`` was changed: the remux writes it back

    def uncompact(self, table: PacketTable) -> None:
        """Undo the compaction of :func:`gather_pid` (``compact=True``): every span back at
        its place in ``body`` (keeping the bytes it holds now) and the adaptation fields the
        moves overwrote copied again from the packets, so ``body`` can be written back."""
        assert self.moves is not None
        flat = memoryview(self.body.reshape(-1))  # type: ignore[arg-type]
        for to, frm, n in reversed(self.moves):
            flat[frm : frm + n] = flat[to : to + n]
        src = memoryview(table.data).cast("B") if isinstance(table.data, memoryview) else \
            memoryview(table.data)
        for to, frm, _ in self.moves:
            del to
            # the gap before a moved span is the adaptation field of the span's first packet
            row = frm // _MAX_PAYLOAD
            gap = frm - row * _MAX_PAYLOAD
            seg = int(self.payload_packets[row]) * 188 + 4
            flat[row * _MAX_PAYLOAD : frm] = src[seg : seg + gap]
        self.moves = []
        self.dirty = True


def _raise_first_fault(table: PacketTable, pid: int, indices: list[int]) -> None:
    """Packet by packet, raising the error of the first faulty packet (slow path, used only
    when the vectorised checks found something wrong)."""
    d = table.data
    started = False
    for i in indices:
        base = i * 188
        ctl = d[base + 3]
        if d[base + 1] & 0x80:
            raise TsFormatError("transport_error_indicator set (damaged packet)",
                                packet_index=i, pid=pid)
        if not ctl & 0x10:
            continue  # adaptation field only
        if ctl & 0x20:
            table.payload_start(i)  # validates the adaptation field length
        elif ctl & 0xC0:
            table.payload_start(i)  # raises: scrambled
        if d[base + 1] & 0x40:
            started = True
        elif not started:
            raise TsFormatError("payload continues a PES that started before the segment",
                                packet_index=i, pid=pid)


class GatherScratch:
    """Per-thread reusable buffer for :func:`gather_pid`: the payload rows."""

    def __init__(self) -> None:
        self.body = ThreadScratch()


def gather_pid(table: PacketTable, pid: int,
               indices: npt.NDArray[np.intp] | list[int] | None = None, *,
               scratch: GatherScratch | None = None, slack: int = 0) -> PidPayload:
    """Split the packets of ``pid`` (``indices``, default: all) into whole PES (PUSI=1 to the
    next PUSI=1) and check each, with whole-array scans instead of per-packet Python.

    Payload bytes before the first PES start (a PES begun in an earlier segment) are refused:
    they could be neither parsed nor encrypted.

    ``scratch``: ``body`` goes into a reused buffer (``slack`` more bytes after it) and each
    PES is compacted there, in place: the spans after its first one (cut by adaptation fields,
    usually just the last packet's tail) are moved back to follow it, so ``PesUnit.data`` is a
    writable memoryview of ``body`` (``unit_at``: where) with no copy of the payload; valid
    until the next call on the same thread. :meth:`PidPayload.uncompact` puts the spans back.
    Without it every PES is its own ``bytes``."""
    idx = table.indices_of(pid) if indices is None else np.asarray(indices, dtype=np.intp)
    word = table.words[idx]  # header bytes; the payload is copied once, below
    b1 = ((word >> 48) & 0xFF).astype(np.intp)
    ctl = ((word >> 32) & 0xFF).astype(np.intp)
    has_payload = (ctl & 0x10) != 0
    with_af = (ctl & 0x20) != 0
    af_len = ((word >> 24) & 0xFF).astype(np.intp)
    bad = ((b1 & 0x80) != 0) | (has_payload & (((ctl & 0xC0) != 0)
                                                | (with_af & (af_len > 182))))
    pusi = (b1[has_payload] & 0x40) != 0
    if bad.any() or (pusi.size and not pusi[0]):
        _raise_first_fault(table, pid, idx.tolist())  # raises for the first faulty packet
    pay_idx = idx[has_payload]
    cut = np.where(with_af[has_payload], 1 + af_len[has_payload].astype(np.intp), 0)
    n = len(pay_idx)
    if scratch is None:
        body = table.rows[pay_idx, 4:]  # one row copy: bytes 4..187 of each payload packet
    else:
        raw = scratch.body.get(n * _MAX_PAYLOAD + slack)
        body = np.frombuffer(raw, dtype=np.uint8, count=n * _MAX_PAYLOAD).reshape(
            n, _MAX_PAYLOAD)
        np.take(table.rows[:, 4:], pay_idx, axis=0, out=body, mode="clip")
    # payload spans of ``body``: runs broken by adaptation fields and by PES starts; each
    # lies inside one PES (the first payload packet starts one)
    breaks = np.flatnonzero((cut != 0) | pusi)
    lo_all = np.concatenate(([0], breaks * _MAX_PAYLOAD + cut[breaks]))
    hi_all = np.concatenate((breaks * _MAX_PAYLOAD, [n * _MAX_PAYLOAD]))
    keep = hi_all > lo_all
    span_lo, span_hi = lo_all[keep], hi_all[keep]
    firsts = np.flatnonzero(pusi)
    owner = np.searchsorted(firsts * _MAX_PAYLOAD, span_lo, side="right") - 1
    unit_no = np.arange(len(firsts))
    first_span = np.searchsorted(owner, unit_no, side="left").tolist()
    end_span = np.searchsorted(owner, unit_no, side="right").tolist()
    spans = list(zip(span_lo.tolist(), span_hi.tolist(), strict=True))
    unit_ranges = [spans[a:b] for a, b in zip(first_span, end_span, strict=True)]
    flat = memoryview(body.reshape(-1))  # type: ignore[arg-type]
    pay_list = pay_idx.tolist()
    ends = np.append(firsts[1:], n) if firsts.size else firsts
    rows_of = list(zip(firsts.tolist(), ends.tolist(), strict=True))
    units: list[PesUnit]
    if scratch is None:
        units = [PesUnit(pid, pay_list[a:b], b"".join([flat[lo:hi] for lo, hi in mine]))
                 for (a, b), mine in zip(rows_of, unit_ranges, strict=True)]
    else:
        whole = memoryview(raw)
        units = []
        unit_at = []
        moves = []
        for (a, b), mine in zip(rows_of, unit_ranges, strict=True):
            start, end = mine[0]
            for lo, hi in mine[1:]:
                moves.append((end, lo, hi - lo))
                flat[end : end + hi - lo] = flat[lo:hi]
                end += hi - lo
            unit_at.append(start)
            units.append(PesUnit(pid, pay_list[a:b], whole[start:end]))
        for u in units:
            check_pes(u)
        return PidPayload(pid, idx, pay_idx, body, unit_ranges, units, unit_at, moves)
    for u in units:
        check_pes(u)
    return PidPayload(pid, idx, pay_idx, body, unit_ranges, units)


def collect_pes(table: PacketTable, pid: int, indices: list[int]) -> list[PesUnit]:
    """The whole PES of ``pid`` among the packets ``indices``; see :func:`gather_pid`."""
    return gather_pid(table, pid, indices).units


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
    """Payload room of each packet of ``unit`` if its adaptation field kept only its fields
    (no stuffing), and those fields; only packets with an adaptation field are parsed."""
    n = len(unit.packets)
    cores = [b""] * n
    caps = [_MAX_PAYLOAD] * n
    with_af = np.flatnonzero(table.rows[unit.packets, 3] & 0x20).tolist()
    for j in with_af:
        c = table.af_core(unit.packets[j])
        if c:
            cores[j] = c
            caps[j] = _MAX_PAYLOAD - 1 - len(c)
    return caps, cores


Caps = tuple[list[int], list[bytes]]


def packet_room(table: PacketTable, unit: PesUnit) -> Caps:
    """The payload room of each packet of ``unit`` once its adaptation field keeps only its
    fields, and those fields: what :func:`min_new_packets` and :func:`repacketise` work from
    (pass it to both to read the adaptation fields once)."""
    return _caps(table, unit)


def min_new_packets(table: PacketTable, unit: PesUnit, new_len: int, *,
                    room: Caps | None = None) -> int:
    """How many packets must be added so that ``new_len`` bytes fit ``unit``'s packets."""
    if new_len <= len(unit.data):
        return 0  # the original layout already held that much
    caps, _ = room or _caps(table, unit)
    over = new_len - sum(caps)
    return 0 if over <= 0 else -(-over // _MAX_PAYLOAD)


def repacketise(table: PacketTable, unit: PesUnit, new_pes: bytes | bytearray | memoryview,
                extra: int, cc_shift: int, *, room: Caps | None = None
                ) -> npt.NDArray[np.uint8]:
    """Packets carrying ``new_pes`` in place of ``unit``, as a ``(packets, 188)`` array: its
    original packets (CC shifted by ``cc_shift``), then ``extra`` new packets, each packet with
    at least one payload byte.

    Every packet takes as much as its room allows, except that each later packet is left one
    byte; full packets are built with whole-array copies, the few others one by one.
    Callers keep the original layout themselves when the size did not change."""
    caps, cores = room or _caps(table, unit)
    n_orig = len(unit.packets)
    total = n_orig + extra
    size = len(new_pes)
    if size < total:
        raise UnsupportedMediaError(f"PES of {size} bytes cannot fill {total} packets")
    cap = np.array(caps + [_MAX_PAYLOAD] * extra, dtype=np.intp)
    before = np.concatenate(([0], np.cumsum(cap)[:-1]))
    avail = size - before - (total - 1 - np.arange(total))  # room if later ones get 1 byte
    take = cap.copy()
    binding = np.flatnonzero(cap > avail)
    if binding.size:
        j = int(binding[0])
        take[j] = avail[j]
        take[j + 1 :] = 1
    pos = np.concatenate(([0], np.cumsum(take)))
    assert int(pos[-1]) == size, "PES bytes left after re-packetising"
    orig = table.rows[unit.packets]
    res = np.empty((total, 188), dtype=np.uint8)
    res[:, 0] = 0x47
    res[:n_orig, 1:3] = orig[:, 1:3]
    res[n_orig:, 1] = orig[-1, 1] & 0x1F  # PUSI, TEI, priority cleared
    res[n_orig:, 2] = orig[-1, 2]
    cc = np.empty(total, dtype=np.intp)
    cc[:n_orig] = (orig[:, 3].astype(np.intp) + cc_shift) & 0x0F
    cc[n_orig:] = (cc[n_orig - 1] + 1 + np.arange(extra)) & 0x0F
    full = np.flatnonzero(take == _MAX_PAYLOAD)
    src = np.frombuffer(new_pes, dtype=np.uint8)
    res[full, 3] = 0x10 | cc[full]
    if full.size:  # rows of 184 payload bytes at any offset: one strided view, one gather
        rows = np.ndarray((size - _MAX_PAYLOAD + 1, _MAX_PAYLOAD), dtype=np.uint8, buffer=src,
                          strides=(1, 1))
        res[full, 4:] = rows[pos[full]]
    for j in np.flatnonzero(take != _MAX_PAYLOAD).tolist():
        head3 = res[j, :3].tobytes()
        core = cores[j] if j < n_orig else b""
        a, b = int(pos[j]), int(pos[j + 1])
        res[j] = np.frombuffer(build_packet(head3, int(cc[j]), core, new_pes[a:b]),
                               dtype=np.uint8)
    return res
