"""Mp4Encryptor: init segment + keys -> encrypted init; media segment -> encrypted segment.

Segments are independent: IVs derive from (seed, KID, track, segment_index, fragment, sample),
so any number of segments can be encrypted in parallel, in any order, with the same result.
The object holds only immutable values and pickles to worker processes.

A segment goes through :meth:`Mp4Encryptor.encrypt_segment` (bytes in, joined bytes out),
:meth:`~Mp4Encryptor.encrypt_segment_parts` (the output as pieces, optionally encrypted in
place in the caller's buffer) or :meth:`~Mp4Encryptor.encrypt_segment_file` (file to file: a
reused per-thread read buffer, in place, one ``writev``; no segment-sized allocation per call,
the fastest). All three give the same bytes. Each traf's samples are mapped first (clear
input), then encrypted at once by a :mod:`.engine` engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO
from uuid import UUID

import numpy as np

from ..._io import ThreadScratch, write_parts_atomic, writev_all
from ...constants import Scheme
from ...errors import (
    CodecError,
    MediaError,
    Mp4FormatError,
    OutputError,
    UnsupportedMediaError,
    UsageError,
)
from ...model import ContentKey, TrackKind
from ..subsamples import CodecFamily, MapSession, SubsampleMapper, Subsamples
from .boxes import Box, full_box, iter_boxes
from .engine import CbcsEngine, CencEngine
from .fragment import Traf, parse_moof, write_moof
from .init import Protection, TrackSetup, parse_init, protect_init, pssh_box
from .segment import SegmentRewriter
from .stream import encrypt_stream

__all__ = ["Mp4Encryptor"]

_TRACK_BITS, _SEGMENT_BITS, _FRAGMENT_BITS, _SAMPLE_BITS = 8, 30, 8, 18
_MASK64 = (1 << 64) - 1

Source = BinaryIO | str | os.PathLike[str]
"""A file to read or write: a path, or an open binary stream."""

# one work buffer per thread: encrypt_segment copies a cbcs input there (the gathered ranges'
# ciphertext is scattered back into it) and encrypt_segment_file reads into it (no fresh
# segment-sized memory per call: its page faults cost about as much as the cipher); both are
# done with it when they return
_WORK = ThreadScratch(cap=256 << 20)
# cenc: the cipher writes each sample from the input straight into this per-thread output
# buffer (same layout as the segment), and the result's sample pieces are views of it
_OUT = ThreadScratch(cap=256 << 20)


def _seig(kid: UUID, *, protected: bool, iv_size: int, constant_iv: bytes | None,
          crypt: int, skip: int) -> bytes:
    entry = struct.pack(">BBBB", 0, (crypt << 4) | skip, int(protected), iv_size) + kid.bytes
    if protected and iv_size == 0 and constant_iv is not None:
        entry += bytes([len(constant_iv)]) + constant_iv
    return entry


_SUBS_STRUCTS: dict[int, struct.Struct] = {}


def _subs_record(iv: bytes, subs: Subsamples) -> bytes:
    """senc record tail: ``iv`` then subsample_count and (clear u16, protected u32) pairs."""
    n = len(subs)
    st = _SUBS_STRUCTS.get(n)
    if st is None:
        st = _SUBS_STRUCTS.setdefault(n, struct.Struct(">H" + "HI" * n))
    return iv + st.pack(n, *[v for pair in subs for v in pair])


def _map(mapper: Callable[[memoryview], Subsamples | None], mv: memoryview, start: int,
         size: int, where: tuple[int, int, int]) -> Subsamples | None:
    try:
        return mapper(mv[start:start + size])
    except CodecError as exc:
        tid, fragment, index = where
        raise CodecError(f"track {tid}, fragment {fragment}, sample {index}: {exc}") from exc


def _traf_span(traf: Traf, base: int) -> tuple[int, int] | None:
    """``(start, end)`` of a traf's samples when they lie end to end; ``(-1, -1)`` when they
    are in order and disjoint but with gaps; None when they are out of order or overlap.

    The samples of one trun lie end to end by construction, so only trun boundaries count."""
    offsets, sizes = traf.offsets, traf.sizes
    k = 0
    end = -1
    gaps = False
    for t in traf.truns:
        if not t.count:
            continue
        first = offsets[k]
        if k:
            if first < end:
                return None
            gaps = gaps or first != end
        k += t.count
        end = offsets[k - 1] + sizes[k - 1]
    return (-1, -1) if gaps else (base + offsets[0], base + end)


def _senc_records(counts: Sequence[int], values: Sequence[int]) -> tuple[bytes, list[int]]:
    """The senc records of a traf without IVs (``count`` subsamples each: subsample_count and
    (clear u16, protected u32) pairs; -1: no record) packed at once, and their sizes."""
    if not counts:
        return b"", []
    c0 = counts[0]
    if c0 >= 0 and counts.count(c0) == len(counts):  # the usual case: one layout for all
        fmt = ">" + ("H" + "HI" * c0) * len(counts)
        return struct.pack(fmt, *values), [2 + 6 * c0] * len(counts)
    fmt = ">" + "".join("H" + "HI" * c for c in counts if c >= 0)
    return struct.pack(fmt, *values), [2 + 6 * c if c >= 0 else 0 for c in counts]


def _read_all(src: Source) -> memoryview:
    """Everything ``src`` holds (from its current position to EOF) in the thread's reused
    buffer: valid until the next call on this thread."""
    if isinstance(src, (str, os.PathLike)):
        try:
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise MediaError(f"cannot read {os.fspath(src)}: {exc.strerror or exc}") from None
        try:
            size = os.fstat(fd).st_size
            return _fill(lambda view: os.readv(fd, [view]), size, os.fspath(src))
        finally:
            os.close(fd)
    hint = 0
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        hint = os.fstat(src.fileno()).st_size - src.tell()
    readinto = getattr(src, "readinto", None)
    if readinto is None:
        raise UsageError("encrypt_segment_file needs a binary stream with readinto")
    return _fill(readinto, hint, getattr(src, "name", "input"))


def _fill(readinto: Callable[[memoryview], int | None], hint: int, what: object) -> memoryview:
    try:
        return _WORK.fill(readinto, hint)
    except OSError as exc:
        raise MediaError(f"cannot read {what}: {exc.strerror or exc}") from None


def _write_stream(dst: BinaryIO, parts: Sequence[bytes | bytearray | memoryview]) -> int:
    """``parts`` to an open stream: ``os.writev`` on its file descriptor when it has one (after
    a flush; the stream's position is re-read afterwards), else ``writelines``."""
    try:
        fd = dst.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        fd = -1
    if fd < 0:
        dst.writelines(parts)
        return sum(map(len, parts))
    dst.flush()
    total = writev_all(fd, parts)
    if dst.seekable():  # a buffered stream caches its position: tell it where the fd is
        dst.seek(os.lseek(fd, 0, os.SEEK_CUR))
    return total


def seig_boxes(entry: bytes, sample_count: int) -> list[bytes]:
    """``sbgp`` + ``sgpd`` putting every sample of a traf in the traf-local seig entry 1."""
    sbgp = full_box(b"sbgp", 0, 0, b"seig" + struct.pack(">III", 1, sample_count, 0x10001))
    sgpd = full_box(b"sgpd", 1, 0, b"seig" + struct.pack(">II", len(entry), 1) + entry)
    return [sbgp, sgpd]


class Mp4Encryptor:
    """ISO Common Encryption (``cenc`` or ``cbcs``) of fragmented MP4 / CMAF.

    ``keys`` maps track_ID -> key; other tracks stay clear. ``pssh`` are whole pssh boxes put
    in the moov. ``iv_seed`` makes IVs deterministic (empty: a random seed per object); cenc
    IVs also depend on the init segment (renditions sharing a key must not share both seed and
    init). ``iv_size`` is the cenc per-sample IV size (8 or 16); ``constant_iv`` the cbcs IV
    (default: the key's own IV, else derived from the seed and KID). ``clear_lead`` keeps the
    clear sample entry as description 2 in the init, so segments may be written with
    ``clear=True`` (Chrome refuses a clear-to-encrypted switch without it)."""

    def __init__(self, init: bytes | memoryview, scheme: Scheme, keys: Mapping[int, ContentKey],
                 *, pssh: Sequence[bytes] = (), iv_seed: bytes = b"", iv_size: int = 8,
                 constant_iv: bytes | None = None, clear_lead: bool = False) -> None:
        if scheme not in (Scheme.CENC, Scheme.CBCS):
            raise UsageError(f"Mp4Encryptor supports cenc and cbcs, not {scheme.value}")
        if scheme is Scheme.CENC and iv_size not in (8, 16):
            raise UsageError("cenc per-sample IV size must be 8 or 16")
        if constant_iv is not None and len(constant_iv) not in (8, 16):
            raise UsageError("constant IV must be 8 or 16 bytes")
        parsed = parse_init(init)
        if parsed.moov.find(b"mvex") is None:
            raise UnsupportedMediaError(
                "the init segment has no mvex box: the file is not fragmented (remux it to "
                "fragmented MP4/CMAF first)")
        self.scheme = scheme
        self.iv_size = iv_size if scheme is Scheme.CENC else 0
        self._seed = bytes(iv_seed) if iv_seed else os.urandom(16)
        # per-sample IVs also depend on the init, so renditions sharing a key and a seed differ
        self._init_digest = hashlib.sha256(bytes(init)).digest()
        moov = next(b for b in iter_boxes(init, path="init") if b.type == b"moov")
        self.moov_digest = hashlib.sha256(bytes(memoryview(init)[moov.start:moov.end])).digest()
        self._constant_iv = constant_iv
        self._tracks: dict[int, TrackSetup] = dict(parsed.tracks)
        self._track_index = {tid: i for i, tid in enumerate(parsed.tracks)}
        self._keys: dict[int, ContentKey] = {}
        self._mappers: dict[int, SubsampleMapper] = {}
        protections: dict[int, Protection] = {}
        for tid, key in keys.items():
            track = self._tracks.get(tid)
            if track is None:
                raise UsageError(f"no track {tid} in the init segment "
                                 f"(tracks: {', '.join(map(str, self._tracks))})")
            if track.protection is not None:
                raise UnsupportedMediaError(f"track {tid} is already encrypted")
            if track.kind not in (TrackKind.VIDEO, TrackKind.AUDIO):
                raise UnsupportedMediaError(
                    f"track {tid} ({track.fourcc.decode('latin-1')}) is not audio or video")
            if self._track_index[tid] >= 1 << _TRACK_BITS:
                raise UnsupportedMediaError("more than 256 tracks in one init segment")
            self._mappers[tid] = track.mapper(scheme)
            self._keys[tid] = key
            protections[tid] = self._protection(tid, key)
        for box in pssh:
            pssh_box(bytes(box))
        self._default_sizes = {t.track_id: t.default_sample_size for t in self._tracks.values()}
        self.clear_lead = clear_lead
        self._encrypted_init = protect_init(parsed, protections, [bytes(b) for b in pssh],
                                            clear_entry=clear_lead)

    # -- keys and IVs ---------------------------------------------------------------------------
    def _pattern(self, tid: int) -> tuple[int, int]:
        if self.scheme is Scheme.CBCS and self._mappers[tid].family is not CodecFamily.AUDIO:
            return 1, 9
        return 0, 0

    def _cbcs_iv(self, key: ContentKey) -> bytes:
        if self._constant_iv is not None:
            return self._constant_iv
        if key.iv is not None:
            return key.iv
        # Library default only: pipeline always passes protection's IV (constant_iv or key.iv).
        return hashlib.sha256(b"speke-packager/cbcs-iv" + self._seed + key.kid.bytes).digest()[:16]

    def _protection(self, tid: int, key: ContentKey) -> Protection:
        crypt, skip = self._pattern(tid)
        const = self._cbcs_iv(key) if self.scheme is Scheme.CBCS else None
        return Protection(self.scheme, key.kid, self.iv_size, const, crypt, skip)

    def _iv_start(self, kid: UUID, tid: int, segment_index: int, fragment: int) -> tuple[int, int]:
        """(high 64 bits of the fragment's first IV, low 64 bits for 16-byte IVs).

        The high half is mask(seed, KID) + (track | segment | fragment | sample) mod 2**64:
        distinct for every sample under one key, whatever order segments are encrypted in."""
        if not 0 <= segment_index < 1 << _SEGMENT_BITS:
            raise UsageError(f"segment_index {segment_index} out of range")
        if fragment >= 1 << _FRAGMENT_BITS:
            raise UnsupportedMediaError(f"more than {1 << _FRAGMENT_BITS} fragments in a segment")
        digest = hashlib.sha256(b"speke-packager/cenc-iv" + self._seed + self._init_digest
                                + kid.bytes).digest()
        mask = int.from_bytes(digest[:8], "big")
        low = int.from_bytes(digest[8:16], "big") & ((1 << 62) - 1)
        layout = (((self._track_index[tid] << _SEGMENT_BITS | segment_index) << _FRAGMENT_BITS
                   | fragment) << _SAMPLE_BITS)
        return (mask + layout) & _MASK64, low

    # -- public API -----------------------------------------------------------------------------
    def encrypted_init(self) -> bytes:
        """The init segment with protected sample entries and the pssh boxes."""
        return self._encrypted_init

    def constant_iv(self, key: ContentKey) -> bytes | None:
        """The cbcs constant IV used with ``key`` (for HLS ``IV=`` attributes); None for cenc.

        It depends only on ``constant_iv``, the key's own IV, or the seed and KID, so every
        rendition encrypted with the same seed and key shares it."""
        return self._cbcs_iv(key) if self.scheme is Scheme.CBCS else None

    def encrypt_segment(self, data: bytes | bytearray | memoryview, *, segment_index: int,
                        clear: bool = False, keys: Mapping[int, ContentKey] | None = None,
                        pssh: Sequence[bytes] = ()) -> bytes:
        """Encrypt one media segment (``[styp] [sidx] (moof mdat)+``; other boxes pass).

        ``clear``: leave samples clear (clear lead, signalled by a seig group with
        isProtected=0). ``keys``: per-track keys for this segment (rotation: KIDs other than the
        init's are signalled per fragment with sbgp/sgpd seig). ``pssh``: boxes for the moofs.

        cenc: the samples are encrypted from ``data`` into a reused per-thread buffer; cbcs:
        ``data`` is copied into one and the ciphertext scattered there. Only the result is new
        memory."""
        src = memoryview(data)
        if src.ndim != 1 or src.format != "B":
            src = src.cast("B")
        if self.scheme is not Scheme.CBCS:
            return self._rewrite(src, segment_index=segment_index, clear=clear, keys=keys,
                                 pssh=pssh, scratch=True).result()
        work = _WORK.view(len(src))
        work[:] = src
        try:
            return self._rewrite(work, segment_index=segment_index, clear=clear, keys=keys,
                                 pssh=pssh, in_place=True).result()
        finally:
            del work

    def encrypt_segment_parts(self, data: bytes | bytearray | memoryview, *,
                              segment_index: int, clear: bool = False, in_place: bool = False
                              ) -> list[bytes | bytearray | memoryview]:
        """:meth:`encrypt_segment` as consecutive pieces, not joined (write them with
        ``writelines`` or ``os.writev``). ``in_place``: ``data`` is a writable buffer owned by
        the caller, which cbcs may change (its ranges' ciphertext is scattered there), and the
        pieces are slices of it and of a reused per-thread output buffer (cenc): write them
        before changing or reusing ``data`` and before the next call in this thread."""
        return self._rewrite(data, segment_index=segment_index, clear=clear,
                             in_place=in_place, scratch=in_place).parts()

    def encrypt_segment_file(self, src: Source, dst: Source, *, segment_index: int,
                             clear: bool = False) -> int:
        """:meth:`encrypt_segment` from file to file; returns the bytes written.

        ``src`` (a path or a binary stream, read to EOF) goes into a reused per-thread buffer,
        its samples are encrypted there in place and the pieces are written with
        ``os.writev`` (``writelines`` for a stream without a file descriptor): no segment-sized
        allocation or join per call. A path ``dst`` is written under a temporary name in the
        same folder and renamed when complete; nothing is written when encryption fails (the
        same typed errors as :meth:`encrypt_segment`). Read failures raise
        :class:`~speke_packager.errors.MediaError`, write failures
        :class:`~speke_packager.errors.OutputError`."""
        data = _read_all(src)
        parts = self._rewrite(data, segment_index=segment_index, clear=clear,
                              in_place=True, scratch=True).parts()
        try:
            if isinstance(dst, (str, os.PathLike)):
                return write_parts_atomic(dst, parts)
            try:
                return _write_stream(dst, parts)
            except OSError as exc:
                name = getattr(dst, "name", "output")
                raise OutputError(f"cannot write {name}: {exc.strerror or exc}") from None
        finally:
            del parts, data

    def _rewrite(self, data: bytes | bytearray | memoryview, *, segment_index: int,
                 clear: bool = False, keys: Mapping[int, ContentKey] | None = None,
                 pssh: Sequence[bytes] = (), in_place: bool = False, scratch: bool = False
                 ) -> SegmentRewriter:
        """The segment's new moofs and sample patches, not yet assembled. ``in_place``: cbcs
        ciphertext is scattered into ``data`` (writable, owned by the caller) instead of into
        patches. ``scratch``: cenc writes the encrypted samples into this thread's reused
        output buffer (else into fresh memory); the patches are views of it, valid until the
        next call in this thread."""
        if in_place and memoryview(data).readonly:
            raise UsageError("in-place encryption needs a writable buffer")
        seg_keys = dict(self._keys)
        for tid, key in (keys or {}).items():
            if tid not in self._keys:
                raise UsageError(f"track {tid} is clear in the init segment; it cannot get a key")
            seg_keys[tid] = key
        if clear and not self.clear_lead:
            raise UsageError("clear segments need an init with a clear sample entry: "
                             "construct the Mp4Encryptor with clear_lead=True")
        moof_pssh = [pssh_box(bytes(b)) for b in pssh]
        rw = SegmentRewriter(data)
        sessions: dict[int, MapSession] = {}
        engines: dict[tuple[int, UUID], CencEngine | CbcsEngine] = {}
        out: memoryview | None = None  # cenc output buffer, made on the first encrypted traf
        fragment = 0
        for box in rw.boxes:
            if box.type != b"moof":
                continue
            node, trafs = parse_moof(rw.buf, box, self._default_sizes)
            done: dict[int, int] = {}  # samples already given IVs per track in this moof
            for traf in trafs:
                self._check_traf(traf)
                rw.check_samples(box, traf)
                tid = traf.track_id
                if tid not in self._keys:
                    continue
                if clear:
                    self._clear_traf(traf)
                    continue
                if tid not in sessions:
                    sessions[tid] = self._mappers[tid].session()
                key = seg_keys[tid]
                engine = engines.get((tid, key.kid))
                if engine is None:
                    if out is None and self.scheme is not Scheme.CBCS:
                        size = len(rw.buf) + 16  # (the cipher library's output slack)
                        out = _OUT.view(size) if scratch else memoryview(bytearray(size))
                    engine = engines[tid, key.kid] = self._engine(tid, key, in_place=in_place,
                                                                  out=out)
                self._encrypt_traf(rw, box, traf, key=key, session=sessions[tid],
                                   engine=engine,
                                   segment_index=segment_index, fragment=fragment,
                                   first_sample=done.get(tid, 0))
                done[tid] = done.get(tid, 0) + traf.sample_count
            new, delta = write_moof(node, trafs, box.size, moof_extra=moof_pssh)
            rw.replace(box, new, delta)
            fragment += 1
        return rw

    def encrypt_stream(self, src: BinaryIO, dst: BinaryIO, *, first_segment_index: int = 0
                       ) -> None:
        """Encrypt a whole fragmented file box by box (moov -> encrypted moov, each moof+mdat
        pair as one segment, sidx and mfra patched); memory is bounded by one fragment."""
        encrypt_stream(self, src, dst, first_segment_index=first_segment_index)

    # -- per traf -------------------------------------------------------------------------------
    def _check_traf(self, traf: Traf) -> None:
        if traf.track_id not in self._tracks:
            raise Mp4FormatError(f"traf for track {traf.track_id}, which the init lacks",
                                 box_path=traf.node.path)
        for c in traf.node.children or []:
            if c.type in (b"senc", b"saiz", b"saio"):
                raise UnsupportedMediaError(f"track {traf.track_id} fragment is already encrypted")

    def _clear_traf(self, traf: Traf) -> None:
        if traf.sample_description_index not in (0, 1):
            raise UnsupportedMediaError(
                f"track {traf.track_id}: fragment uses sample description "
                f"{traf.sample_description_index}")
        traf.new_sdi = 2

    def _engine(self, tid: int, key: ContentKey, *, in_place: bool, out: memoryview | None
                ) -> CencEngine | CbcsEngine:
        if self.scheme is Scheme.CBCS:
            crypt, skip = self._pattern(tid)
            return CbcsEngine(key.key, self._cbcs_iv(key), crypt, skip, in_place=in_place)
        return CencEngine(key.key, out=out)

    def _encrypt_traf(self, rw: SegmentRewriter, moof: Box, traf: Traf, *, key: ContentKey,
                      session: MapSession, engine: CencEngine | CbcsEngine,
                      segment_index: int, fragment: int, first_sample: int = 0) -> None:
        tid = traf.track_id
        crypt, skip = self._pattern(tid)
        iv_size = self.iv_size
        cbcs = self.scheme is Scheme.CBCS
        const_iv = self._cbcs_iv(key) if cbcs else b""
        if not traf.sample_count:
            return
        hi, lo = self._iv_start(key.kid, tid, segment_index, fragment)
        hi += first_sample
        if first_sample + traf.sample_count >= 1 << _SAMPLE_BITS:
            raise UnsupportedMediaError(f"more than {1 << _SAMPLE_BITS} samples in a fragment")
        use_subs = session.m.family is not CodecFamily.AUDIO
        entries: list[bytes] = []
        rec_sizes: list[int] | None = None
        body = b""
        base = moof.start
        mv = rw.buf
        patches = rw.patches
        mapper = session.map
        n = traf.sample_count
        if cbcs:
            eng_b = engine if isinstance(engine, CbcsEngine) else None
            assert eng_b is not None
            starts = [base + off for off in traf.offsets]
            span = _traf_span(traf, base)
            if span is None:  # samples out of order or overlapping: one after the other
                for i, (start, size) in enumerate(zip(starts, traf.sizes, strict=True)):
                    subs = _map(mapper, mv, start, size, (tid, fragment, i)) if use_subs else None
                    eng_b.sample(mv, start, size, subsamples=subs, patches=patches)
                    entries.append(_subs_record(b"", subs) if subs is not None else b"")
            elif not use_subs:  # whole samples (audio): no senc records, lane-parallel CBC
                eng_b.whole_samples(mv, starts, traf.sizes, patches=patches,
                                    contiguous=span[0] >= 0)
                rec_sizes = [0] * n
            else:  # every sample mapped (clear input), then every protected range at once
                positions: list[int] = []
                lengths: list[int] = []
                counts: list[int] = []
                values: list[int] = []  # the senc records' fields, packed once
                i = 0
                try:  # (i names the failing sample)
                    for i, (start, size) in enumerate(  # noqa: B007
                            zip(starts, traf.sizes, strict=True)):
                        subs = mapper(mv[start:start + size])
                        if subs is None:
                            positions.append(start)
                            lengths.append(size)
                            counts.append(-1)
                            continue
                        counts.append(len(subs))
                        values.append(len(subs))
                        pos = start
                        for clear, prot in subs:
                            values.append(clear)
                            values.append(prot)
                            pos += clear
                            if prot:
                                positions.append(pos)
                                lengths.append(prot)
                                pos += prot
                except CodecError as exc:
                    raise CodecError(f"track {tid}, fragment {fragment}, sample {i}: {exc}"
                                     ) from exc
                eng_b.ranges(mv, positions, lengths, span=span if span[0] >= 0 else None,
                             patches=patches)
                body, rec_sizes = _senc_records(counts, values)
        else:
            eng_c = engine if isinstance(engine, CencEngine) else None
            assert eng_c is not None
            if not use_subs:  # whole samples (audio): IVs, keystream and senc per traf
                high0 = hi & _MASK64
                highs_a = np.arange(n, dtype=np.uint64) + np.uint64(high0)  # wraps mod 2**64
                if iv_size == 16:
                    table = np.empty((n, 2), ">u8")
                    table[:, 0] = highs_a
                    table[:, 1] = lo
                else:
                    table = highs_a.astype(">u8")
                eng_c.whole_samples(mv, [base + off for off in traf.offsets], traf.sizes, high0,
                                    lo if iv_size == 16 else 0, patches=patches)
                body = table.tobytes()
                rec_sizes = [iv_size] * n
            else:
                # every sample's IV at once: high halves hi..hi+n-1 (mod 2**64), then low half
                highs = struct.pack(f">{n}Q", *[(hi + i) & _MASK64 for i in range(n)])
                tail = lo.to_bytes(8, "big")
                ivs = ([highs[8 * i:8 * i + 8] + tail for i in range(n)] if iv_size == 16
                       else [highs[8 * i:8 * i + 8] for i in range(n)])
                zero = bytes(8)
                span = _traf_span(traf, base)
                whole = span is not None and span[0] >= 0  # one patch for the traf
                per_sample = None if whole else patches
                for i, (off, size) in enumerate(zip(traf.offsets, traf.sizes, strict=True)):
                    start = base + off
                    iv = ivs[i]
                    subs = _map(mapper, mv, start, size, (tid, fragment, i))
                    eng_c.sample(mv, start, size, iv if iv_size == 16 else iv + zero,
                                 subsamples=subs, patches=per_sample)
                    entries.append(_subs_record(iv, subs) if subs is not None else iv)
                if whole and span is not None and span[1] > span[0]:
                    patches.append((span[0], eng_c.output[span[0]:span[1]]))
        if rec_sizes is None:
            body = b"".join(entries)
            rec_sizes = [len(e) for e in entries]
        flags = 2 if use_subs else 0
        senc = full_box(b"senc", 0, flags, struct.pack(">I", n) + body)
        boxes: list[bytes] = []
        default = self._protection(tid, self._keys[tid])
        if key.kid != default.kid or (cbcs and const_iv != default.constant_iv):
            boxes += seig_boxes(_seig(key.kid, protected=True, iv_size=iv_size,
                                      constant_iv=const_iv if cbcs else None, crypt=crypt,
                                      skip=skip), traf.sample_count)
        sizes = rec_sizes
        if sizes and max(sizes) > 255:
            raise UnsupportedMediaError(
                f"track {tid}: a sample has too many subsamples for saiz ({max(sizes)} bytes)")
        if any(sizes):
            if len(set(sizes)) == 1:
                saiz = full_box(b"saiz", 0, 0, struct.pack(">BI", sizes[0], len(sizes)))
            else:
                saiz = full_box(b"saiz", 0, 0, struct.pack(">BI", 0, len(sizes)) + bytes(sizes))
            saio = full_box(b"saio", 0, 0, struct.pack(">II", 1, 0))
            boxes += [saiz, saio]
        boxes.append(senc)
        traf.extra.extend(boxes)

    def __repr__(self) -> str:
        kids = ", ".join(f"{t}:{k.kid}" for t, k in self._keys.items())
        return f"Mp4Encryptor({self.scheme.value}, {kids})"

