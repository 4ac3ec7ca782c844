"""Fragment a progressive MP4/MOV (its :mod:`.sample_table`) into CMAF tracks: one init segment
per track and one ``styp``/``moof``/``mdat`` media segment per cut.

Video is cut at sync samples, at the first sync sample at or after each multiple of the segment
duration (no drift); audio is cut at the first video track's cut times (its own multiples of
the duration when there is no video). Every segment's boxes are built from the sample arrays in
a few numpy steps; its sample bytes are read from the input with ``preadv`` straight into a
reused per-thread buffer, one read per run of adjacent samples. The segment is then the input of
the same fMP4 encryption as any clear CMAF segment, in that buffer: no file between the two.

The edit list of a track is carried into its init segment as it is (a start delay, or the
composition offset of the first frame), so players present the same frames as the source.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..._io import ThreadScratch
from ...errors import MediaError, Mp4FormatError
from .boxes import box_bytes, full_box
from .sample_table import Movie, TrackTable

__all__ = ["TrackFragmenter", "cut_movie"]

_SEG = ThreadScratch(cap=512 << 20)  # the segment being built, per thread / worker
_SYNC_FLAGS = 0x02000000  # sample_depends_on = 2 (an I picture)
_NON_SYNC_FLAGS = 0x01010000  # depends on others, sample_is_non_sync_sample
_EPS = 1e-9
# every output track is a file of its own with track ID 1, as CMAF packagers write them (Shaka
# Packager 3 crashes on a cbcs track with another ID)
TRACK_ID = 1


def _media_time(t: TrackTable) -> tuple[int, int]:
    """(media_time, empty delay in movie units) of the track's edit list, (0, 0) without."""
    if t.elst is None:
        return 0, 0
    version = t.elst[8]
    size = 20 if version == 1 else 12
    (n,) = struct.unpack_from(">I", t.elst, 12)
    fmt = ">Qq" if version == 1 else ">Ii"
    delay = 0
    for i in range(n):
        dur, mt = struct.unpack_from(fmt, t.elst, 16 + i * size)
        if mt == -1:
            delay += dur
        else:
            return int(mt), delay
    return 0, delay


def _presentation(t: TrackTable, movie_ts: int, idx: np.ndarray) -> np.ndarray:
    """Presentation times in seconds of the samples ``idx`` (edit list applied)."""
    mt, delay = _media_time(t)
    pts = t.dts[idx] + t.cts[idx].astype(np.int64) - mt
    out: np.ndarray = pts / t.timescale + delay / movie_ts
    return out


