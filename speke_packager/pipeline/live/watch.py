"""Follow a folder where a clear live encoder writes segments, and hand over each segment once
it is complete.

What counts as complete: the encoder's own manifest lists it (FFmpeg writes its live HLS
playlists and its DASH MPD to a temporary name and renames them; with ``-hls_flags temp_file``
HLS segments, and DASH segments always, are also written under ``.tmp`` and renamed), AND its
size and modification time did not change for ``settle`` seconds (a writer that lists a segment
before it finished writing it is waited for). A file that is being written and is not listed is
never read. Sources, found in ``folder`` at every poll:

- an MPD (FFmpeg's DASH muxer, ``-f dash -streaming 0``, SegmentTemplate with a
  SegmentTimeline or ``$Number$`` durations): one track per Representation; media time from the
  timeline (``t / timescale``);
- else every HLS media playlist (FFmpeg's HLS muxer, fMP4 or MPEG-TS segments): one track per
  playlist; media time from the fragment's ``tfdt`` (fMP4) or the playlist durations (TS).

The watcher copes with the encoder deleting old segments (``delete_segments``; a listed segment
gone before it could be read is skipped with a warning), with encoder restarts (sequence numbers
going back or a new init segment: the next segment is marked ``discontinuity``), and with a
listed segment that never settles (after ``segment_timeout`` seconds: one warning line, skipped).
Polling only (no file-system notification dependency). Pure: it reads files, never writes.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..._xml import parse_xml
from ...errors import ManifestError, Mp4FormatError, SpekePackagerError, UsageError
from ...media.mp4.boxes import iter_boxes

__all__ = ["FolderWatcher", "InitSegment", "MediaSegment", "StreamEnded", "WatchEvent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InitSegment:
    """A (new) fMP4 init segment of ``track``."""

    track: str
    path: Path
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MediaSegment:
    """One complete media segment. ``sequence``: the encoder's number (media sequence or
    ``$Number$``); ``start_time``/``duration``: seconds of encoder media time;
    ``discontinuity``: the encoder restarted (or skipped segments) before this one."""

    track: str
    path: Path
    data: bytes = field(repr=False)
    sequence: int
    start_time: float
    duration: float
    container: str  # "fmp4" or "ts"
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The encoder ended ``track`` (EXT-X-ENDLIST, or a static MPD)."""

    track: str


WatchEvent = InitSegment | MediaSegment | StreamEnded


@dataclass(slots=True)
class _Listed:
    """A segment as the encoder's manifest lists it."""

    name: str
    sequence: int
    duration: float
    start: float | None  # from the manifest (DASH timeline), else None
    discontinuity: bool = False


@dataclass(slots=True)
class _Track:
    name: str
    init_name: str | None = None
    init_stat: tuple[int, int, int] | None = None  # inode, size, mtime_ns of the init emitted
    timescales: dict[int, tuple[int, bool]] = field(default_factory=dict)  # track_id ->
    last_seq: int = -1
    next_time: float | None = None
    restart: bool = False
    ended: bool = False
    seen: dict[str, tuple[int, int, float, float]] = field(default_factory=dict)
    # name -> (size, mtime_ns, first seen, unchanged since)


_STAT = tuple[int, int, int]


def _stat(path: Path) -> _STAT | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _local_name(uri: str) -> str | None:
    """A manifest URI as a file name in the watched folder (None: not a local file)."""
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc:
        return None
    name = unquote(parts.path)
    if not name or name.startswith("/") or ".." in Path(name).parts:
        return None
    return name


# --- HLS ------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _parse_hls(text: str) -> tuple[str | None, list[_Listed], bool]:
    """(EXT-X-MAP URI, listed segments, ENDLIST) of a media playlist."""
    seq = 0
    init: str | None = None
    out: list[_Listed] = []
    dur: float | None = None
    disc = False
    ended = False
    n = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            try:
                seq = int(line.split(":", 1)[1])
            except ValueError:
                raise ManifestError(f"bad {line!r}") from None
        elif line.startswith("#EXT-X-MAP:"):
            m = re.search(r'URI="([^"]*)"', line)
            init = m.group(1) if m else None
        elif line.startswith("#EXTINF:"):
            try:
                dur = float(line[8:].split(",", 1)[0])
            except ValueError:
                raise ManifestError(f"bad {line!r}") from None
        elif line.startswith("#EXT-X-DISCONTINUITY") and not line.startswith(
                "#EXT-X-DISCONTINUITY-"):
            disc = True
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif not line.startswith("#"):
            if dur is not None:
                out.append(_Listed(line, seq + n, dur, None, disc))
                n += 1
            dur, disc = None, False
    return init, out, ended


