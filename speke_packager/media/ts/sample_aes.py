"""HLS ``METHOD=SAMPLE-AES`` for MPEG-TS segments: demux, encrypt, remux, rewrite the PMT.

What changes in a segment (media-encryption.md §2-§3):

* H.264 (0x1B -> 0xDB), AAC in ADTS (0x0F -> 0xCF), AC-3 (0x81 -> 0xC1) and E-AC-3
  (0x87 -> 0xC2; DVB-style 0x06 with an AC-3/E-AC-3 descriptor too) are encrypted.
* The PMT gets the SAMPLE-AES stream types, ``private_data_indicator`` descriptors, the
  ``'apad'`` registration descriptor with the audio setup information, version_number + 1 (so a
  player switching from clear-lead segments re-reads it) and a new CRC; it stays in one packet
  (:mod:`.sample_aes_pmt`).
* Packets of every other PID (PAT, PCR-only, ID3, SCTE-35, ...) are copied byte for byte, in
  bulk slices. Audio packets change only in encrypted bytes. Video PES that grew through
  emulation prevention are re-packetised (:mod:`.pes`) and their PID's continuity counters
  renumbered.
* Continuity across segments: when a segment gained packets on a PID, enough 1-byte-payload
  packets are added to one of its PES to make the gain a multiple of 16, so the last continuity
  counter of every PID is the original one and independently encrypted segments still join up
  (no state shared between segments, so segments can be encrypted in parallel).

Hot path (encryption): the segment is edited in place in one writable buffer - the caller's
(``encrypt_segment_parts(..., in_place=True)``, the encrypt-vod workers' read buffer), the
per-thread buffer ``encrypt_file`` reads into, or a per-thread copy for ``encrypt_segment`` -
and handed back as pieces (slices of it plus the packets added to grown PES), written with
``os.writev`` or joined once. No segment-sized buffer is allocated per call: packets are indexed
over the buffer itself (:func:`.packets.index_packets`), the video PID's payload rows go into a
reused per-thread buffer where every PES is compacted in place and the whole PID is encrypted at
once (:func:`.es_crypto.encrypt_h264_run`), and one scatter writes the rows back. Only PES that
grew (emulation prevention in new ciphertext, a few per segment) are rebuilt as bytes and
re-packetised. Audio PES (a few percent of a segment) go frame by frame through the same cipher
context, which each thread keeps across segments.

Pass-through (documented, never encrypted): stream types without a SAMPLE-AES definition -
MPEG audio (0x03/0x04), LATM AAC (0x11), metadata, subtitles, private data without an AC-3
descriptor. ``strict=True`` turns these into :class:`UnsupportedMediaError`. HEVC (0x24) has no
SAMPLE-AES TS definition and always raises; already-protected types (0xDB/0xCF/0xC1/0xC2) raise.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import stat
import threading
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

from ..._io import ThreadScratch, write_parts_atomic
from ...errors import (
    CodecError,
    MediaError,
    TsFormatError,
    UnsupportedMediaError,
    UsageError,
)
from .es_crypto import (
    CbcMessages,
    crypt_ac3_es,
    crypt_adts_es,
    decrypt_h264_es,
    encrypt_h264_pes,
    encrypt_h264_run,
    sorted_unique,
)
from .packets import PACKET_SIZE, PacketTable, index_packets
from .pes import (
    GatherScratch,
    PesUnit,
    PidPayload,
    gather_pid,
    min_new_packets,
    packet_room,
    pes_header_size,
    repacketise,
    set_pes_length,
)
from .psi import find_program, pmt_packet
from .sample_aes_pmt import AAC, EAC3, H264, StreamPlan, clear_pmt, encrypted_pmt, stream_plans

__all__ = ["SampleAesEncryptor", "decrypt_sample_aes", "encrypt_sample_aes"]

Part = bytes | bytearray | memoryview

def _check_key_iv(key: bytes, iv: bytes) -> None:
    if len(key) != 16:
        raise UsageError("SAMPLE-AES key must be 16 bytes")
    if len(iv) != 16:
        raise UsageError("SAMPLE-AES IV must be 16 bytes")


# segments up to this size reuse one per-thread work buffer
_SCRATCH = ThreadScratch(cap=64 << 20)


def _crypt_audio(table: PacketTable, plan: StreamPlan, units: list[PesUnit], key: bytes, iv: bytes,
                 *, encrypt: bool, cbc: CbcMessages | None = None) -> tuple[list[bytes], bytes]:
    """All audio PES of a PID as one elementary stream (frames may straddle PES); sizes stay."""
    heads = [pes_header_size(u.data) for u in units]
    es = bytearray(b"".join(memoryview(u.data)[h:] for u, h in zip(units, heads, strict=True)))
    try:
        if plan.codec == AAC:
            setup = crypt_adts_es(es, key, iv, encrypt=encrypt, cbc=cbc)
        else:
            setup = crypt_ac3_es(es, key, iv, eac3=plan.codec == EAC3, encrypt=encrypt, cbc=cbc)
    except CodecError as exc:
        raise CodecError(f"{exc} (audio PID 0x{plan.pid:04x}, PES from packet "
                         f"{units[0].first_packet})") from exc
    out = []
    pos = 0
    for u, h in zip(units, heads, strict=True):
        n = len(u.data) - h
        out.append(bytes(u.data[:h]) + bytes(es[pos : pos + n]))
        pos += n
    return out, setup


_LEADING_ZEROS = re.compile(b"\x00*")


def _crypt_video(units: list[PesUnit], key: bytes, iv: bytes, encrypt: bool
                 ) -> list[bytes | bytearray | memoryview]:
    """Each PES with its slice NALs encrypted (or decrypted); an unchanged PES is returned as
    the very ``PesUnit.data`` object, so that the remux can skip it."""
    out: list[bytes | bytearray | memoryview] = []
    cbc = CbcMessages(key, iv, encrypt=encrypt)
    for u in units:
        h = pes_header_size(u.data)
        es = memoryview(u.data)[h:]
        zeros = _LEADING_ZEROS.match(es)
        z = zeros.end() if zeros else 0
        if es and (z < 2 or z >= len(es) or es[z] != 1):
            raise CodecError(f"video PES does not start with an Annex B start code (PID "
                             f"0x{u.pid:04x}, packet {u.first_packet}): NAL units split across "
                             "PES cannot be encrypted")
        pes: bytes | bytearray | None
        head = bytes(u.data[:h])
        if encrypt:
            pes = encrypt_h264_pes(es, head, cbc)
        else:
            clear = bytes(es)
            new_es = decrypt_h264_es(clear, key, iv, cbc=cbc)
            pes = None if new_es is clear else head + new_es
        if pes is None:
            out.append(u.data)
            continue
        if len(pes) != len(u.data):
            if not isinstance(pes, bytearray):
                pes = bytearray(pes)
            set_pes_length(pes, was_unbounded=(u.data[4] | u.data[5]) == 0, pid=u.pid)
        out.append(pes)
    return out


_VIDEO = GatherScratch()


def _encrypt_video(table: PacketTable, pid: int, cbc: CbcMessages, out: memoryview
                   ) -> tuple[PidPayload, list[bytes | bytearray | memoryview]]:
    """Every PES of the video PID compacted in one reused buffer (:func:`gather_pid`), all
    encrypted there at once (:func:`encrypt_h264_run`), the buffer put back in packet layout
    for the remux to write in one scatter. Returns the PID's payload and per PES: the very
    ``PesUnit.data`` when it kept its size (the written-back buffer holds it), a new
    ``bytearray`` (emulation prevention added, PES_packet_length fixed) when it grew."""
    g = gather_pid(table, pid, scratch=_VIDEO, slack=64)
    units = g.units
    new: list[bytes | bytearray | memoryview] = [u.data for u in units]
    if not units:
        return g, new
    first = units[0].data
    assert isinstance(first, memoryview) and isinstance(first.obj, bytearray)
    assert g.unit_at is not None
    buf = first.obj
    arr = np.frombuffer(buf, dtype=np.uint8)
    lens = np.fromiter((len(u.data) for u in units), dtype=np.intp, count=len(units))
    pes_start = np.array(g.unit_at, dtype=np.intp)
    pes_end = pes_start + lens
    es_start = pes_start + 9 + arr[pes_start + 8]
    # each PES's stream starts with a start code (2+ zero bytes, then 01): vectorised for the
    # usual 00 00 01 / 00 00 00 01, the regex for anything else
    a0, a1, a2, a3 = (arr[es_start + i] for i in range(4))
    usual = ((a0 == 0) & (a1 == 0) & (((a2 == 1) & (es_start + 2 < pes_end))
                                      | ((a2 == 0) & (a3 == 1) & (es_start + 3 < pes_end))))
    for k in np.flatnonzero(~usual & (pes_end > es_start)).tolist():
        start, end = int(es_start[k]), int(pes_end[k])
        zeros = _LEADING_ZEROS.match(buf, start, end)
        z = (zeros.end() if zeros else start) - start
        if z < 2 or start + z >= end or buf[start + z] != 1:
            u = units[k]
            raise CodecError(f"video PES does not start with an Annex B start code (PID "
                             f"0x{u.pid:04x}, packet {u.first_packet}): NAL units split "
                             "across PES cannot be encrypted")
    cuts, touched = encrypt_h264_run(buf, np.stack((es_start, pes_end), axis=1), cbc)
    if not touched.size:
        return g, new  # nothing changed: ``out`` holds it all
    mv = memoryview(buf)
    if not cuts.size:
        g.uncompact(table)  # the remux writes ``body`` back
        return g, new
    grown = sorted_unique(np.searchsorted(pes_start, cuts, side="right") - 1).tolist()
    bounds_at = [*np.searchsorted(cuts, pes_start[grown]).tolist(), len(cuts)]
    cut_list = cuts.tolist()
    for j, k in enumerate(grown):
        a, b = int(pes_start[k]), int(pes_end[k])
        c0 = bounds_at[j]
        c1 = bounds_at[j + 1]
        edges = [a, *cut_list[c0:c1], b]
        pes = bytearray(b"\x03".join([mv[x:y] for x, y in itertools.pairwise(edges)]))
        u = units[k]
        set_pes_length(pes, was_unbounded=(u.data[4] | u.data[5]) == 0, pid=u.pid)
        new[k] = pes
    g.uncompact(table)
    return g, new


def _remux_pid(table: PacketTable, g: PidPayload,
               new: Sequence[bytes | bytearray | memoryview], *,
               out: memoryview, splices: dict[int, bytes], keep_cc: bool) -> None:
    """Write the packets of one PID into ``out`` (the segment being edited, in place):
    same-size PES with one vectorised scatter of ``g.body`` (skipped when ``out`` holds them
    already: ``new[k] is units[k].data`` and the body is not ``dirty``), grown PES
    re-packetised (packets beyond the original ones go to ``splices``, keyed by the packet they
    follow), CC shifted after inserted packets (a whole-array add)."""
    units = g.units
    if not units:
        return
    rooms = {k: packet_room(table, u) for k, (u, b) in enumerate(zip(units, new, strict=True))
             if len(b) > len(u.data)}  # grown PES: their packets' room, read once
    adds = [min_new_packets(table, u, len(b), room=rooms.get(k))
            for k, (u, b) in enumerate(zip(units, new, strict=True))]
    pad = (-sum(adds)) % 16 if keep_cc else 0
    if pad:
        slack = [len(b) - len(u.packets) - a for u, b, a in zip(units, new, adds, strict=True)]
        best = max(range(len(units)), key=lambda k: slack[k])
        if slack[best] >= pad:
            adds[best] += pad
        # else: too little data to pad; the next segment's first CC on this PID then jumps
    moved = [k for k, (u, b) in enumerate(zip(units, new, strict=True))
             if adds[k] or len(b) != len(u.data)]
    rows = np.frombuffer(out, dtype=np.uint8).reshape(-1, PACKET_SIZE)
    # same-size PES: same layout, new payload bytes (moved ones keep theirs until rewritten)
    if len(moved) < len(units):
        gone = set(moved)
        flat = memoryview(g.body.reshape(-1))  # type: ignore[arg-type]
        copied = False
        for k, (u, b) in enumerate(zip(units, new, strict=True)):
            if b is u.data or k in gone:
                continue  # unchanged (``out`` holds it already) or rewritten below
            src = memoryview(b)
            pos = 0
            for lo, hi in g.unit_ranges[k]:
                flat[lo:hi] = src[pos : pos + hi - lo]
                pos += hi - lo
            copied = True
        if copied or g.dirty:
            rows[g.payload_packets, 4:] = g.body
    # packets after a PES's last packet follow the packets added to it
    if any(adds):
        lasts = np.array([u.packets[-1] for u in units], dtype=np.intp)
        total = np.concatenate(([0], np.cumsum(adds)))
        shift = total[np.searchsorted(lasts, g.indices, side="left")]
        keep = (shift % 16) != 0
        if moved:
            rewritten = np.zeros(table.count, dtype=np.bool_)
            rewritten[[i for k in moved for i in units[k].packets]] = True
            keep &= ~rewritten[g.indices]
        at = g.indices[keep]
        cc = rows[at, 3]
        rows[at, 3] = (cc & 0xF0) | ((cc + (shift[keep] % 16).astype(np.uint8)) & 0x0F)
        shifts = shift[np.searchsorted(g.indices, [units[k].first_packet for k in moved])]
    else:
        shifts = np.zeros(len(moved), dtype=np.intp)
    for k, sh in zip(moved, shifts.tolist(), strict=True):
        u = units[k]
        pes = new[k]
        if pes is u.data and g.unit_at is not None and not g.moves:
            # a same-size PES that takes the CC padding: its view into the compacted body
            # went stale when the body was put back in packet layout; its bytes are there
            flat_body = memoryview(g.body.reshape(-1))  # type: ignore[arg-type]
            pes = b"".join([flat_body[lo:hi] for lo, hi in g.unit_ranges[k]])
        produced = repacketise(table, u, pes, adds[k], int(sh), room=rooms.get(k))
        rows[u.packets] = produced[: len(u.packets)]
        if adds[k]:
            splices[u.packets[-1]] = produced[len(u.packets) :].tobytes()


def _parts(out: memoryview, splices: dict[int, bytes]) -> list[Part]:
    """The edited segment as consecutive pieces: slices of ``out`` with the added packets
    spliced in after the packets they follow."""
    if not splices:
        return [out]
    parts: list[Part] = []
    prev = 0
    for i in sorted(splices):
        end = (i + 1) * PACKET_SIZE
        parts += (out[prev:end], splices[i])
        prev = end
    parts.append(out[prev:])
    return parts


def _process(data: bytes | bytearray | memoryview, key: bytes, iv: bytes, *, encrypt: bool,
             strict: bool, keep_cc: bool, setup_cache: dict[int, bytes] | None,
             lock: threading.Lock | None, cbc: CbcMessages | None = None) -> bytes:
    """One segment in, one new ``bytes`` out (a copy into the per-thread work buffer, the
    in-place pass, one join)."""
    _check_key_iv(key, iv)
    n = len(memoryview(data).cast("B")) if isinstance(data, memoryview) else len(data)
    with memoryview(_SCRATCH.get(n))[:n] as work:
        work[:] = data if not isinstance(data, memoryview) else data.cast("B")
        return b"".join(_process_in_place(work, key, iv, encrypt=encrypt, strict=strict,
                                          keep_cc=keep_cc, setup_cache=setup_cache,
                                          lock=lock, cbc=cbc))


def _process_in_place(out: memoryview, key: bytes, iv: bytes, *, encrypt: bool, strict: bool,
                      keep_cc: bool, setup_cache: dict[int, bytes] | None,
                      lock: threading.Lock | None, cbc: CbcMessages | None = None
                      ) -> list[Part]:
    """Edit the segment in ``out`` (writable) in place; returns the output as pieces: slices
    of ``out`` and the packets added to grown PES. ``cbc``: a :class:`CbcMessages` for
    ``key``/``iv`` in this direction to reuse (one per thread: contexts are not thread-safe)."""
    _check_key_iv(key, iv)
    if cbc is None:
        cbc = CbcMessages(key, iv, encrypt=encrypt)
    table = index_packets(out)
    program = find_program(table)
    plans = stream_plans(program.pmt, encrypt=encrypt, strict=strict)
    if not plans:
        if encrypt:
            raise UnsupportedMediaError("no stream in the segment can be SAMPLE-AES encrypted")
        return [out]
    splices: dict[int, bytes] = {}
    setups: dict[int, bytes] = {}
    for plan in plans:
        new: Sequence[bytes | bytearray | memoryview]
        if plan.codec == H264 and encrypt:
            g, new = _encrypt_video(table, plan.pid, cbc, out)
        else:
            g = gather_pid(table, plan.pid)
            units = g.units
            if plan.codec == H264:
                new = _crypt_video(units, key, iv, encrypt)
            elif units:
                new, setup = _crypt_audio(table, plan, units, key, iv, encrypt=encrypt, cbc=cbc)
                if setup:
                    setups[plan.pid] = setup
            else:
                new = []
        _remux_pid(table, g, new, out=out, splices=splices, keep_cc=keep_cc and encrypt)
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
    return _parts(out, splices)


class SampleAesEncryptor:
    """SAMPLE-AES for MPEG-TS, one whole segment at a time.

    ``key`` and ``iv`` are raw 16-byte values (``iv``: the ``EXT-X-KEY`` IV, or
    :func:`~speke_packager.media.aes128.iv_from_sequence` of the segment's sequence number).
    Segments are independent: instances may be shared by threads, and separate instances in
    separate processes produce the same bytes. The only thing kept between calls is the audio
    setup information per PID, used for a segment that happens to hold no audio frame (and, per
    thread, a cipher context and work buffers: reuse changes no byte).

    File to file, use :meth:`encrypt_file` (or :meth:`encrypt_segment_parts`): they reuse one
    per-thread buffer instead of allocating the segment twice per call.

    ``strict``: raise :class:`UnsupportedMediaError` for streams that would pass through clear.
    """

    def __init__(self, key: bytes, iv: bytes, *, strict: bool = False) -> None:
        _check_key_iv(key, iv)
        self._key = key
        self._iv = iv
        self._strict = strict
        self._setups: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per thread: (iv, CbcMessages) of the last segment

    def _cbc(self, iv: bytes) -> CbcMessages:
        """A cipher context for ``iv``, kept per thread (building one costs more than a small
        segment's audio): every message restarts at the IV, so reuse changes no byte."""
        last = getattr(self._local, "cbc", None)
        if last is not None and last[0] == iv:
            return last[1]  # type: ignore[no-any-return]
        cbc = CbcMessages(self._key, iv, encrypt=True)
        self._local.cbc = (iv, cbc)
        return cbc

    def __repr__(self) -> str:
        return f"SampleAesEncryptor(key=<hidden>, strict={self._strict})"

    def encrypt_segment(self, data: bytes | memoryview, *, iv: bytes | None = None) -> bytes:
        """Encrypt one TS segment (whole 188-byte packets with a PAT and a PMT).

        ``iv`` overrides the instance IV for this segment (per-segment IVs)."""
        use = self._iv if iv is None else iv
        _check_key_iv(self._key, use)
        return _process(data, self._key, use, encrypt=True, strict=self._strict, keep_cc=True,
                        setup_cache=self._setups, lock=self._lock, cbc=self._cbc(use))


    def encrypt_segment_parts(self, data: bytes | bytearray | memoryview, *,
                              iv: bytes | None = None, in_place: bool = False) -> list[Part]:
        """:meth:`encrypt_segment` as consecutive pieces, not joined (write them with
        ``os.writev`` or ``writelines``); same bytes, without a segment-sized allocation.

        The pieces are slices of a per-thread work buffer that holds a copy of ``data``: they
        stay valid until the next call on the same thread (any SAMPLE-AES method), so write or
        copy them first. ``in_place``: ``data`` (a writable buffer owned by the caller) is
        edited itself and the pieces are slices of it, with no copy at all."""
        key_iv = self._iv if iv is None else iv
        if in_place:
            view = memoryview(data)
            if view.readonly:
                raise UsageError("in-place encryption needs a writable buffer")
            return self._in_place(view.cast("B") if view.format != "B" or view.ndim != 1
                                  else view, key_iv)
        _check_key_iv(self._key, key_iv)
        src = memoryview(data).cast("B") if isinstance(data, memoryview) else data
        n = len(src)
        work = memoryview(_SCRATCH.get(n))[:n]
        work[:] = src
        return self._in_place(work, key_iv)

    def _in_place(self, buf: memoryview, iv: bytes) -> list[Part]:
        _check_key_iv(self._key, iv)
        return _process_in_place(buf, self._key, iv, encrypt=True, strict=self._strict,
                                 keep_cc=True, setup_cache=self._setups, lock=self._lock,
                                 cbc=self._cbc(iv))

    def encrypt_file(self, src: str | os.PathLike[str] | BinaryIO,
                     dst: str | os.PathLike[str] | BinaryIO, *, iv: bytes | None = None) -> int:
        """Encrypt one segment file (or readable binary stream) ``src`` into ``dst``; returns
        the bytes written.

        The segment is read with ``readinto`` into a reused per-thread buffer, encrypted there
        in place and written as pieces (``os.writev`` to a path, ``write`` per piece to a
        stream): no segment-sized allocation per call. A path ``dst`` is written under a
        temporary name beside it and renamed over it when complete (not fsynced), so it is never
        seen half-written; a stream ``dst`` gets whatever was written before an error (the
        caller's concern). Errors are typed: input problems raise :class:`MediaError` (e.g.
        :class:`TsFormatError` for a truncated packet) before anything is written, write
        problems :class:`OutputError`."""
        key_iv = self._iv if iv is None else iv
        _check_key_iv(self._key, key_iv)
        buf = _read_segment(src)
        parts = self._in_place(buf, key_iv)
        if isinstance(dst, (str, os.PathLike)):
            return write_parts_atomic(os.fspath(dst), parts)
        total = 0
        for p in parts:
            dst.write(p)
            total += len(p)
        return total

    def encrypt_stream(self, src: BinaryIO, dst: BinaryIO, *, iv: bytes | None = None) -> int:
        """Read one segment from ``src``, write it encrypted to ``dst``; returns bytes written.

        SAMPLE-AES needs whole PES packets and the PMT, so the segment is held in memory (a
        segment, never a whole asset), in a reused per-thread buffer: see :meth:`encrypt_file`."""
        return self.encrypt_file(src, dst, iv=iv)


def _read_segment(src: str | os.PathLike[str] | BinaryIO) -> memoryview:
    """The whole of ``src`` in the per-thread work buffer (``readinto``, no other copy)."""
    if isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        try:
            with open(name, "rb", buffering=0) as fh:
                return _SCRATCH.fill(fh.readinto, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            raise MediaError(f"cannot read segment {name}: {exc.strerror or exc}") from exc
    readinto = getattr(src, "readinto", None)
    if readinto is None:  # a minimal stream: one read, one copy into the work buffer
        data = src.read()
        view = memoryview(_SCRATCH.get(len(data)))[: len(data)]
        view[:] = data
        return view
    hint = 0
    try:
        st = os.fstat(src.fileno())
        if stat.S_ISREG(st.st_mode):
            hint = max(0, st.st_size - src.tell())
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass
    return _SCRATCH.fill(readinto, hint)


def encrypt_sample_aes(data: bytes | memoryview, key: bytes, iv: bytes) -> bytes:
    """SAMPLE-AES-encrypt one TS segment; see :class:`SampleAesEncryptor`."""
    return _process(data, key, iv, encrypt=True, strict=False, keep_cc=True, setup_cache=None,
                    lock=None)


def decrypt_sample_aes(data: bytes, key: bytes, iv: bytes) -> bytes:
    """Undo :func:`encrypt_sample_aes` (stream types and descriptors restored, elementary
    streams decrypted). Meant for round-trip tests and verification, not for playback."""
    return _process(data, key, iv, encrypt=False, strict=False, keep_cc=False, setup_cache=None,
                    lock=None)