def _cuts(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Indices into ``times`` (ascending) of the first time at or after each target."""
    at = np.searchsorted(times, targets - _EPS, side="left")
    return np.unique(at[at < times.shape[0]])


def cut_movie(movie: Movie, seconds: float) -> dict[int, np.ndarray]:
    """Per track ID, the first sample index of every segment (starting with 0)."""
    out: dict[int, np.ndarray] = {}
    videos = [t for t in movie.tracks if t.kind == "video"]
    boundary: np.ndarray | None = None  # seconds of the first video track's cuts
    for v in videos:
        sync_idx = np.flatnonzero(v.sync)
        times = _presentation(v, movie.timescale, sync_idx)
        # presentation order of sync samples is decode order in real files; keep monotonic
        times = np.maximum.accumulate(times)
        end = float(times[-1]) + seconds
        targets = np.arange(1, math.ceil(end / seconds) + 1) * seconds + float(times[0])
        starts = sync_idx[_cuts(times, targets)]
        starts = np.unique(np.concatenate([[0], starts])).astype(np.int64)
        out[v.track_id] = starts
        if boundary is None:
            boundary = _presentation(v, movie.timescale, starts[1:])
    for a in movie.tracks:
        if a.kind == "video":
            continue
        times = np.maximum.accumulate(_presentation(a, movie.timescale,
                                                    np.arange(a.count)))
        if boundary is None:
            span = float(times[-1] - times[0]) + seconds
            targets = np.arange(1, math.ceil(span / seconds) + 1) * seconds + float(times[0])
        else:
            targets = boundary
        cuts = _cuts(times, targets)
        out[a.track_id] = np.unique(np.concatenate([[0], cuts])).astype(np.int64)
    return out


def _zero_duration(box: bytes, v1_at: int, v0_at: int, track_id: int | None = None) -> bytes:
    """``box`` (tkhd or mdhd) with its duration set to 0 (fragmented: the fragments tell), and
    for a tkhd its track ID set to ``track_id``."""
    b = bytearray(box)
    if b[8] == 1:
        b[8 + v1_at:8 + v1_at + 8] = bytes(8)
    else:
        b[8 + v0_at:8 + v0_at + 4] = bytes(4)
    if track_id is not None:
        struct.pack_into(">I", b, 8 + (20 if b[8] == 1 else 12), track_id)
    return bytes(b)


def _open_ended(elst: bytes) -> bytes:
    """The edit list with its last (media) edit's duration set to 0: in a fragmented file it
    runs to the end of the fragments (ISO/IEC 14496-12 8.6.6); the source's duration would cut
    the media short where a player honours it."""
    b = bytearray(elst)
    version = b[8]
    size = 20 if version == 1 else 12
    (n,) = struct.unpack_from(">I", b, 12)
    last = 16 + (n - 1) * size
    width = 8 if version == 1 else 4
    b[last:last + width] = bytes(width)
    return bytes(b)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(slots=True)
class _Layout:
    """What one media segment of a track is: samples [first, end), its box bytes."""

    first: int
    end: int
    head: bytes  # styp + moof + mdat header
    runs: list[tuple[int, int, int]]  # (file offset, length, position in the segment)
    size: int


class TrackFragmenter:
    """One track of a progressive file, cut into CMAF segments."""

    def __init__(self, movie: Movie, track: TrackTable, starts: np.ndarray, *,
                 styp: bool = True) -> None:
        self.movie = movie
        self.styp = styp  # False: fragments start at their moof (single-file renditions)
        self.track = track
        self.starts = starts
        self.ends = np.append(starts[1:], track.count).astype(np.int64)
        self._signed = bool(np.any(track.cts < 0))
        self._has_cts = bool(np.any(track.cts != 0))
        dur = track.durations
        vals, counts = np.unique(dur, return_counts=True)
        self.default_duration = int(vals[np.argmax(counts)]) if vals.size else 0
        self._bytes_before = np.zeros(track.count + 1, np.int64)
        np.cumsum(track.sizes, dtype=np.int64, out=self._bytes_before[1:])

    # ---- description ------------------------------------------------------------------------
    @property
    def segment_count(self) -> int:
        return int(self.starts.shape[0])

    def segment_durations(self) -> np.ndarray:
        """Each segment's duration in the track's timescale (decode times)."""
        t = self.track
        end_dts = np.append(t.dts[1:], t.dts[-1] + int(t.durations[-1]))
        out: np.ndarray = end_dts[self.ends - 1] - t.dts[self.starts]
        return out

    def segment_times(self) -> np.ndarray:
        """Each segment's tfdt (decode time of its first sample)."""
        out: np.ndarray = self.track.dts[self.starts]
        return out

    def sample_bytes(self, i: int) -> int:
        """The sample bytes of segment ``i``."""
        return int(self._bytes_before[self.ends[i]] - self._bytes_before[self.starts[i]])

    @property
    def entry(self) -> bytes:
        """The sample entry box (from stsd)."""
        return self.track.stsd[16:]

    # ---- init segment -----------------------------------------------------------------------
    def init_segment(self) -> bytes:
        """The clear CMAF init segment: ftyp, moov (mvhd, trak with the source's sample entry
        and edit list, empty sample tables, mvex/trex)."""
        t = self.track
        ftyp = box_bytes(b"ftyp", b"iso6" + bytes(4) + b"iso6mp41dashcmfc")
        mvhd = full_box(b"mvhd", 0, 0, struct.pack(
            ">IIIIIH10x", 0, 0, self.movie.timescale, 0, 0x10000, 0x100) + _MATRIX
            + bytes(24) + struct.pack(">I", TRACK_ID + 1))
        tkhd = _zero_duration(t.tkhd, 28, 20, TRACK_ID)
        mdhd = _zero_duration(t.mdhd, 24, 16)
        edts = box_bytes(b"edts", _open_ended(t.elst)) if t.elst is not None else b""
        dref = full_box(b"dref", 0, 0, struct.pack(">I", 1) + full_box(b"url ", 0, 1, b""))
        dinf = box_bytes(b"dinf", dref)
        empty = struct.pack(">I", 0)
        stbl = box_bytes(b"stbl", t.stsd + full_box(b"stts", 0, 0, empty)
                         + full_box(b"stsc", 0, 0, empty)
                         + full_box(b"stsz", 0, 0, bytes(8)) + full_box(b"stco", 0, 0, empty))
        minf = box_bytes(b"minf", t.media_header + dinf + stbl)
        mdia = box_bytes(b"mdia", mdhd + t.hdlr + minf)
        trak = box_bytes(b"trak", tkhd + edts + mdia)
        trex = full_box(b"trex", 0, 0, struct.pack(">5I", TRACK_ID, 1, self.default_duration,
                                                   0, 0))
        mvex = box_bytes(b"mvex", trex)
        return ftyp + box_bytes(b"moov", mvhd + trak + mvex)

    # ---- segment index ----------------------------------------------------------------------
    def sidx(self, sizes: list[int]) -> bytes:
        """A sidx box with one reference per segment (``sizes``: their byte sizes), the
        segments following it directly; earliest presentation time from the first segment's
        composition times, every reference starting with a SAP of type 1."""
        t = self.track
        a, b = int(self.starts[0]), int(self.ends[0])
        ept = max(0, int(np.min(t.dts[a:b] + t.cts[a:b].astype(np.int64)))) if b > a else 0
        durs = self.segment_durations()
        if len(sizes) != durs.shape[0] or len(sizes) > 0xFFFF:
            raise MediaError(f"track {t.track_id}: {len(sizes)} segments do not fit one sidx")
        refs = np.empty((len(sizes), 3), ">u4")
        refs[:, 0] = sizes
        refs[:, 1] = durs
        refs[:, 2] = 0x90000000  # starts_with_SAP = 1, SAP_type = 1, SAP_delta_time = 0
        if int(refs[:, 0].max(initial=0)) >= 1 << 31 or np.any(durs >= 1 << 32):
            raise MediaError(f"track {t.track_id}: a segment is too large for a sidx")
        if ept >= 1 << 32:
            head = struct.pack(">IIQQHH", TRACK_ID, t.timescale, ept, 0, 0, len(sizes))
            return full_box(b"sidx", 1, 0, head + refs.tobytes())
        head = struct.pack(">IIIIHH", TRACK_ID, t.timescale, ept, 0, 0, len(sizes))
        return full_box(b"sidx", 0, 0, head + refs.tobytes())

    # ---- media segments ---------------------------------------------------------------------
    def _layout(self, i: int) -> _Layout:
        t = self.track
        a, b = int(self.starts[i]), int(self.ends[i])
        n = b - a
        video = t.kind == "video"
        tflags = 0x001 | 0x100 | 0x200 | (0x400 if video else 0) | (
            0x800 if self._has_cts else 0)
        cols = 2 + video + self._has_cts
        rec = np.empty((n, cols), ">u4")
        rec[:, 0] = t.durations[a:b]
        rec[:, 1] = t.sizes[a:b]
        c = 2
        if video:
            rec[:, c] = np.where(t.sync[a:b], _SYNC_FLAGS, _NON_SYNC_FLAGS)
            c += 1
        if self._has_cts:
            rec[:, c] = t.cts[a:b].view(np.uint32)
        version = 1 if self._signed else 0
        trun_len = 8 + 4 + 4 + 4 + rec.nbytes
        # default-base-is-moof; audio: every sample a sync sample (default-sample-flags)
        tfhd = (full_box(b"tfhd", 0, 0x020020, struct.pack(">II", TRACK_ID, _SYNC_FLAGS))
                if not video else full_box(b"tfhd", 0, 0x020000, struct.pack(">I", TRACK_ID)))
        tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", int(t.dts[a])))
        traf_len = 8 + len(tfhd) + len(tfdt) + trun_len
        mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", i + 1))
        moof_len = 8 + len(mfhd) + traf_len
        payload = self.sample_bytes(i)
        big = payload + 8 > 0xFFFFFFFF
        mdat_head = (struct.pack(">I4sQ", 1, b"mdat", payload + 16) if big
                     else struct.pack(">I4s", payload + 8, b"mdat"))
        trun = (struct.pack(">I4sII", trun_len, b"trun", (version << 24) | tflags, n)
                + struct.pack(">i", moof_len + len(mdat_head)) + rec.tobytes())
        moof = (struct.pack(">I4s", moof_len, b"moof") + mfhd
                + struct.pack(">I4s", traf_len, b"traf") + tfhd + tfdt + trun)
        styp = box_bytes(b"styp", b"msdh" + bytes(4) + b"msdhmsix") if self.styp else b""
        head = styp + moof + mdat_head
        # runs of adjacent samples: one read each
        offs = t.offsets[a:b]
        ends = offs + t.sizes[a:b].astype(np.int64)
        brk = np.flatnonzero(offs[1:] != ends[:-1]) + 1
        first = np.concatenate([[0], brk])
        last = np.append(brk, n)
        run_off = offs[first]
        run_len = self._bytes_before[a + last] - self._bytes_before[a + first]
        run_pos = len(head) + self._bytes_before[a + first] - self._bytes_before[a]
        runs = list(zip(run_off.tolist(), run_len.tolist(), run_pos.tolist(), strict=True))
        return _Layout(a, b, head, runs, len(head) + payload)

    def segment_size(self, i: int) -> int:
        """The clear segment's size in bytes."""
        return self._layout(i).size

    def build(self, i: int, fd: int) -> memoryview:
        """Segment ``i`` (clear) read from ``fd`` into this thread's reused buffer: valid until
        the next call in this thread; the caller may change it in place."""
        lay = self._layout(i)
        buf = _SEG.view(lay.size)
        buf[:len(lay.head)] = lay.head
        for off, length, pos in lay.runs:
            got = 0
            while got < length:
                try:
                    k = os.preadv(fd, [buf[pos + got:pos + length]], off + got)
                except OSError as exc:
                    raise MediaError(f"cannot read the input: {exc.strerror or exc}") from None
                if k == 0:
                    raise Mp4FormatError(f"track {self.track.track_id}: the input became "
                                         "shorter while it was read")
                got += k
        return buf
