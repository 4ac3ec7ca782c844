"""HLS ``METHOD=SAMPLE-AES`` for MPEG-TS segments: demux, encrypt, remux, rewrite the PMT.

What changes in a segment (media-encryption.md §2-§3):

* H.264 (0x1B -> 0xDB), AAC in ADTS (0x0F -> 0xCF), AC-3 (0x81 -> 0xC1) and E-AC-3
  (0x87 -> 0xC2; DVB-style 0x06 with an AC-3/E-AC-3 descriptor too) are encrypted.
* The PMT gets the SAMPLE-AES stream types, ``private_data_indicator`` descriptors, the
  ``'apad'`` registration descriptor with the audio setup information, version_number + 1 (so a
  player switching from clear-lead segments re-reads it) and a new CRC; it stays in one packet.
* Packets of every other PID (PAT, PCR-only, ID3, SCTE-35, ...) are copied byte for byte, in
  bulk slices. Audio packets change only in encrypted bytes. Video PES that grew through
  emulation prevention are re-packetised (:mod:`.pes`) and their PID's continuity counters
  renumbered.
* Continuity across segments: when a segment gained packets on a PID, enough 1-byte-payload
  packets are added to one of its PES to make the gain a multiple of 16, so the last continuity
  counter of every PID is the original one and independently encrypted segments still join up
  (no state shared between segments, so segments can be encrypted in parallel).

Pass-through (documented, never encrypted): stream types without a SAMPLE-AES definition -
MPEG audio (0x03/0x04), LATM AAC (0x11), metadata, subtitles, private data without an AC-3
descriptor. ``strict=True`` turns these into :class:`UnsupportedMediaError`. HEVC (0x24) has no
SAMPLE-AES TS definition and always raises; already-protected types (0xDB/0xCF/0xC1/0xC2) raise.
"""

from __future__ import annotations

import threading
from typing import BinaryIO

from speke_packager.errors import CodecError, TsFormatError, UnsupportedMediaError, UsageError
from speke_packager.media.ts.packets import PACKET_SIZE, PacketTable, split_packets
from speke_packager.media.ts.psi import find_program, pmt_packet
from speke_packager.media.ts.sample_aes_pmt import (
    AAC,
    EAC3,
    H264,
    StreamPlan,
    clear_pmt,
    encrypted_pmt,
    stream_plans,
)

from .es_crypto import crypt_ac3_es, crypt_adts_es, decrypt_h264_es, encrypt_h264_es
from .pes import PesUnit, collect_pes, min_new_packets, pes_header_size, repacketise, set_pes_length

__all__ = ["SampleAesEncryptor", "decrypt_sample_aes", "encrypt_sample_aes"]

def _check_key_iv(key: bytes, iv: bytes) -> None:
    if len(key) != 16:
        raise UsageError("SAMPLE-AES key must be 16 bytes")
    if len(iv) != 16:
        raise UsageError("SAMPLE-AES IV must be 16 bytes")


def _crypt_audio(table: PacketTable, plan: StreamPlan, units: list[PesUnit], key: bytes, iv: bytes,
                 *, encrypt: bool) -> tuple[list[bytes], bytes]:
    """All audio PES of a PID as one elementary stream (frames may straddle PES); sizes stay."""
    heads = [pes_header_size(u.data) for u in units]
    es = bytearray(b"".join(memoryview(u.data)[h:] for u, h in zip(units, heads, strict=True)))
    try:
        if plan.codec == AAC:
            setup = crypt_adts_es(es, key, iv, encrypt=encrypt)
        else:
            setup = crypt_ac3_es(es, key, iv, eac3=plan.codec == EAC3, encrypt=encrypt)
    except CodecError as exc:
        raise CodecError(f"{exc} (audio PID 0x{plan.pid:04x}, PES from packet "
                         f"{units[0].first_packet})") from exc
    out = []
    pos = 0
    for u, h in zip(units, heads, strict=True):
        n = len(u.data) - h
        out.append(u.data[:h] + bytes(es[pos : pos + n]))
        pos += n
    return out, setup


