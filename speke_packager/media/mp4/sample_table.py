"""The sample tables of a progressive MP4/MOV: per audio/video track, every sample's file
offset, size, decode time, composition offset and sync flag, as numpy arrays.

The ``moov`` is read wherever it is (before or after the ``mdat``) with ``pread``; the media
data is never read here. Every table is checked against the others and against the file before
anything large is allocated: a table that claims more entries than its box holds, counts that
disagree between stts/stsz/stsc/ctts, samples past the end of the file or overlapping other
samples, and empty samples end in :class:`~speke_packager.errors.Mp4FormatError` or
:class:`~speke_packager.errors.UnsupportedMediaError`, one line each, naming the track.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from ...errors import Mp4FormatError, UnsupportedMediaError
from .boxes import Box, file_boxes, iter_boxes

__all__ = ["MAX_MOOV", "Movie", "TrackTable", "read_movie"]

MAX_MOOV = 512 << 20  # a 24-hour file at 60 fps has a moov of about 100 MB
_KINDS = {b"vide": "video", b"soun": "audio"}


@dataclass(slots=True)
class TrackTable:
    """One audio or video track of a progressive file."""

    track_id: int
    kind: str  # 'video' or 'audio'
    timescale: int  # mdhd
    media_duration: int  # mdhd, in timescale units
    tkhd: bytes  # whole boxes, copied into the init segment
    mdhd: bytes
    hdlr: bytes
    media_header: bytes  # vmhd / smhd
    stsd: bytes  # whole stsd box (one sample entry)
    elst: bytes | None  # whole elst box when the track has an edit list
    entry_type: bytes  # fourcc of the sample entry
    offsets: np.ndarray  # int64 file offset per sample
    sizes: np.ndarray  # uint32
    dts: np.ndarray  # int64 decode time (first sample at 0)
    durations: np.ndarray  # uint32
    cts: np.ndarray  # int32 composition offset
    sync: np.ndarray  # bool

    @property
    def count(self) -> int:
        return int(self.sizes.shape[0])

    def where(self) -> str:
        return f"track {self.track_id} ({self.kind})"


@dataclass(slots=True)
class Movie:
    timescale: int  # mvhd
    tracks: list[TrackTable]
    file_size: int


def _child(buf: memoryview, box: Box, path: str) -> dict[bytes, Box]:
    out: dict[bytes, Box] = {}
    for c in iter_boxes(buf, box.payload_start, box.end, path=path):
        out.setdefault(c.type, c)
    return out


def _need(kids: dict[bytes, Box], fourcc: bytes, path: str) -> Box:
    b = kids.get(fourcc)
    if b is None:
        raise Mp4FormatError(f"missing {fourcc.decode('latin-1')} box", box_path=path)
    return b


def _payload(buf: memoryview, box: Box) -> memoryview:
    return buf[box.payload_start:box.end]


def _table(p: memoryview, fields: int, width: int, path: str, *, head: int = 8
           ) -> np.ndarray:
    """The entries of a FullBox table: a u32 entry count at ``head - 4``, then ``count``
    entries of ``fields`` big-endian unsigned integers of ``width`` bytes; the count is checked
    against the box's size before anything is allocated."""
    if len(p) < head:
        raise Mp4FormatError("truncated table", box_path=path)
    (n,) = struct.unpack_from(">I", p, head - 4)
    if n * fields * width > len(p) - head:
        raise Mp4FormatError(f"{n} entries do not fit in the box ({len(p)} bytes)",
                             box_path=path)
    arr = np.frombuffer(p, dtype=f">u{width}", count=n * fields, offset=head)
    return arr.reshape(n, fields) if fields > 1 else arr