def _is_media_playlist(text: str) -> bool:
    return "#EXTINF:" in text or "#EXT-X-TARGETDURATION" in text


# --- DASH -----------------------------------------------------------------------------------------
_TEMPLATE = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth)(%0(\d+)d)?\$|\$\$")


def _expand(template: str, rep: str, bandwidth: str, number: int = 0, t: int = 0) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, width = m.group(1), int(m.group(3) or 0)
        if name == "RepresentationID":
            return rep
        if name == "Bandwidth":
            return bandwidth
        value = number if name == "Number" else t
        return str(value).zfill(width)

    return _TEMPLATE.sub(sub, template)


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _parse_mpd(data: bytes) -> tuple[dict[str, tuple[str | None, list[_Listed]]], bool]:
    """{representation id: (init name, listed segments)}, and whether the MPD is static."""
    root = parse_xml(data, what="encoder MPD", error=ManifestError)
    static = root.get("type", "static") == "static"
    out: dict[str, tuple[str | None, list[_Listed]]] = {}
    for period in (e for e in root if _local(e.tag) == "Period"):
        for aset in (e for e in period if _local(e.tag) == "AdaptationSet"):
            a_tmpl = next((e for e in aset if _local(e.tag) == "SegmentTemplate"), None)
            for rep in (e for e in aset if _local(e.tag) == "Representation"):
                tmpl = next((e for e in rep if _local(e.tag) == "SegmentTemplate"), a_tmpl)
                if tmpl is None:
                    continue
                rid, bw = rep.get("id", ""), rep.get("bandwidth", "0")
                ts = int(tmpl.get("timescale", "1"))
                number = int(tmpl.get("startNumber", "1"))
                init_t, media_t = tmpl.get("initialization"), tmpl.get("media")
                if not media_t or ts <= 0:
                    continue
                init = _expand(init_t, rid, bw) if init_t else None
                listed: list[_Listed] = []
                tl = next((e for e in tmpl if _local(e.tag) == "SegmentTimeline"), None)
                if tl is not None:
                    t = 0
                    for s in (e for e in tl if _local(e.tag) == "S"):
                        t = int(s.get("t", t))
                        d, r = int(s.get("d", "0")), int(s.get("r", "0"))
                        for _ in range(r + 1):
                            listed.append(_Listed(_expand(media_t, rid, bw, number, t), number,
                                                  d / ts, t / ts))
                            number += 1
                            t += d
                out[rid] = (init, listed)
    return out, static


# --- media time -----------------------------------------------------------------------------------
def _timescales(init: bytes) -> dict[int, tuple[int, bool]]:
    """track_id -> (mdhd timescale, is video) of an fMP4 init segment."""
    out: dict[int, tuple[int, bool]] = {}
    for top in iter_boxes(init):
        if top.type != b"moov":
            continue
        for trak in iter_boxes(init, top.start + top.header, top.end):
            if trak.type != b"trak":
                continue
            tid = scale = None
            video = False
            for b in iter_boxes(init, trak.start + trak.header, trak.end):
                if b.type == b"tkhd":
                    v = init[b.start + b.header]
                    tid = struct.unpack_from(">I", init, b.start + b.header + (20 if v else 12))[0]
                elif b.type == b"mdia":
                    for m in iter_boxes(init, b.start + b.header, b.end):
                        if m.type == b"mdhd":
                            v = init[m.start + m.header]
                            scale = struct.unpack_from(
                                ">I", init, m.start + m.header + (20 if v else 12))[0]
                        elif m.type == b"hdlr":
                            video = init[m.start + m.header + 8:m.start + m.header + 12] == b"vide"
            if tid is not None and scale:
                out[tid] = (scale, video)
    return out


def _tfdt_seconds(seg: bytes, scales: dict[int, tuple[int, bool]]) -> float | None:
    """The decode time (seconds) of the first moof: its video track's, else the earliest."""
    best: float | None = None
    for top in iter_boxes(seg):
        if top.type != b"moof":
            continue
        for traf in iter_boxes(seg, top.start + top.header, top.end):
            if traf.type != b"traf":
                continue
            tid = None
            dt = None
            for b in iter_boxes(seg, traf.start + traf.header, traf.end):
                p = b.start + b.header
                if b.type == b"tfhd":
                    tid = struct.unpack_from(">I", seg, p + 4)[0]
                elif b.type == b"tfdt":
                    dt = int(struct.unpack_from(">Q" if seg[p] else ">I", seg, p + 4)[0])
            if tid in scales and dt is not None:
                scale, video = scales[tid]
                if video:
                    return dt / scale
                best = dt / scale if best is None else min(best, dt / scale)
        return best
    return None


