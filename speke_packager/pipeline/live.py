"""Live packaging for transcoders: one segment in, one encrypted segment out, keys rotating per
key period over SPEKE (speke.md §9, media-encryption.md §1, §4, §8).

:class:`LiveSession` holds a key source (``period index -> KeySet``; :class:`SpekeKeySource`
asks a SPEKE server one period per request), a :class:`~.rotation.RotationSchedule` and the
scheme. The caller owns I/O and threads: it hands over each segment with its media start time
and sequence number and gets back a :class:`LiveSegment` (encrypted bytes, the key period, the
``EXT-X-KEY`` lines to write before it when the key changed, the moof pssh boxes of fMP4 in-band
rotation). The next period's keys are fetched in a background thread ``lead`` seconds before the
boundary; only the current and next periods are kept. :class:`LivePlaylist` keeps a sliding
window of a media playlist and writes it atomically.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from uuid import UUID

from .._io import write_text_atomic
from ..constants import W3C_COMMON, DrmSystem, Scheme
from ..drm.pssh import build_pssh
from ..errors import (
    KeyRotationError,
    ManifestError,
    SpekePackagerError,
    UnsupportedMediaError,
    UsageError,
)
from ..keys import EncryptionContract, SpekeClient
from ..manifests.hls import (
    TAG_ENDLIST,
    TAG_EXTINF,
    TAG_MAP,
    TAG_MEDIA_SEQUENCE,
    HlsKey,
    MediaPlaylist,
    MediaSegment,
    render_media_playlist,
)
from ..manifests.hls_attrs import Quoted, format_attribute_list
from ..manifests.hls_signaling import hls_keys, server_iv
from ..media.aes128 import encrypt_aes128
from ..media.mp4 import Mp4Encryptor, probe_init
from ..media.ts import SampleAesEncryptor, probe_ts
from ..model import KeyEntry, KeyPeriod, KeySet, TrackInfo
from .contexts import HLS_DRMS
from .rotation import RotationSchedule

__all__ = [
    "LivePlaylist",
    "LiveSegment",
    "LiveSession",
    "PeriodKeySource",
    "SpekeKeySource",
]

log = logging.getLogger(__name__)

PeriodKeySource = Callable[[int], KeySet]
"""A key source for live packaging: key period index -> the keys of that period."""

_TS_SCHEMES = (Scheme.AES_128, Scheme.SAMPLE_AES)
_PSSH_DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY)


class SpekeKeySource:
    """Keys of one key period per SPEKE request: ``contract`` with ``period`` set to the index
    (and, with a schedule that has a wall-clock ``origin``, the v2.1 start/end times)."""

    def __init__(self, client: SpekeClient, contract: EncryptionContract, *,
                 schedule: RotationSchedule | None = None) -> None:
        self.client = client
        self.contract = contract
        self.schedule = schedule

    def __repr__(self) -> str:
        return f"SpekeKeySource({self.client!r}, content_id={self.contract.content_id!r})"

    def __call__(self, index: int) -> KeySet:
        period = (self.schedule.key_period(index) if self.schedule is not None
                  else KeyPeriod(index=index))
        return self.client.fetch(replace(self.contract, period=period))


# --- the segment handed back ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiveSegment:
    """One encrypted segment. ``key_lines``: the ``EXT-X-KEY`` lines to write before it (empty
    when the rendition's key set is unchanged since its previous segment); ``keys``: the whole
    key set in effect; ``pssh``: the pssh boxes put in each moof (fMP4 in-band rotation);
    ``reused_key``: the period's fetch failed and the previous period's key was used."""

    data: bytes = field(repr=False)
    rendition: str
    sequence: int
    start_time: float
    period: int
    kid: UUID
    keys: tuple[HlsKey, ...] = field(repr=False)
    key_lines: tuple[str, ...] = field(repr=False)
    pssh: tuple[bytes, ...] = field(default=(), repr=False)
    reused_key: bool = False

    @property
    def key_changed(self) -> bool:
        return bool(self.key_lines)


# --- key cache ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _PeriodKeys:
    keyset: KeySet
    source_period: int  # the period whose keys these are (differs when reused)
    reused: bool = False


class _KeyCache:
    """Key sets by period: fetched on demand or ahead in one background thread, bounded."""

    def __init__(self, source: PeriodKeySource, schedule: RotationSchedule, *,
                 reuse_last_key_on_failure: bool) -> None:
        self._source = source
        self._schedule = schedule
        self._reuse = reuse_last_key_on_failure
        self._lock = threading.Lock()
        self._sets: dict[int, _PeriodKeys] = {}
        self._pending: dict[int, Future[KeySet]] = {}
        self._last: tuple[int, KeySet] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self.fetches = 0  # key source calls started (diagnostics)
        self.failures = 0  # key source calls that failed

    def _run(self, index: int, fut: Future[KeySet]) -> None:
        try:
            ks = self._source(index)
            _check_period(ks, index)
        except BaseException as exc:  # handed to whoever waits
            fut.set_exception(exc)
        else:
            fut.set_result(ks)

    def _start(self, index: int, *, background: bool) -> tuple[Future[KeySet], bool]:
        """The in-flight fetch of ``index`` (a new one when none); call with the lock held.
        Returns (future, whether the caller must run it in its own thread)."""
        fut = self._pending.get(index)
        if fut is not None:
            return fut, False
        if self._closed:
            raise UsageError("the live session is closed")
        fut = Future()
        self._pending[index] = fut
        self.fetches += 1
        if not background:
            return fut, True
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="speke-live-prefetch")
        self._executor.submit(self._run, index, fut)
        return fut, False

    def get(self, index: int) -> _PeriodKeys:
        """The keys of period ``index``, waiting for (or making) the fetch; fails closed or
        reuses the last key set, as configured."""
        with self._lock:
            have = self._sets.get(index)
            if have is not None:
                return have
            old = self._pending.get(index)
            if old is not None and old.done() and old.exception() is not None:
                self.failures += 1  # a failed prefetch: try again now
                log.warning("key period %d: prefetch failed (%s); fetching again", index,
                            old.exception())
                del self._pending[index]
            fut, run_here = self._start(index, background=False)
        if run_here:
            self._run(index, fut)
        exc = fut.exception()
        with self._lock:
            if self._pending.get(index) is fut:
                del self._pending[index]
            have = self._sets.get(index)
            if have is not None:  # another thread finished it meanwhile
                return have
            if exc is None:
                ks = fut.result()
                have = self._sets[index] = _PeriodKeys(ks, index)
                if self._last is None or self._last[0] <= index:
                    self._last = (index, ks)
                return have
            self.failures += 1
            last = self._last
            if not isinstance(exc, SpekePackagerError):
                raise exc
            if not self._reuse or last is None or last[0] > index:
                raise KeyRotationError(f"no keys for key period {index}: {exc}",
                                       period=index) from exc
            log.warning("key period %d: key fetch failed (%s); reusing the keys of period %d",
                        index, exc, last[0])
            have = self._sets[index] = _PeriodKeys(last[1], last[0], reused=True)
            return have

    def prefetch(self, t: float) -> int | None:
        """Start fetching the period that ``t`` calls for (schedule.next_fetch) in the
        background; a failed earlier prefetch is retried. Returns the period started."""
        with self._lock:
            for i, fut in list(self._pending.items()):
                if fut.done() and fut.exception() is not None:
                    self.failures += 1
                    log.warning("key period %d: prefetch failed (%s); retrying", i,
                                fut.exception())
                    del self._pending[i]
            want = self._schedule.next_fetch(t, set(self._sets) | set(self._pending))
            if want is None:
                return None
            self._start(want, background=True)
            return want

    def ready(self, index: int, timeout: float | None) -> bool:
        with self._lock:
            if index in self._sets:
                return True
            fut = self._pending.get(index)
        if fut is None:
            return False
        try:
            fut.result(timeout)
        except BaseException:  # a failure or a timeout: not ready
            return False
        return True

    def evict_below(self, index: int) -> None:
        """Forget key sets (and finished fetches) of periods before ``index``."""
        with self._lock:
            for i in [i for i in self._sets if i < index]:
                del self._sets[i]
            for i in [i for i, f in self._pending.items() if i < index and f.done()]:
                del self._pending[i]

    def cached(self) -> list[int]:
        with self._lock:
            return sorted(self._sets)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)
        with self._lock:  # prefetches cancelled before they ran: nobody may wait on them
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(UsageError("the live session is closed"))


def _check_period(ks: KeySet, index: int) -> None:
    if not ks.entries:
        raise KeyRotationError(f"the key source returned no keys for key period {index}",
                               period=index)
    for e in ks.entries:
        if e.period is not None and e.period.index != index:
            raise KeyRotationError(f"the key source answered key period {e.period.index} "
                                   f"for key period {index} (KID {e.kid})", period=index)


# --- renditions -----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Rendition:
    name: str
    init: bytes | None  # clear fMP4 init; None for TS
    tracks: list[TrackInfo]
    lock: threading.Lock = field(default_factory=threading.Lock)
    mp4: Mp4Encryptor | None = None
    sae: dict[UUID, SampleAesEncryptor] = field(default_factory=dict)
    last_keys: tuple[HlsKey, ...] | None = None
    period: int | None = None


class LiveSession:
    """Segment-at-a-time encryption with key rotation; thread-safe, no global state.

    ``key_source``: ``period index -> KeySet`` (:class:`SpekeKeySource` or any callable).
    ``schedule``: key periods of ``interval`` seconds from ``t0`` (its ``lead``, default one
    interval, is when the next period is prefetched). ``scheme``: ``cenc``/``cbcs`` (fMP4, give
    the clear init of each rendition in ``inits``), ``aes-128`` (TS or fMP4) or ``sample-aes``
    (TS). TS renditions are registered by their first segment. ``key_uri``: identity key URI
    template (``{kid}`` = 32 hex digits) for keys without HLS signaling (raw keys). ``drms``:
    DRMs signalled in HLS (None: every DRM of the key that fits the scheme). ``iv_seed``: makes
    IVs deterministic (None: random per session). On a failed fetch the session raises
    :class:`~speke_packager.errors.KeyRotationError` unless ``reuse_last_key_on_failure``.
    """

    def __init__(
        self,
        key_source: PeriodKeySource,
        schedule: RotationSchedule,
        scheme: Scheme,
        *,
        inits: Mapping[str, bytes] | None = None,
        key_uri: str | None = None,
        drms: Sequence[DrmSystem] | None = None,
        reuse_last_key_on_failure: bool = False,
        iv_seed: bytes | None = None,
        moof_pssh: bool = True,
        prefetch: bool = True,
    ) -> None:
        if not isinstance(scheme, Scheme):
            raise UsageError(f"scheme must be a Scheme, not {scheme!r}")
        if inits and scheme is Scheme.SAMPLE_AES:
            raise UnsupportedMediaError("SAMPLE-AES is for MPEG-TS segments; fMP4 segments use "
                                        "cbcs (HLS METHOD=SAMPLE-AES on fMP4 is cbcs)")
        if iv_seed is not None and len(iv_seed) < 8:
            raise UsageError("iv_seed must be at least 8 bytes")
        self.schedule = schedule
        self.scheme = scheme
        self.key_uri = key_uri
        self.drms = tuple(drms) if drms is not None else None
        self.moof_pssh = moof_pssh
        self.prefetch_enabled = prefetch
        self._seed = iv_seed if iv_seed is not None else os.urandom(16)
        self._keys = _KeyCache(key_source, schedule,
                               reuse_last_key_on_failure=reuse_last_key_on_failure)
        self._lock = threading.Lock()
        self._renditions: dict[str, _Rendition] = {}
        for name, init in (inits or {}).items():
            self._renditions[name] = _Rendition(name, bytes(init), probe_init(init))

    def __repr__(self) -> str:
        return (f"LiveSession({self.scheme.value}, interval={self.schedule.interval}, "
                f"renditions={list(self._renditions)})")

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the prefetch thread (waits for a fetch in flight)."""
        self._keys.close()

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- diagnostics -----------------------------------------------------------------------------
    @property
    def cached_periods(self) -> list[int]:
        """Key periods whose keys are held now (at most the current and the next)."""
        return self._keys.cached()

    @property
    def fetches(self) -> int:
        """Key source calls started so far."""
        return self._keys.fetches

    # -- keys ------------------------------------------------------------------------------------
    def prefetch(self, media_time: float) -> int | None:
        """Start fetching whatever period ``media_time`` calls for (normally called for you by
        :meth:`encrypt_segment`); returns the period index started, or None."""
        return self._keys.prefetch(media_time)

    def ready(self, period: int, timeout: float | None = None) -> bool:
        """True when the keys of ``period`` are held, waiting up to ``timeout`` seconds for a
        fetch in flight (None: as long as it takes); False when none is held or the fetch
        failed. Never starts a fetch."""
        return self._keys.ready(period, timeout)

    def keys_for(self, period: int) -> KeySet:
        """The key set used for ``period`` (fetched if needed; the previous period's when it
        was reused after a failure)."""
        return self._keys.get(period).keyset

    def _iv(self, entry: KeyEntry) -> bytes:
        """The 16-byte IV of a key: the key server's, else derived from the seed and KID."""
        if entry.key.iv is not None:
            return entry.key.iv.ljust(16, b"\x00")
        listed = server_iv(entry)
        if listed is not None:
            return listed
        return hashlib.sha256(b"speke-packager/live-iv" + self._seed + entry.kid.bytes
                              ).digest()[:16]

    def _entry(self, r: _Rendition, pk: _PeriodKeys, period: int) -> KeyEntry:
        found: dict[UUID, KeyEntry] = {}
        for t in r.tracks:
            e = pk.keyset.select(t, period=pk.source_period)
            if e is not None:
                found[e.kid] = e
        if not found:
            raise KeyRotationError(f"rendition {r.name!r}: no key of period {period} matches "
                                   "its tracks", period=period)
        if len(found) > 1:
            raise KeyRotationError(f"rendition {r.name!r} selects several keys in period "
                                   f"{period} ({', '.join(map(str, found))}); HLS needs one key "
                                   "per rendition: demux the tracks or use one key for all",
                                   period=period)
        return next(iter(found.values()))

    def _hls_keys(self, entry: KeyEntry, iv: bytes) -> tuple[HlsKey, ...]:
        fits = HLS_DRMS[self.scheme]
        drms = [s.drm for s in entry.drm if s.drm in fits
                and (self.drms is None or s.drm in self.drms)]
        uri = self.key_uri.replace("{kid}", entry.kid.hex) if self.key_uri else None
        return tuple(hls_keys(entry, self.scheme, iv=iv, key_uri=uri, drms=drms))

    # -- renditions ------------------------------------------------------------------------------
    def _rendition(self, name: str, data: bytes | memoryview | None) -> _Rendition:
        with self._lock:
            r = self._renditions.get(name)
            if r is not None:
                return r
        if data is None:
            raise UsageError(f"unknown rendition {name!r} (fMP4 renditions need their init in "
                             "inits=...)")
        if self.scheme not in _TS_SCHEMES:
            raise UsageError(f"rendition {name!r} has no init segment: {self.scheme.value} "
                             "needs fMP4 with its init in inits=...")
        tracks = probe_ts(bytes(data[:188 * 2048]))
        with self._lock:
            return self._renditions.setdefault(name, _Rendition(name, None, tracks))

    def _mp4(self, r: _Rendition, entry: KeyEntry, iv: bytes) -> Mp4Encryptor:
        """The rendition's encryptor, made with the first key it sees (the init's default KID);
        call with ``r.lock`` held."""
        if r.mp4 is None:
            assert r.init is not None
            key = replace(entry.key, iv=iv) if self.scheme is Scheme.CBCS else entry.key
            keys = {t.track_id: key for t in r.tracks}
            r.mp4 = Mp4Encryptor(r.init, self.scheme, keys, pssh=_pssh_boxes(entry),
                                 iv_seed=hashlib.sha256(b"speke-packager/live-seed" + self._seed
                                                        + r.name.encode()).digest()[:16],
                                 iv_size=8)
        return r.mp4

    def encrypt_init(self, rendition: str, *, start_time: float | None = None) -> bytes:
        """The protected init segment of an fMP4 rendition. Its default KID is the key of the
        period holding ``start_time`` (default: the schedule's ``t0``) at the rendition's first
        call (init or segment); later periods are signalled per fragment (seig + moof pssh).
        ``aes-128``: the clear init (whole-segment encryption leaves it clear)."""
        r = self._rendition(rendition, None)
        if r.init is None:
            raise UsageError(f"rendition {rendition!r} is MPEG-TS: it has no init segment")
        if self.scheme is Scheme.AES_128:
            return r.init
        t = self.schedule.t0 if start_time is None else start_time
        period = self.schedule.index(t)
        pk = self._keys.get(period)
        entry = self._entry(r, pk, period)
        iv = self._iv(entry)
        with r.lock:
            return self._mp4(r, entry, iv).encrypted_init()

    def encrypt_segment(self, rendition: str, data: bytes | bytearray | memoryview, *,
                        start_time: float, sequence: int, duration: float | None = None
                        ) -> LiveSegment:
        """Encrypt one segment of ``rendition`` starting at media time ``start_time`` with
        media sequence number ``sequence``. ``duration``, when given, is checked against the
        key-period boundary (keys change at segment boundaries only)."""
        if sequence < 0:
            raise UsageError("the media sequence number must not be negative")
        if not math.isfinite(start_time):
            raise UsageError("start_time must be a finite number of seconds")
        period = self.schedule.index(start_time)
        data = data if isinstance(data, bytes) else bytes(data)
        if duration is not None:
            self.schedule.segment_periods([start_time], [start_time + duration])
        r = self._rendition(rendition, data)
        if r.init is None and self.scheme not in _TS_SCHEMES:
            raise UnsupportedMediaError(f"MPEG-TS segments cannot carry {self.scheme.value}")
        pk = self._keys.get(period)
        entry = self._entry(r, pk, period)
        iv = self._iv(entry)
        keys = self._hls_keys(entry, iv)
        pssh: tuple[bytes, ...] = ()
        mp4 = r.init is not None and self.scheme is not Scheme.AES_128
        with r.lock:  # only the rendition's state; encryption runs outside the lock
            enc = self._mp4(r, entry, iv) if mp4 else None
            sae: SampleAesEncryptor | None = None
            if self.scheme is Scheme.SAMPLE_AES:
                sae = r.sae.get(entry.kid)
                if sae is None:  # keep the previous period's too (late segments)
                    r.sae = dict(list(r.sae.items())[-1:])
                    sae = r.sae[entry.kid] = SampleAesEncryptor(entry.key.key, iv)
            lines = () if keys == r.last_keys else tuple(k.render() for k in keys)
            r.last_keys = keys
            r.period = period
        if enc is not None:
            key = replace(entry.key, iv=iv) if self.scheme is Scheme.CBCS else entry.key
            pssh = tuple(_pssh_boxes(entry)) if self.moof_pssh else ()
            out = enc.encrypt_segment(data, segment_index=sequence,
                                      keys={t.track_id: key for t in r.tracks}, pssh=pssh)
        elif sae is not None:
            out = sae.encrypt_segment(data)
        else:
            out = encrypt_aes128(data, entry.key.key, iv)
        low = min((x.period for x in self._renditions.values() if x.period is not None),
                  default=period)
        self._keys.evict_below(low)
        if self.prefetch_enabled:  # N + 1 once N's start is within the lead of the boundary
            self._keys.prefetch(start_time)
        return LiveSegment(data=out, rendition=rendition, sequence=sequence,
                           start_time=start_time, period=period, kid=entry.kid, keys=keys,
                           key_lines=lines, pssh=pssh, reused_key=pk.reused)


def _pssh_boxes(entry: KeyEntry) -> list[bytes]:
    """The key server's pssh boxes of ``entry`` (Widevine, PlayReady, ClearKey), else a W3C
    common one naming its KID."""
    out = [s.pssh for s in entry.drm if s.pssh and s.drm in _PSSH_DRMS]
    if not any(s.drm is DrmSystem.CLEARKEY and s.pssh for s in entry.drm):
        out.append(build_pssh(W3C_COMMON, kids=[entry.kid]))
    return out


# --- playlist -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Entry:
    uri: str
    duration: float
    sequence: int
    keys: tuple[HlsKey, ...]


class LivePlaylist:
    """A live media playlist with a sliding window of ``window`` segments, written atomically
    to ``path`` after every :meth:`add`.

    The full key set (every KEYFORMAT) is written before the window's first segment and again
    at each key change, so a window that slid past a key change still carries the tags that
    cover its first segment. ``init_uri``: the ``EXT-X-MAP`` of fMP4 renditions."""

    def __init__(self, path: str | os.PathLike[str], *, window: int = 6,
                 target_duration: int | None = None, init_uri: str | None = None) -> None:
        if window < 1:
            raise UsageError("the playlist window must hold at least one segment")
        if target_duration is not None and target_duration < 1:
            raise UsageError("the target duration must be at least 1 second")
        self.path = Path(path)
        self.window = window
        self.target_duration = target_duration
        self.init_uri = init_uri
        self._entries: list[_Entry] = []
        self._ended = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LivePlaylist({str(self.path)!r}, window={self.window})"

    @property
    def media_sequence(self) -> int:
        with self._lock:
            return self._entries[0].sequence if self._entries else 0

    def add(self, uri: str, duration: float, segment: LiveSegment) -> None:
        """Append ``segment`` (written at ``uri``, ``duration`` seconds), slide the window and
        rewrite the playlist."""
        if not math.isfinite(duration) or duration <= 0:
            raise UsageError("a segment duration must be a positive number of seconds")
        if any(c in uri for c in "\r\n") or not uri:
            raise ManifestError(f"bad segment URI {uri!r}")
        with self._lock:
            if self._ended:
                raise UsageError("the playlist has ended (EXT-X-ENDLIST)")
            if self._entries and segment.sequence != self._entries[-1].sequence + 1:
                raise UsageError(f"segment {segment.sequence} does not follow "
                                 f"{self._entries[-1].sequence} (media sequence numbers must "
                                 "be consecutive)")
            if self.target_duration is None:
                self.target_duration = max(1, math.ceil(duration - 1e-6))
            if round(duration) > self.target_duration:
                raise ManifestError(f"segment {uri} lasts {duration:.3f}s, over the target "
                                    f"duration {self.target_duration}s")
            self._entries.append(_Entry(uri, duration, segment.sequence, segment.keys))
            del self._entries[:-self.window]
            text = self._render()
        write_text_atomic(self.path, text)

    def end(self) -> None:
        """Write ``EXT-X-ENDLIST`` (the event is over)."""
        with self._lock:
            self._ended = True
            text = self._render()
        write_text_atomic(self.path, text)

    def render(self) -> str:
        """The playlist text as it is now."""
        with self._lock:
            return self._render()

    def _render(self) -> str:
        if not self._entries:
            raise ManifestError("a live playlist needs at least one segment")
        header = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{self.target_duration}",
                  f"{TAG_MEDIA_SEQUENCE}:{self._entries[0].sequence}"]
        if self.init_uri is not None:
            header.append(f"{TAG_MAP}:{format_attribute_list([('URI', Quoted(self.init_uri))])}")
        segs = [MediaSegment(uri=e.uri, duration=e.duration, sequence=e.sequence,
                             items=[f"{TAG_EXTINF}:{e.duration:.3f},"]) for e in self._entries]
        pl = MediaPlaylist(header=header, segments=segs,
                           trailer=[TAG_ENDLIST] if self._ended else [])
        return render_media_playlist(pl, [list(e.keys) for e in self._entries],
                                     version=6 if self.init_uri is not None else 3)