def _crypt_video(units: list[PesUnit], key: bytes, iv: bytes, encrypt: bool) -> list[bytes]:
    out = []
    for u in units:
        h = pes_header_size(u.data)
        es = u.data[h:]
        body = es.lstrip(b"\x00")
        if es and (len(es) - len(body) < 2 or not body.startswith(b"\x01")):
            raise CodecError(f"video PES does not start with an Annex B start code (PID "
                             f"0x{u.pid:04x}, packet {u.first_packet}): NAL units split across "
                             "PES cannot be encrypted")
        new_es = encrypt_h264_es(es, key, iv) if encrypt else decrypt_h264_es(es, key, iv)
        if len(new_es) == len(es):
            out.append(u.data[:h] + new_es)
            continue
        pes = bytearray(u.data[:h] + new_es)
        set_pes_length(pes, was_unbounded=(u.data[4] | u.data[5]) == 0, pid=u.pid)
        out.append(bytes(pes))
    return out


def _set_cc(out: bytearray, i: int, shift: int) -> None:
    at = i * PACKET_SIZE + 3
    out[at] = (out[at] & 0xF0) | ((out[at] + shift) & 0x0F)


def _remux_pid(table: PacketTable, indices: list[int], units: list[PesUnit], new: list[bytes], *,
               out: bytearray, splices: dict[int, bytes], keep_cc: bool) -> None:
    """Write the packets of one PID into ``out`` (a copy of the segment): same-size PES in
    place, grown PES re-packetised (packets beyond the original ones go to ``splices``, keyed
    by the packet they follow), CC shifted after inserted packets."""
    adds = [min_new_packets(table, u, len(b)) for u, b in zip(units, new, strict=True)]
    pad = (-sum(adds)) % 16 if keep_cc else 0
    if pad:
        slack = [len(b) - len(u.packets) - a for u, b, a in zip(units, new, adds, strict=True)]
        best = max(range(len(units)), key=lambda k: slack[k])
        if slack[best] >= pad:
            adds[best] += pad
        # else: too little data to pad; the next segment's first CC on this PID then jumps
    first_of = {u.first_packet: k for k, u in enumerate(units)}
    last_of = {u.packets[-1]: k for k, u in enumerate(units)}
    members = {i for u in units for i in u.packets}
    shift = 0
    for i in indices:
        k = first_of.get(i)
        if k is not None:
            _write_unit(table, units[k], new[k], add=adds[k], shift=shift, out=out,
                        splices=splices)
        elif i not in members and shift % 16:  # adaptation-field-only packet
            _set_cc(out, i, shift)
        k = last_of.get(i)
        if k is not None:  # packets after this PES's last one follow the added packets
            shift += adds[k]


def _write_unit(table: PacketTable, u: PesUnit, pes: bytes, *, add: int, shift: int,
                out: bytearray, splices: dict[int, bytes]) -> None:
    """One PES into ``out``: in place when its size is unchanged, else re-packetised."""
    if add == 0 and len(pes) == len(u.data):
        src = memoryview(pes)
        pos = 0
        for s, e in u.spans:  # same size: same layout, new payload bytes
            out[s:e] = src[pos : pos + e - s]
            pos += e - s
        if shift % 16:
            for j in u.packets:
                _set_cc(out, j, shift)
        return
    produced = repacketise(table, u, pes, add, shift)
    for j, pkt in zip(u.packets, produced, strict=False):
        out[j * PACKET_SIZE : (j + 1) * PACKET_SIZE] = pkt
    if add:
        splices[u.packets[-1]] = b"".join(produced[len(u.packets) :])


def _assemble(out: bytearray, splices: dict[int, bytes]) -> bytes:
    """The edited segment with added packets spliced in after the packets they follow."""
    if not splices:
        return bytes(out)
    mv = memoryview(out)
    parts: list[bytes | memoryview] = []
    prev = 0
    for i in sorted(splices):
        end = (i + 1) * PACKET_SIZE
        parts += (mv[prev:end], splices[i])
        prev = end
    parts.append(mv[prev:])
    return b"".join(parts)


