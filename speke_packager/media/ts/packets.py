"""MPEG-TS packet layer (ISO/IEC 13818-1 §2.4.3): validation, PID table, adaptation fields.

Whole-segment checks run at C speed (numpy views of the packet rows; the first 8 bytes of every
packet are read once, as one strided big-endian word, for sync, PID, flags and
adaptation_field_length); only packets that must change are looked at one by one.
:func:`index_packets` indexes a writable buffer without copying it, for in-place editing.
Packets are addressed by their index in the segment; errors name index and PID.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ...errors import TsFormatError

__all__ = [
    "PACKET_SIZE",
    "PacketTable",
    "build_packet",
    "index_packets",
    "split_packets",
]

PACKET_SIZE = 188
SYNC_BYTE = 0x47
_PAYLOAD = 184


@dataclass(frozen=True, slots=True)
class PacketTable:
    """A validated run of 188-byte packets and the PID of each.

    ``rows`` is ``data`` seen as a ``count x 188`` byte array (read-only for :func:`split_packets`,
    writable for :func:`index_packets` of a writable buffer) and ``pid_array`` the PIDs as an
    array, for vectorised scans (no copy of the segment)."""

    data: bytes | bytearray | memoryview
    rows: npt.NDArray[np.uint8]
    pid_array: npt.NDArray[np.int64]
    header_words: npt.NDArray[np.uint64] | None = None

    @property
    def words(self) -> npt.NDArray[np.uint64]:
        """The first 8 bytes of every packet as one big-endian number: sync byte << 56, the
        PUSI/PID byte << 48, PID << 40, flags/CC << 32, adaptation_field_length << 24, ..."""
        if self.header_words is not None:
            return self.header_words
        return _words(self.rows)

    @property
    def pids(self) -> list[int]:
        """The PID of every packet, as a new list (use :meth:`pid` for single packets)."""
        return self.pid_array.tolist()  # type: ignore[no-any-return]

    def pid(self, i: int) -> int:
        """The PID of packet ``i``."""
        b = i * PACKET_SIZE
        return ((self.data[b + 1] & 0x1F) << 8) | self.data[b + 2]

    def indices_of(self, pid: int) -> npt.NDArray[np.intp]:
        """Indices of the packets of ``pid``, in order."""
        return np.flatnonzero(self.pid_array == pid)

    @property
    def count(self) -> int:
        return len(self.pid_array)

    def header(self, i: int) -> bytes:
        b = i * PACKET_SIZE
        return bytes(self.data[b : b + 4])

    def pusi(self, i: int) -> bool:
        return bool(self.data[i * PACKET_SIZE + 1] & 0x40)

    def cc(self, i: int) -> int:
        return self.data[i * PACKET_SIZE + 3] & 0x0F

    def payload_start(self, i: int) -> int:
        """Absolute offset of the payload of packet ``i`` (== packet end when it has none)."""
        base = i * PACKET_SIZE
        ctl = self.data[base + 3]
        afc = (ctl >> 4) & 0x03
        if ctl & 0xC0:
            raise TsFormatError("scrambled packet (transport_scrambling_control != 0)",
                                packet_index=i, pid=self.pid(i))
        if afc == 1:
            return base + 4
        if afc == 0:
            return base + PACKET_SIZE  # reserved: no payload (ISO 13818-1 Table 2-5)
        af_len = self.data[base + 4]
        if afc == 2:
            if af_len > 183:
                raise TsFormatError(f"adaptation field length {af_len} > 183",
                                    packet_index=i, pid=self.pid(i))
            return base + PACKET_SIZE
        if af_len > 182:
            raise TsFormatError(f"adaptation field length {af_len} leaves no room for payload",
                                packet_index=i, pid=self.pid(i))
        return base + 5 + af_len

    def has_payload(self, i: int) -> bool:
        return bool(self.data[i * PACKET_SIZE + 3] & 0x10)

    def payload(self, i: int) -> memoryview:
        return memoryview(self.data)[self.payload_start(i) : (i + 1) * PACKET_SIZE]

    def af_core(self, i: int) -> bytes:
        """Adaptation-field bytes after its length byte without the trailing stuffing (flags,
        PCR, OPCR, splice countdown, private data, extension); ``b""`` when there is nothing."""
        base = i * PACKET_SIZE
        if not self.data[base + 3] & 0x20:
            return b""
        af_len = self.data[base + 4]
        if af_len == 0:
            return b""
        af = self.data[base + 5 : base + 5 + af_len]
        flags = af[0]
        n = 1
        if flags & 0x10:
            n += 6  # PCR
        if flags & 0x08:
            n += 6  # OPCR
        if flags & 0x04:
            n += 1  # splice_countdown
        if flags & 0x02:
            if n >= len(af):
                raise TsFormatError("adaptation field private data runs past its length",
                                    packet_index=i, pid=self.pid(i))
            n += 1 + af[n]
        if flags & 0x01:
            if n >= len(af):
                raise TsFormatError("adaptation field extension runs past its length",
                                    packet_index=i, pid=self.pid(i))
            n += 1 + af[n]
        if n > len(af):
            raise TsFormatError("adaptation field fields run past its length",
                                packet_index=i, pid=self.pid(i))
        if flags == 0 and n == 1:
            return b""
        return bytes(af[:n])


def _words(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    head = np.ndarray((len(rows),), dtype=">u8", buffer=rows, strides=(PACKET_SIZE,))
    return head.astype(np.uint64)


def split_packets(data: bytes | memoryview) -> PacketTable:
    """Validate ``data`` as whole 188-byte packets with sync bytes and index their PIDs.

    Raises :class:`TsFormatError` for a truncated last packet or lost sync (with the packet
    index and, when readable, the PID)."""
    return index_packets(bytes(data))


def index_packets(buf: bytes | bytearray | memoryview) -> PacketTable:
    """:func:`split_packets` over ``buf`` itself (no copy): a writable buffer gives writable
    ``rows``, for in-place editing. ``buf`` must stay unchanged in size while the table is used."""
    if isinstance(buf, memoryview) and (buf.ndim != 1 or buf.itemsize != 1):
        buf = buf.cast("B")
    n = len(buf)
    count, rest = divmod(n, PACKET_SIZE)
    if n == 0:
        raise TsFormatError("empty transport stream segment")
    rows = np.frombuffer(buf, dtype=np.uint8, count=count * PACKET_SIZE).reshape(
        count, PACKET_SIZE)
    word = _words(rows)  # the first 8 bytes of every packet: one strided pass
    bad = np.flatnonzero((word >> 56) != SYNC_BYTE)
    if bad.size:
        first = int(bad[0])
        raise TsFormatError(f"lost sync: byte 0x{buf[first * PACKET_SIZE]:02x} where 0x47 was "
                            "expected", packet_index=first)
    pid_array = ((word >> 40) & 0x1FFF).astype(np.int64)
    if rest:
        tail = buf[count * PACKET_SIZE :]
        pid = ((tail[1] & 0x1F) << 8) | tail[2] if len(tail) >= 3 else None
        what = "lost sync" if tail[0] != SYNC_BYTE else "truncated packet"
        raise TsFormatError(f"{what}: {rest} bytes after the last whole 188-byte packet",
                            packet_index=count, pid=pid)
    return PacketTable(buf, rows, pid_array, word)


def build_packet(head3: bytes, cc: int, af_core: bytes, payload: bytes | bytearray | memoryview
                 ) -> bytes:
    """One 188-byte packet: ``head3`` (sync, flags, PID), ``cc``, an adaptation field holding
    ``af_core`` and stuffing for whatever room ``payload`` leaves (never 0xFF in the payload)."""
    p = len(payload)
    room = _PAYLOAD - p
    assert room >= 0, "payload larger than 184 bytes"  # callers size payloads; not input
    if room == 0:
        assert not af_core, "no room for the adaptation field"
        return head3 + bytes((0x10 | cc,)) + bytes(payload)
    afc = 0x30 if p else 0x20
    af_len = room - 1
    if af_len == 0:
        assert not af_core, "no room for the adaptation field"
        af = b"\x00"
    else:
        body = af_core or b"\x00"
        assert len(body) <= af_len, "no room for the adaptation field"
        af = bytes((af_len,)) + body + b"\xff" * (af_len - len(body))
    return head3 + bytes((afc | cc,)) + af + bytes(payload)