def _elst(p: memoryview, path: str, movie_ts: int, media_ts: int) -> None:
    """Accept edit lists a fragmented track can carry as they are: one edit, or an empty edit
    (a start delay) followed by one edit, at normal rate."""
    if len(p) < 8:
        raise Mp4FormatError("truncated elst", box_path=path)
    version = p[0]
    (n,) = struct.unpack_from(">I", p, 4)
    size = 20 if version == 1 else 12
    if n * size > len(p) - 8:
        raise Mp4FormatError(f"{n} edits do not fit in the box", box_path=path)
    fmt = ">QqHH" if version == 1 else ">IiHH"
    edits = [struct.unpack_from(fmt, p, 8 + i * size) for i in range(min(n, 3))]
    real = [e for e in edits if e[1] != -1]
    if n > 2 or len(real) != 1 or (n == 2 and edits[0][1] != -1):
        raise UnsupportedMediaError(f"{path}: an edit list of {n} edits (only one edit, "
                                    "optionally after an empty one, can be fragmented)")
    if real[0][2] != 1 or real[0][3] != 0:
        raise UnsupportedMediaError(f"{path}: an edit at a rate other than 1")


_ISO_AUDIO_KEEP = frozenset({b"esds", b"dac3", b"dec3", b"dOps", b"btrt", b"dac4"})


def _iso_audio(stsd: bytes, timescale: int, path: str) -> bytes:
    """The stsd box with a QuickTime sound description (version 1 or 2, as in .mov files)
    rewritten as an ISO AudioSampleEntry (version 0): channel count, sample rate, and the
    decoder configuration (esds from inside ``wave``); version 0 entries are kept."""
    entry = stsd[16:]
    if len(entry) < 36 or struct.unpack_from(">H", entry, 16)[0] == 0:
        return stsd
    version = struct.unpack_from(">H", entry, 16)[0]
    if version == 1:
        channels, rate, skip = struct.unpack_from(">H", entry, 24)[0], entry[32:34], 52
        hz = int.from_bytes(rate, "big")
    elif version == 2 and len(entry) >= 72:
        rate_f, channels = struct.unpack_from(">dI", entry, 40)
        hz, skip = int(rate_f), 72
    else:
        raise UnsupportedMediaError(f"{path}: QuickTime sound description version {version}")
    children: list[bytes] = []
    body = memoryview(entry)
    for b in iter_boxes(body, skip, path=path):
        if b.type == b"wave":
            for w in iter_boxes(body, b.payload_start, b.end, path=f"{path}/wave"):
                if w.type in _ISO_AUDIO_KEEP:
                    children.append(bytes(body[w.start:w.end]))
        elif b.type in _ISO_AUDIO_KEEP:
            children.append(bytes(body[b.start:b.end]))
    if not 0 < hz < 65536:
        hz = timescale if timescale < 65536 else 0
    fields = (bytes(6) + struct.pack(">H", 1) + bytes(8)
              + struct.pack(">HHHHI", channels, 16, 0, 0, hz << 16))
    new = fields + b"".join(children)
    new_entry = struct.pack(">I4s", 8 + len(new), entry[4:8]) + new
    return struct.pack(">I4sII", 16 + len(new_entry), b"stsd", 0, 1) + new_entry


def _samples_per_chunk(stsc: np.ndarray, chunks: int, samples: int, path: str) -> np.ndarray:
    if chunks == 0:
        if samples:
            raise Mp4FormatError(f"{samples} samples but no chunk offsets", box_path=path)
        return np.zeros(0, np.int64)
    if stsc.shape[0] == 0:
        raise Mp4FormatError("empty stsc with samples", box_path=path)
    first = stsc[:, 0].astype(np.int64)
    spc = stsc[:, 1].astype(np.int64)
    if first[0] != 1 or np.any(np.diff(first) <= 0) or first[-1] > chunks:
        raise Mp4FormatError("stsc first_chunk values out of order or past the chunk count",
                             box_path=path)
    if np.any(spc == 0):
        raise Mp4FormatError("stsc entry with 0 samples per chunk", box_path=path)
    if np.any(stsc[:, 2] != stsc[0, 2]):
        raise UnsupportedMediaError(f"{path}: the samples use several sample descriptions")
    runs = np.diff(np.append(first, chunks + 1))
    total = int(np.dot(runs, spc))
    if total != samples:
        raise Mp4FormatError(f"stsc describes {total} samples, stsz {samples}", box_path=path)
    return np.repeat(spc, runs)