# --- the watcher ----------------------------------------------------------------------------------
class FolderWatcher:
    """Follow ``folder`` (see the module doc). :meth:`scan` is one non-blocking pass;
    :meth:`follow` polls every ``poll_interval`` seconds and yields events as they come.

    ``manifest``: the encoder's manifest to follow (a name in ``folder``; default: the MPD if
    there is one, else every HLS media playlist). ``settle``: how long a listed segment's size
    and modification time must stay unchanged (default: ``poll_interval``). ``segment_timeout``:
    a listed segment not settled (or unreadable) after this long is skipped with a warning."""

    def __init__(self, folder: str | os.PathLike[str], *, manifest: str | None = None,
                 poll_interval: float = 0.25, settle: float | None = None,
                 segment_timeout: float = 30.0) -> None:
        if not poll_interval > 0 or (settle is not None and settle < 0) or \
                not segment_timeout > 0:
            raise UsageError("the poll interval and segment timeout must be positive, the "
                             "settle time not negative")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UsageError(f"{self.folder} is not a folder")
        self.manifest = manifest
        self.poll_interval = poll_interval
        self.settle = poll_interval if settle is None else settle
        self.segment_timeout = segment_timeout
        self._tracks: dict[str, _Track] = {}
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        return f"FolderWatcher({str(self.folder)!r}, tracks={list(self._tracks)})"

    @property
    def tracks(self) -> list[str]:
        return list(self._tracks)

    @property
    def ended(self) -> bool:
        """Every track seen so far was ended by the encoder (and there is at least one)."""
        return bool(self._tracks) and all(t.ended for t in self._tracks.values())

    def _warn_once(self, text: str) -> None:
        if text not in self.warnings:
            self._warn(text)

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        log.warning("%s", text)

    # -- sources ---------------------------------------------------------------------------------
    def _sources(self) -> dict[str, tuple[str | None, list[_Listed], bool, str]]:
        """track -> (init name, listed segments, ended, container hint)."""
        names = [self.manifest] if self.manifest else sorted(
            p.name for p in self.folder.iterdir()
            if p.suffix in (".mpd", ".m3u8") and p.is_file())
        mpds = [n for n in names if n.endswith(".mpd")]
        out: dict[str, tuple[str | None, list[_Listed], bool, str]] = {}
        if mpds:
            try:
                reps, static = _parse_mpd((self.folder / mpds[0]).read_bytes())
            except OSError:
                return out
            except ManifestError as exc:  # a writer that does not rename: try again next poll
                self._warn_once(f"{mpds[0]}: {exc}")
                return out
            for rid, (init, listed) in reps.items():
                out[rid] = (init, listed, static, "fmp4")
            return out
        for n in names:
            text = _read_text(self.folder / n)
            if text is None or not _is_media_playlist(text):
                continue
            init, listed, ended = _parse_hls(text)
            out[Path(n).stem] = (init, listed, ended, "fmp4" if init else "ts")
        return out

    # -- one pass --------------------------------------------------------------------------------
    def scan(self) -> list[WatchEvent]:
        """The events ready now, in order per track (never blocks)."""
        events: list[WatchEvent] = []
        for name, (init, listed, ended, container) in self._sources().items():
            tr = self._tracks.get(name)
            if tr is None:
                tr = self._tracks[name] = _Track(name)
            events.extend(self._scan_track(tr, init, listed, ended, container))
        return events

    def _settled(self, tr: _Track, name: str, now: float) -> bool | None:
        """True: settled; False: wait; None: give up (vanished or timed out, warned)."""
        st = _stat(self.folder / name)
        seen = tr.seen.get(name)
        if st is None:
            if seen is None or now - seen[2] < min(self.segment_timeout, 2 * self.settle + 1):
                if seen is None:
                    tr.seen[name] = (-1, -1, now, now)
                return False
            self._warn(f"{tr.name}: segment {name} is listed but gone (deleted before it could "
                       "be read); skipped")
            return None
        _, size, mtime = st
        if seen is None or (seen[0], seen[1]) != (size, mtime):
            first = seen[2] if seen is not None else now
            tr.seen[name] = (size, mtime, first, now)
            seen = tr.seen[name]
            if self.settle > 0 or size == 0:
                return self._timed_out(tr, name, now, seen[2])
        if size > 0 and now - seen[3] >= self.settle:
            return True
        return self._timed_out(tr, name, now, seen[2])

    def _timed_out(self, tr: _Track, name: str, now: float, first: float) -> bool | None:
        if now - first >= self.segment_timeout:
            self._warn(f"{tr.name}: segment {name} did not complete within "
                       f"{self.segment_timeout:g}s; skipped")
            return None
        return False

    def _scan_track(self, tr: _Track, init: str | None, listed: list[_Listed], ended: bool,
                    container: str) -> list[WatchEvent]:
        now = time.monotonic()
        out: list[WatchEvent] = []
        if listed and listed[-1].sequence < tr.last_seq:  # numbers went back: a new encoder run
            log.info("%s: the encoder restarted (sequence %d after %d)", tr.name,
                     listed[-1].sequence, tr.last_seq)
            tr.last_seq, tr.restart, tr.ended = -1, True, False
            tr.seen.clear()
        if init is not None:
            iname = _local_name(init)
            if iname is None:
                raise ManifestError(f"{tr.name}: init segment {init!r} is not a file in the "
                                    "watched folder")
            st = _stat(self.folder / iname)
            if st is None:
                return out
            if (iname, st) != (tr.init_name, tr.init_stat):
                if self._settled(tr, iname, now) is not True:
                    return out
                try:
                    data = (self.folder / iname).read_bytes()
                    scales = _timescales(data)
                except OSError:
                    return out
                except Mp4FormatError as exc:
                    raise ManifestError(f"{tr.name}: init segment {iname}: {exc}") from exc
                if tr.init_stat is not None:  # a new init: a new encoder run
                    tr.restart = True
                tr.init_name, tr.init_stat, tr.timescales = iname, _stat(self.folder / iname), \
                    scales
                tr.seen.pop(iname, None)
                out.append(InitSegment(tr.name, self.folder / iname, data))
        elif container == "fmp4":
            raise ManifestError(f"{tr.name}: fMP4 segments without an init segment")
        for seg in listed:
            if seg.sequence <= tr.last_seq:
                continue
            name = _local_name(seg.name)
            if name is None:
                raise ManifestError(f"{tr.name}: segment {seg.name!r} is not a file in the "
                                    "watched folder")
            state = self._settled(tr, name, now)
            if state is False:
                break
            gap = tr.last_seq >= 0 and seg.sequence != tr.last_seq + 1
            if state is None:
                tr.last_seq, tr.restart = seg.sequence, True
                tr.next_time = None
                tr.seen.pop(name, None)
                continue
            try:
                data = (self.folder / name).read_bytes()
            except OSError:
                break
            tr.seen.pop(name, None)
            start = self._start_time(tr, seg, data, container)
            out.append(MediaSegment(tr.name, self.folder / name, data, seg.sequence, start,
                                    seg.duration, container,
                                    discontinuity=tr.restart or gap or seg.discontinuity))
            tr.last_seq, tr.restart = seg.sequence, False
            tr.next_time = start + seg.duration
        else:
            if ended and not tr.ended:
                tr.ended = True
                out.append(StreamEnded(tr.name))
        # forget files no longer listed
        keep = {_local_name(s.name) for s in listed} | {tr.init_name}
        for n in [n for n in tr.seen if n not in keep and n != (init and _local_name(init))]:
            del tr.seen[n]
        return out

    def _start_time(self, tr: _Track, seg: _Listed, data: bytes, container: str) -> float:
        if seg.start is not None:
            return seg.start
        if container == "fmp4" and tr.timescales:
            try:
                t = _tfdt_seconds(data, tr.timescales)
            except Mp4FormatError as exc:
                raise ManifestError(f"{tr.name}: segment {seg.name}: {exc}") from exc
            if t is not None:
                return t
        # TS: the end of the previous segment (a restart starts the timeline again)
        return tr.next_time if tr.next_time is not None and not tr.restart else 0.0

    # -- polling ---------------------------------------------------------------------------------
    def follow(self, *, stop: threading.Event | None = None, idle_timeout: float | None = None,
               until_ended: bool = True) -> Iterator[WatchEvent]:
        """Poll and yield events until ``stop`` is set, every track ended (``until_ended``),
        or nothing new came for ``idle_timeout`` seconds."""
        stop = stop or threading.Event()
        last = time.monotonic()
        while not stop.is_set():
            try:
                events = self.scan()
            except SpekePackagerError:
                raise
            except OSError as exc:  # the folder itself vanished or became unreadable
                raise UsageError(f"cannot read {self.folder}: {exc.strerror or exc}") from exc
            yield from events
            if events:
                last = time.monotonic()
            if until_ended and self.ended:
                return
            if idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                log.info("no new segment for %gs: stopping", idle_timeout)
                return
            stop.wait(self.poll_interval)