def _process(data: bytes | memoryview, key: bytes, iv: bytes, *, encrypt: bool, strict: bool,
             keep_cc: bool, setup_cache: dict[int, bytes] | None, lock: threading.Lock | None
             ) -> bytes:
    _check_key_iv(key, iv)
    table = split_packets(data)
    program = find_program(table)
    plans = stream_plans(program.pmt, encrypt=encrypt, strict=strict)
    if not plans:
        if encrypt:
            raise UnsupportedMediaError("no stream in the segment can be SAMPLE-AES encrypted")
        return table.data
    per_pid: dict[int, list[int]] = {p.pid: [] for p in plans}
    for i, pid in enumerate(table.pids):
        lst = per_pid.get(pid)
        if lst is not None:
            lst.append(i)
    out = bytearray(table.data)
    splices: dict[int, bytes] = {}
    setups: dict[int, bytes] = {}
    for plan in plans:
        indices = per_pid[plan.pid]
        units = collect_pes(table, plan.pid, indices)
        if plan.codec == H264:
            new = _crypt_video(units, key, iv, encrypt)
        elif units:
            new, setup = _crypt_audio(table, plan, units, key, iv, encrypt=encrypt)
            if setup:
                setups[plan.pid] = setup
        else:
            new = []
        _remux_pid(table, indices, units, new, out=out, splices=splices,
                   keep_cc=keep_cc and encrypt)
    if encrypt:
        for plan in plans:
            if plan.codec == H264 or plan.pid in setups:
                continue
            cached = None
            if setup_cache is not None and lock is not None:
                with lock:
                    cached = setup_cache.get(plan.pid)
            if cached is None:
                raise TsFormatError("no audio frame in the segment to derive the PMT's audio "
                                    "setup information from", pid=plan.pid)
            setups[plan.pid] = cached
        if setup_cache is not None and lock is not None:
            with lock:
                for pid, s in setups.items():
                    setup_cache.setdefault(pid, s)
        section = encrypted_pmt(program.pmt, setups, plans).to_section()
    else:
        section = clear_pmt(program.pmt, plans).to_section()
    for i in program.pmt_packets:
        out[i * PACKET_SIZE : (i + 1) * PACKET_SIZE] = pmt_packet(table, i, section)
    return _assemble(out, splices)


class SampleAesEncryptor:
    """SAMPLE-AES for MPEG-TS, one whole segment at a time.

    ``key`` and ``iv`` are raw 16-byte values (``iv``: the ``EXT-X-KEY`` IV, or
    :func:`~speke_packager.media.aes128.iv_from_sequence` of the segment's sequence number).
    Segments are independent: instances may be shared by threads, and separate instances in
    separate processes produce the same bytes. The only thing kept between calls is the audio
    setup information per PID, used for a segment that happens to hold no audio frame.

    ``strict``: raise :class:`UnsupportedMediaError` for streams that would pass through clear.
    """

    def __init__(self, key: bytes, iv: bytes, *, strict: bool = False) -> None:
        _check_key_iv(key, iv)
        self._key = key
        self._iv = iv
        self._strict = strict
        self._setups: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SampleAesEncryptor(key=<hidden>, strict={self._strict})"

    def encrypt_segment(self, data: bytes | memoryview, *, iv: bytes | None = None) -> bytes:
        """Encrypt one TS segment (whole 188-byte packets with a PAT and a PMT).

        ``iv`` overrides the instance IV for this segment (per-segment IVs)."""
        return _process(data, self._key, self._iv if iv is None else iv, encrypt=True,
                        strict=self._strict, keep_cc=True, setup_cache=self._setups,
                        lock=self._lock)


    def encrypt_stream(self, src: BinaryIO, dst: BinaryIO, *, iv: bytes | None = None) -> int:
        """Read one segment from ``src``, write it encrypted to ``dst``; returns bytes written.

        SAMPLE-AES needs whole PES packets and the PMT, so the segment is held in memory (a
        segment, never a whole asset)."""
        out = self.encrypt_segment(src.read(), iv=iv)
        dst.write(out)
        return len(out)


def encrypt_sample_aes(data: bytes | memoryview, key: bytes, iv: bytes) -> bytes:
    """SAMPLE-AES-encrypt one TS segment; see :class:`SampleAesEncryptor`."""
    return _process(data, key, iv, encrypt=True, strict=False, keep_cc=True, setup_cache=None,
                    lock=None)


def decrypt_sample_aes(data: bytes, key: bytes, iv: bytes) -> bytes:
    """Undo :func:`encrypt_sample_aes` (stream types and descriptors restored, elementary
    streams decrypted). Meant for round-trip tests and verification, not for playback."""
    return _process(data, key, iv, encrypt=False, strict=False, keep_cc=False, setup_cache=None,
                    lock=None)