def _runs(table: np.ndarray, samples: int, what: str, path: str, dtype: str) -> np.ndarray:
    """Expand a (count, value) run table into one value per sample; the counts must add up."""
    counts = table[:, 0].astype(np.int64)
    total = int(counts.sum())
    if total != samples:
        raise Mp4FormatError(f"{what} describes {total} samples, stsz {samples}", box_path=path)
    return np.repeat(table[:, 1].astype(dtype), counts)


def _track(buf: memoryview, trak: Box, path: str, file_size: int, movie_ts: int
           ) -> TrackTable | None:
    kids = _child(buf, trak, path)
    tkhd = _need(kids, b"tkhd", path)
    mdia = _need(kids, b"mdia", path)
    mk = _child(buf, mdia, f"{path}/mdia")
    hdlr = _need(mk, b"hdlr", f"{path}/mdia")
    hp = _payload(buf, hdlr)
    if len(hp) < 12:
        raise Mp4FormatError("truncated hdlr", box_path=f"{path}/mdia/hdlr")
    kind = _KINDS.get(bytes(hp[8:12]))
    if kind is None:
        return None  # timecode, text, hint tracks: not part of the package
    tp = _payload(buf, tkhd)
    if len(tp) < 24:
        raise Mp4FormatError("truncated tkhd", box_path=f"{path}/tkhd")
    tid = struct.unpack_from(">I", tp, 20 if tp[0] == 1 else 12)[0]
    mdhd = _need(mk, b"mdhd", f"{path}/mdia")
    mp = _payload(buf, mdhd)
    if len(mp) < 4 or len(mp) < (32 if mp[0] == 1 else 20):
        raise Mp4FormatError("truncated mdhd", box_path=f"{path}/mdia/mdhd")
    if mp[0] == 1:
        ts, dur = struct.unpack_from(">IQ", mp, 20)
    else:
        ts, dur = struct.unpack_from(">II", mp, 12)
    where = f"track {tid} ({kind})"
    if ts == 0:
        raise Mp4FormatError(f"{where}: media timescale 0", box_path=f"{path}/mdia/mdhd")
    minf = _need(mk, b"minf", f"{path}/mdia")
    nk = _child(buf, minf, f"{path}/mdia/minf")
    header = nk.get(b"vmhd") or nk.get(b"smhd")
    if header is None:
        raise Mp4FormatError("missing vmhd/smhd", box_path=f"{path}/mdia/minf")
    sp = f"{path}/mdia/minf/stbl"
    stbl = _need(nk, b"stbl", f"{path}/mdia/minf")
    sk = _child(buf, stbl, sp)
    stsd = _need(sk, b"stsd", sp)
    sd = _payload(buf, stsd)
    if len(sd) < 16:
        raise Mp4FormatError("truncated stsd", box_path=f"{sp}/stsd")
    if struct.unpack_from(">I", sd, 4)[0] != 1:
        raise UnsupportedMediaError(f"{where}: several sample descriptions (stsd)")
    entry_type = bytes(sd[12:16])
    stsd_box = bytes(buf[stsd.start:stsd.end])
    if kind == "audio":
        stsd_box = _iso_audio(stsd_box, ts, f"{sp}/stsd")

    # sizes: the count here bounds every other table
    if b"stsz" in sk:
        zp = _payload(buf, sk[b"stsz"])
        if len(zp) < 12:
            raise Mp4FormatError("truncated stsz", box_path=f"{sp}/stsz")
        const, n = struct.unpack_from(">II", zp, 4)
        if const:
            if n * const > file_size:
                raise Mp4FormatError(f"{where}: {n} samples of {const} bytes cannot fit in the "
                                     f"file ({file_size} bytes)", box_path=f"{sp}/stsz")
            sizes = np.full(n, const, np.uint32)
        else:
            sizes = _table(zp, 1, 4, f"{sp}/stsz", head=12).astype(np.uint32)
    elif b"stz2" in sk:
        zp = _payload(buf, sk[b"stz2"])
        if len(zp) < 12:
            raise Mp4FormatError("truncated stz2", box_path=f"{sp}/stz2")
        field = zp[7]
        (n,) = struct.unpack_from(">I", zp, 8)
        if field not in (4, 8, 16) or (n * field + 7) // 8 > len(zp) - 12:
            raise Mp4FormatError(f"stz2 of {n} entries of {field} bits does not fit",
                                 box_path=f"{sp}/stz2")
        if field == 4:
            raw = np.frombuffer(zp, np.uint8, count=(n + 1) // 2, offset=12)
            sizes = np.stack([raw >> 4, raw & 15], axis=1).reshape(-1)[:n].astype(np.uint32)
        else:
            sizes = np.frombuffer(zp, f">u{field // 8}", count=n, offset=12).astype(np.uint32)
    else:
        raise Mp4FormatError("missing stsz/stz2 box", box_path=sp)
    n = int(sizes.shape[0])
    if n == 0:
        return None  # an empty track (e.g. an unused audio stream): nothing to package
    if int(sizes.sum(dtype=np.int64)) > file_size:
        raise Mp4FormatError(f"{where}: the samples add up to more than the file",
                             box_path=f"{sp}/stsz")
    zero = np.flatnonzero(sizes == 0)
    if zero.size:
        raise UnsupportedMediaError(
            f"{where}: sample {int(zero[0]) + 1} is empty (size 0), which the native "
            "fragmenter does not cut")

    stts = _table(_payload(buf, _need(sk, b"stts", sp)), 2, 4, f"{sp}/stts")
    durations = _runs(stts, n, "stts", f"{sp}/stts", "uint32")
    dts = np.zeros(n, np.int64)
    np.cumsum(durations[:-1], dtype=np.int64, out=dts[1:])
    if b"ctts" in sk:
        cp = _payload(buf, sk[b"ctts"])
        ctab = _table(cp, 2, 4, f"{sp}/ctts")
        cts = _runs(ctab, n, "ctts", f"{sp}/ctts", "uint32").view(np.int32)
    else:
        cts = np.zeros(n, np.int32)
    if b"stss" in sk:
        idx = _table(_payload(buf, sk[b"stss"]), 1, 4, f"{sp}/stss").astype(np.int64)
        if idx.size and (idx.min() < 1 or idx.max() > n):
            raise Mp4FormatError(f"stss names a sample outside 1..{n}", box_path=f"{sp}/stss")
        sync = np.zeros(n, bool)
        sync[idx - 1] = True
    else:
        sync = np.ones(n, bool)
    if kind == "video" and not sync[0]:
        raise UnsupportedMediaError(f"{where}: the first sample is not a sync sample")

    if b"stco" in sk:
        chunk_off = _table(_payload(buf, sk[b"stco"]), 1, 4, f"{sp}/stco").astype(np.int64)
    elif b"co64" in sk:
        chunk_off = _table(_payload(buf, sk[b"co64"]), 1, 8, f"{sp}/co64").astype(np.int64)
    else:
        raise Mp4FormatError("missing stco/co64 box", box_path=sp)
    stsc = _table(_payload(buf, _need(sk, b"stsc", sp)), 3, 4, f"{sp}/stsc")
    spc = _samples_per_chunk(stsc, int(chunk_off.shape[0]), n, f"{sp}/stsc")
    sizes64 = sizes.astype(np.int64)
    before = np.zeros(n, np.int64)  # bytes of the samples before each one (whole track)
    np.cumsum(sizes64[:-1], out=before[1:])
    first_of_chunk = np.zeros(spc.shape[0], np.int64)
    np.cumsum(spc[:-1], out=first_of_chunk[1:])
    chunk_of = np.repeat(np.arange(spc.shape[0]), spc)
    offsets = chunk_off[chunk_of] + (before - before[first_of_chunk][chunk_of])
    if int((offsets + sizes64).max()) > file_size:
        bad = int(np.flatnonzero(offsets + sizes64 > file_size)[0])
        raise Mp4FormatError(f"{where}: sample {bad + 1} ({int(sizes[bad])} bytes at "
                             f"{int(offsets[bad])}) runs past the end of the file "
                             f"({file_size} bytes)", box_path=sp)
    elst = None
    if b"edts" in kids:
        ek = _child(buf, kids[b"edts"], f"{path}/edts")
        if b"elst" in ek:
            e = ek[b"elst"]
            _elst(_payload(buf, e), f"{path}/edts/elst", movie_ts, ts)
            elst = bytes(buf[e.start:e.end])
    return TrackTable(
        track_id=tid, kind=kind, timescale=ts, media_duration=dur,
        tkhd=bytes(buf[tkhd.start:tkhd.end]), mdhd=bytes(buf[mdhd.start:mdhd.end]),
        hdlr=bytes(buf[hdlr.start:hdlr.end]), media_header=bytes(buf[header.start:header.end]),
        stsd=stsd_box, elst=elst, entry_type=entry_type,
        offsets=offsets, sizes=sizes, dts=dts, durations=durations, cts=cts, sync=sync)


def _check_overlap(tracks: list[TrackTable]) -> None:
    """No two samples (of any tracks) share a byte."""
    if not tracks:
        return
    off = np.concatenate([t.offsets for t in tracks])
    end = np.concatenate([t.offsets + t.sizes.astype(np.int64) for t in tracks])
    order = np.argsort(off, kind="stable")
    off, end = off[order], end[order]
    bad = np.flatnonzero(off[1:] < end[:-1])
    if bad.size:
        i = int(bad[0])
        which = np.concatenate([np.full(t.count, t.track_id) for t in tracks])[order]
        raise Mp4FormatError(f"samples overlap: track {int(which[i])} at {int(off[i])} and "
                             f"track {int(which[i + 1])} at {int(off[i + 1])}")


def read_movie(fd: int, name: str) -> Movie:
    """The audio and video tracks of the progressive MP4/MOV open as ``fd``."""
    size = os.fstat(fd).st_size
    top = file_boxes(fd, name)
    types = {b.type for b in top}
    if b"moof" in types:
        raise UnsupportedMediaError(f"{name} is a fragmented MP4 (moof boxes): give it with "
                                    "--segmenter ffmpeg, or encrypt its CMAF package directly")
    moovs = [b for b in top if b.type == b"moov"]
    if not moovs:
        raise Mp4FormatError(f"{name}: no moov box (not a complete MP4/MOV file)")
    moov = moovs[0]
    if moov.size > MAX_MOOV:
        raise UnsupportedMediaError(f"{name}: a moov box of {moov.size} bytes (limit {MAX_MOOV})")
    data = os.pread(fd, moov.size, moov.start)
    if len(data) != moov.size:
        raise Mp4FormatError(f"{name}: the file became shorter while it was read")
    buf = memoryview(data)
    box = Box(moov.type, 0, moov.header, moov.size)
    kids = list(iter_boxes(buf, box.payload_start, box.end, path="moov"))
    mvhd = next((k for k in kids if k.type == b"mvhd"), None)
    if mvhd is None:
        raise Mp4FormatError("missing mvhd box", box_path="moov")
    mp = _payload(buf, mvhd)
    if len(mp) < 20:
        raise Mp4FormatError("truncated mvhd", box_path="moov/mvhd")
    movie_ts = struct.unpack_from(">I", mp, 20 if mp[0] == 1 else 12)[0]
    tracks: list[TrackTable] = []
    k = 0
    for b in kids:
        if b.type != b"trak":
            continue
        t = _track(buf, b, f"moov/trak[{k}]" if k else "moov/trak", size, movie_ts)
        k += 1
        if t is not None:
            if any(o.track_id == t.track_id for o in tracks):
                raise Mp4FormatError(f"two tracks with ID {t.track_id}", box_path="moov")
            tracks.append(t)
    if not tracks:
        raise UnsupportedMediaError(f"{name} has no audio or video track with samples")
    _check_overlap(tracks)
    return Movie(timescale=movie_ts or 1000, tracks=tracks, file_size=size)
