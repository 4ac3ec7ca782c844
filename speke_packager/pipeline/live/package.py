"""A live package: segments in, encrypted segments + HLS playlists + a dynamic DASH MPD out.

:class:`LivePackager` sits on :class:`.session.LiveSession` (keys per key period, prefetch of
the next period, encryption) and publishes through a :class:`.writer.LiveWriter`: for each
segment the init of its key period (when new), then the segment, then the manifests that name
them, so a manifest never names a file or a key that is not there yet.

Key rotation in DASH: **a new Period per key period** (the DASH-IF interoperability guidelines
describe it beside in-band rotation; media-encryption.md §8.2). Each key period of an fMP4
rendition gets its own init segment (``<rendition>/init-<period>.mp4``) whose ``tenc`` names
that period's KID and IV, its segments are encrypted with that default key (no ``seig`` group
is needed), and its Period carries ``cenc:default_KID`` and every DRM's ContentProtection for
that KID. Why this one and not
in-band ``pssh`` + ``seig`` with no ``default_KID``:

- every player handles Periods: Shaka Player, dash.js and ExoPlayer learn each Period's KIDs
  from the MPD and ask for the licence before the first segment of that Period; in-band
  rotation depends on each player acting on ``encrypted`` events raised by moof ``pssh`` boxes
  (Shaka Player only with ``parseInbandPsshEnabled`` on some platforms) and on the CDM reading
  ``seig`` (media-encryption.md §8.2: "new Period ... works everywhere");
- with ClearKey a player needs the KIDs before it can ask the licence server: the MPD gives them;
- every tool decrypts each period with the init it is published with: FFmpeg 8 and Shaka
  Packager ignore the ``seig`` IV of cbcs (media-encryption.md §9), a per-period ``tenc`` does not
  need it;
- HLS uses the same files: the media playlists switch ``EXT-X-MAP`` to the new init with the new
  ``EXT-X-KEY`` set at the first segment of each key period (RFC 8216 §4.3.2.5 allows a new
  Media Initialization Section at any segment).

The cost: one small init per rendition and key period, and DASH Periods (short ones when keys
rotate fast). MPEG-TS (AES-128, SAMPLE-AES) and fMP4 AES-128 are HLS only; fMP4 AES-128 has one
clear init for the whole presentation.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from uuid import UUID

from ..._hls_attrs import AttrValue, Quoted, format_attribute_list
from ...constants import DrmSystem, Scheme
from ...errors import ManifestError, UsageError
from ...model import TrackKind
from ..rotation import RotationSchedule
from .dash_state import DashRendition, DashState
from .periods import LiveKeyPolicy, PeriodKeySource
from .playlist import LivePlaylist
from .session import LiveSegment, LiveSession
from .tracks import fragment_timing, init_facts
from .writer import FolderWriter, LiveWriter, check_rel_path

__all__ = ["LivePackager", "LiveRendition", "PublishedSegment"]

log = logging.getLogger(__name__)

_CMAF = (Scheme.CENC, Scheme.CBCS)


@dataclass(frozen=True, slots=True)
class LiveRendition:
    """One rendition of a live package. ``name``: its id (file names, the media playlist
    ``<name>.m3u8``, the DASH Representation id; letters, digits, ``._~-``). ``init``: the
    clear fMP4/CMAF init (one track), or None for MPEG-TS. ``bandwidth``: peak bit rate in
    bit/s (None: the peak measured so far). ``codecs``: RFC 6381 string (None: read from the
    init for H.264 and AAC; TS renditions without it have no ``CODECS``). ``language``: a
    BCP 47 tag for audio."""

    name: str
    init: bytes | None = field(default=None, repr=False)
    bandwidth: int | None = None
    codecs: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class PublishedSegment:
    """What :meth:`LivePackager.add_segment` published: the segment's path, its key period
    and KID, whether its key changed (new ``EXT-X-KEY`` set / new DASH Period), the init it
    needs (fMP4) and whether the key set was reused after a failed fetch."""

    rendition: str
    sequence: int
    uri: str
    period: int
    kid: UUID
    key_changed: bool
    init_uri: str | None
    reused_key: bool


@dataclass(slots=True)
class _State:
    spec: LiveRendition
    kind: TrackKind
    fmp4: bool
    timescale: int
    default_duration: int
    codecs: str | None
    width: int
    height: int
    playlist: LivePlaylist
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_sequence: int | None = None
    inits: dict[int, str] = field(default_factory=dict)  # key period -> init path
    files: deque[tuple[int, int, str]] = field(default_factory=deque)  # (seq, period, path)
    peak: int = 0
    published: bool = False
    discontinuities: int = 0
    names: set[str] = field(default_factory=set)  # the paths in files


class LivePackager:
    """A live HLS + DASH package, one segment at a time; thread-safe (one thread per rendition
    is the usual pattern; segments of one rendition must come in order).

    ``key_source``, ``schedule``, ``scheme``, ``key_uri``, ``drms``, ``iv_seed``,
    ``key_policy``: as :class:`LiveSession`. ``output``: a
    :class:`LiveWriter` or a folder (:class:`FolderWriter`). ``hls`` / ``dash``: which
    manifests (``dash`` default: when the scheme is cenc or cbcs and every rendition is fMP4).
    ``window``: segments per media playlist and per Representation (None: keep everything,
    ``EXT-X-PLAYLIST-TYPE:EVENT``); ``retain``: segments kept on the output after they left
    every manifest, for players still fetching them (default: ``window``); ``delete_old``
    False: never delete.
    ``dash_addressing``: ``"number"`` (``$Number$``) or ``"time"`` (``$Time$``).
    ``availability_start``: wall-clock time of media time ``schedule.t0`` (default: chosen at
    the first segment so that it is available when published). ``clearkey_license_url``: the
    ``dashif:Laurl`` of the ClearKey ContentProtection. ``utc_timing``: the live MPD's
    ``UTCTiming`` (``"direct"``: the publish time; an http(s) URL answering an ISO time; None:
    none). ``target_duration``: the HLS target duration (default: the first segment's, rounded
    up; a longer segment later is refused).

    :meth:`add_segment` raises what the key cache raises (a typed
    :class:`~speke_packager.errors.KeyRotationError` when no key can be had): nothing of that
    segment is published then. :meth:`close` ends the presentation (``EXT-X-ENDLIST``, static
    MPD)."""

    def __init__(
        self,
        key_source: PeriodKeySource,
        schedule: RotationSchedule,
        scheme: Scheme,
        output: LiveWriter | str | os.PathLike[str],
        renditions: Sequence[LiveRendition],
        *,
        hls: bool = True,
        dash: bool | None = None,
        window: int | None = 6,
        retain: int | None = None,
        delete_old: bool = True,
        dash_addressing: str = "number",
        availability_start: datetime | None = None,
        target_duration: int | None = None,
        key_uri: str | None = None,
        drms: Sequence[DrmSystem] | None = None,
        clearkey_license_url: str | None = None,
        utc_timing: str | None = "direct",
        iv_seed: bytes | None = None,
        key_policy: LiveKeyPolicy | None = None,
        prefetch: bool = True,
        hls_name: str = "master.m3u8",
        mpd_name: str = "manifest.mpd",
    ) -> None:
        if not renditions:
            raise UsageError("a live package needs at least one rendition")
        names = [r.name for r in renditions]
        if len(set(names)) != len(names):
            raise UsageError("rendition names must be unique")
        for n in names:
            if "/" in check_rel_path(n):
                raise UsageError(f"a rendition name is not a path: {n!r}")
        for top in (hls_name, mpd_name):
            if "/" in check_rel_path(top):
                raise UsageError(f"{top!r}: the manifests sit at the top of the output (the "
                                 "media playlists and segments are named relative to it)")
        if {hls_name, mpd_name} & {f"{n}.m3u8" for n in names} or hls_name == mpd_name:
            raise UsageError("a rendition's media playlist <name>.m3u8 would overwrite the "
                             "multivariant playlist or the MPD: rename it")
        if dash_addressing not in ("number", "time"):
            raise UsageError("dash_addressing must be 'number' or 'time'")
        if window is not None and window < 1:
            raise UsageError("the window must hold at least one segment")
        if availability_start is not None and availability_start.tzinfo is None:
            raise UsageError("availability_start must be timezone-aware")
        fmp4 = [r.init is not None for r in renditions]
        if any(fmp4) and not all(fmp4):
            raise UsageError("mix of fMP4 and MPEG-TS renditions: one container per package")
        if scheme is Scheme.SAMPLE_AES and any(fmp4):
            raise UsageError("SAMPLE-AES is for MPEG-TS; fMP4 renditions use cbcs")
        if scheme in _CMAF and not all(fmp4):
            raise UsageError(f"{scheme.value} needs fMP4 renditions (give their init segments)")
        cmaf = scheme in _CMAF and all(fmp4)
        if dash is None:
            dash = cmaf
        if dash and not cmaf:
            raise UsageError(f"DASH needs fMP4 renditions with cenc or cbcs, not "
                             f"{scheme.value}{'' if all(fmp4) else ' over MPEG-TS'}")
        if not (hls or dash):
            raise UsageError("nothing to write: enable HLS or DASH")
        self.scheme = scheme
        self.schedule = schedule
        self.hls = hls
        self.dash = dash
        self.window = window
        if retain is not None and retain < 0:
            raise UsageError("retain must not be negative")
        self.retain = window if retain is None else retain
        self.delete_old = delete_old
        self.dash_addressing = dash_addressing
        self.hls_name = hls_name
        self.mpd_name = mpd_name
        self.availability_start = availability_start
        if utc_timing not in (None, "direct") and not str(utc_timing).startswith(
                ("http://", "https://")):
            raise UsageError("utc_timing must be 'direct', an http(s) URL or None")
        self.utc_timing = utc_timing
        self.writer: LiveWriter = (output if isinstance(output, LiveWriter)
                                   else FolderWriter(output))
        self._per_period_init = cmaf
        inits = {r.name: r.init for r in renditions if r.init is not None}
        self.session = LiveSession(key_source, schedule, scheme, inits=inits, key_uri=key_uri,
                                   drms=drms, key_policy=key_policy,
                                   iv_seed=iv_seed, moof_pssh=False, prefetch=prefetch,
                                   init_per_period=cmaf)
        self._lock = threading.Lock()  # manifests: render + write in one order
        self._grace_periods: set[int] = set()  # key periods begun on an earlier period's keys
        self._closed = False
        self._mv_text: str | None = None
        self._states: dict[str, _State] = {}
        for r in renditions:
            self._states[r.name] = self._state(r, target_duration)
        self._dash = DashState(
            [DashRendition(s.spec.name, s.kind, s.timescale, s.codecs, self._media_template(s),
                           s.width, s.height, s.spec.language) for s in self._states.values()],
            scheme, window=window, drms=drms, clearkey_license_url=clearkey_license_url
        ) if dash else None
        self._max_duration = 0.0

    def __repr__(self) -> str:
        return (f"LivePackager({self.scheme.value}, {self.writer!r}, "
                f"renditions={list(self._states)}, hls={self.hls}, dash={self.dash})")

    def _state(self, r: LiveRendition, target: int | None) -> _State:
        pl = LivePlaylist(None, window=self.window, target_duration=target)
        if r.init is None:
            return _State(r, TrackKind.OTHER, False, 90000, 0, r.codecs, 0, 0, pl)
        f = init_facts(r.init)
        return _State(r, f.kind, True, f.timescale, f.default_duration, r.codecs or f.codecs,
                      f.width, f.height, pl)

    def _media_template(self, s: _State) -> str:
        return f"{s.spec.name}/{'$Number$' if self.dash_addressing == 'number' else 't$Time$'}.m4s"

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LivePackager:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(end=exc_type is None)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, end: bool = True) -> None:
        """Stop the key prefetch; with ``end`` (default) end the presentation: every media
        playlist gets ``EXT-X-ENDLIST`` and the MPD becomes static with its
        ``mediaPresentationDuration``. ``end=False`` leaves the manifests as they are (a
        stream that another process resumes). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if end:
                with self._lock:
                    self._end()
        finally:
            self.session.close()

    def _end(self) -> None:
        for s in self._states.values():
            if s.published:
                s.playlist.end()
                if self.hls:
                    self.writer.write(f"{s.spec.name}.m3u8", s.playlist.render().encode())
        if self._dash is not None:
            self._dash.ended = True  # every Period with a segment, complete or not
            if self._dash.has_content():
                self._write_mpd()

    # -- segments --------------------------------------------------------------------------------
    def add_segment(self, rendition: str, data: bytes | bytearray | memoryview, *,
                    start_time: float, duration: float, sequence: int | None = None,
                    discontinuity: bool = False) -> PublishedSegment:
        """Encrypt and publish one complete segment of ``rendition`` that starts at media time
        ``start_time`` (seconds, on the schedule's timeline) and lasts ``duration`` seconds.
        ``sequence``: its media sequence number (default: one more than the previous one;
        they must be consecutive per rendition). ``discontinuity``: an encoder discontinuity
        before it (``EXT-X-DISCONTINUITY``)."""
        s = self._states.get(rendition)
        if s is None:
            raise UsageError(f"unknown rendition {rendition!r} (known: {', '.join(self._states)})")
        if not math.isfinite(duration) or duration <= 0:
            raise UsageError("a segment duration must be a positive number of seconds")
        if self._closed:
            raise UsageError("the live package is closed")
        target = s.playlist.target_duration
        if target is not None and round(duration) > target:
            raise ManifestError(f"rendition {rendition!r}: a {duration:.3f}s segment is over "
                                f"the HLS target duration ({target}s, fixed for the whole "
                                "presentation; set target_duration=...)")
        with s.lock:
            seq = sequence if sequence is not None else (s.next_sequence or 0)
            if s.next_sequence is not None and seq != s.next_sequence:
                raise UsageError(f"rendition {rendition!r}: segment {seq} does not follow "
                                 f"{s.next_sequence - 1} (sequence numbers are consecutive)")
            timing = fragment_timing(data, s.default_duration) if s.fmp4 else None
            seg = self.session.encrypt_segment(rendition, data, start_time=start_time,
                                               sequence=seq, duration=duration)
            init_uri = self._init(s, seg)
            ext = "m4s" if s.fmp4 else "ts"
            if s.fmp4 and self.dash_addressing == "time":
                assert timing is not None
                uri = f"{rendition}/t{timing[0]}.{ext}"
            else:
                uri = f"{rendition}/{seq}.{ext}"
            if uri in s.names:
                raise ManifestError(f"{uri} is still published: the decode time went back "
                                    "(an encoder restart?); $Time$ names collide, use "
                                    "dash_addressing='number'")
            self.writer.write(uri, seg.data)
            s.next_sequence = seq + 1
            s.peak = max(s.peak, math.ceil(len(seg.data) * 8 / duration))
            if seg.reused_key:
                log.warning("%s segment %d: published with the keys of an earlier key period "
                            "(key period %d's fetch failed)", rendition, seq, seg.period)
            self._publish(s, seg, uri, init_uri, start=start_time, duration=duration,
                          timing=timing, discontinuity=discontinuity)
        return PublishedSegment(rendition, seq, uri, seg.period, seg.kid, seg.key_changed,
                                init_uri, seg.reused_key)

    def _init(self, s: _State, seg: LiveSegment) -> str | None:
        """The init path this segment needs, written first when new."""
        if not s.fmp4:
            return None
        key = seg.key_period if self._per_period_init else 0
        have = s.inits.get(key)
        if have is not None:
            return have
        name = s.spec.name
        rel = f"{name}/init-{key}.mp4" if self._per_period_init else f"{name}/init.mp4"
        self.writer.write(rel, self.session.encrypt_init(name, period=seg.key_period,
                                                         key_period=seg.key_period))
        with self._lock:  # _delete_old reads every rendition's inits under this lock
            s.inits[key] = rel
        return rel

    def _wall(self, t: float) -> datetime:
        assert self.availability_start is not None
        return self.availability_start + timedelta(seconds=t - self.schedule.t0)

    def _publish(self, s: _State, seg: LiveSegment, uri: str, init_uri: str | None, *,
                 start: float, duration: float, timing: tuple[int, int] | None,
                 discontinuity: bool) -> None:
        with self._lock:
            if self._closed:
                raise UsageError("the live package is closed")
            if self.availability_start is None:
                self.availability_start = datetime.now(UTC) - timedelta(
                    seconds=start + duration - self.schedule.t0)
            self._max_duration = max(self._max_duration, duration)
            s.playlist.add(uri, duration, seg, init_uri=init_uri,
                           program_date_time=self._wall(start), discontinuity=discontinuity)
            s.published = True
            s.files.append((seg.sequence, seg.key_period, uri))
            s.names.add(uri)
            if self.hls:
                self.writer.write(f"{s.spec.name}.m3u8", s.playlist.render().encode())
                self._write_multivariant()
            if self._dash is not None:
                assert timing is not None and init_uri is not None and seg.entry is not None
                t0 = self.schedule.t0
                s.discontinuities += discontinuity
                if seg.reused_key:
                    self._grace_periods.add(seg.period)
                # a DASH Period per key: a segment published within the grace time stays in
                # the Period of the keys it was encrypted with; a key period whose start was
                # covered by grace keys begins where its own keys do
                kp = seg.key_period
                boundary = (start if kp in self._grace_periods
                            else self.schedule.bounds(kp)[0])
                self._dash.add(s.spec.name, period=kp, discontinuity=s.discontinuities,
                               boundary=boundary - t0,
                               media_time=start - t0, entry=seg.entry, init=init_uri,
                               number=seg.sequence, t=timing[0],
                               d=timing[1] or round(duration * s.timescale), rel=uri)
                self._dash.slide()
                self._dash.renditions[s.spec.name].bandwidth = self._bandwidth(s)
                if self._dash.has_content():  # once every rendition has a segment
                    self._write_mpd()
            for other in self._states.values():  # the MPD's window moves for all of them
                self._delete_old(other)

    def _write_mpd(self) -> None:
        assert self._dash is not None and self.availability_start is not None
        seg = max(self._max_duration, 0.001)
        self.writer.write(self.mpd_name, self._dash.render(
            availability_start=self.availability_start, publish=datetime.now(UTC),
            minimum_update_period=seg, suggested_delay=3 * seg, utc_timing=self.utc_timing))

    def _delete_old(self, s: _State) -> None:
        """Delete segments (and inits) ``retain`` segments after they left every manifest."""
        if not self.delete_old or self.window is None or self.retain is None:
            return
        first_hls = s.playlist.media_sequence if self.hls else math.inf
        dash_refs = self._dash.referenced(s.spec.name) if self._dash is not None else set()
        first = first_hls
        for seq, _p, rel in s.files:
            if rel in dash_refs:
                first = min(first, seq)
                break
        limit = first - self.retain
        while s.files and s.files[0][0] < limit:
            _seq, period, rel = s.files.popleft()
            s.names.discard(rel)
            self.writer.delete(rel)
        oldest = s.files[0][1] if s.files else None
        for period in sorted(s.inits):
            if oldest is not None and period < oldest and self._per_period_init:
                self.writer.delete(s.inits.pop(period))

    # -- HLS multivariant ------------------------------------------------------------------------
    def _bandwidth(self, s: _State) -> int:
        return s.spec.bandwidth or max(1, s.peak)

    def _write_multivariant(self) -> None:
        """Written once every rendition has its media playlist, rewritten when it changes."""
        states = list(self._states.values())
        if not all(s.published for s in states):
            return
        text = self._multivariant(states)
        if text != self._mv_text:
            self.writer.write(self.hls_name, text.encode())
            self._mv_text = text

    def _multivariant(self, states: list[_State]) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
        audio = [s for s in states if s.kind is TrackKind.AUDIO]
        video = [s for s in states if s.kind is not TrackKind.AUDIO]
        group = "audio" if audio and video else None
        for i, a in enumerate(audio if group else ()):
            attrs: list[tuple[str, AttrValue]] = [
                ("TYPE", "AUDIO"), ("GROUP-ID", Quoted(group or "")), ("NAME", Quoted(a.spec.name))]
            if a.spec.language:
                attrs.append(("LANGUAGE", Quoted(a.spec.language)))
            attrs += [("DEFAULT", "YES" if i == 0 else "NO"), ("AUTOSELECT", "YES"),
                      ("URI", Quoted(f"{a.spec.name}.m3u8"))]
            lines.append(f"#EXT-X-MEDIA:{format_attribute_list(attrs)}")
        peak_audio = max((self._bandwidth(a) for a in audio), default=0) if group else 0
        audio_codecs = next((a.codecs for a in audio if a.codecs), None) if group else None
        for v in video or audio:
            codecs = [c for c in (v.codecs, audio_codecs) if c]
            attrs = [("BANDWIDTH", str(self._bandwidth(v) + peak_audio))]
            if codecs and (v.codecs or not v.fmp4):
                attrs.append(("CODECS", Quoted(",".join(codecs))))
            if v.width and v.height:
                attrs.append(("RESOLUTION", f"{v.width}x{v.height}"))
            if group:
                attrs.append(("AUDIO", Quoted(group)))
            lines += [f"#EXT-X-STREAM-INF:{format_attribute_list(attrs)}", f"{v.spec.name}.m3u8"]
        return "\n".join(lines) + "\n"

    # -- diagnostics -----------------------------------------------------------------------------
    @property
    def fetches(self) -> int:
        """Key source calls started so far (one per key period with prefetch)."""
        return self.session.fetches
