"""The live session: one segment in, one encrypted segment out, with the key period's key, IV,
``EXT-X-KEY`` lines and moof pssh boxes (speke.md §9, media-encryption.md §1, §4, §8).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from uuid import UUID

from ...constants import DrmSystem, Scheme
from ...errors import KeyRotationError, UnsupportedMediaError, UsageError
from ...manifests.hls import HlsKey
from ...manifests.hls_signaling import hls_keys
from ...media.aes128 import encrypt_aes128
from ...media.mp4 import Mp4Encryptor, probe_init
from ...media.ts import SampleAesEncryptor, probe_ts
from ...model import ContentKey, KeyEntry, KeySet, TrackInfo
from ..protection import Protection, live_cenc_seed, live_iv, protect, rendition_iv
from ..rotation import RotationSchedule
from .periods import KeyCache, LiveKeyPolicy, PeriodKeys, PeriodKeySource

__all__ = ["LiveSegment", "LiveSession"]

_TS_SCHEMES = (Scheme.AES_128, Scheme.SAMPLE_AES)
AUDIO_OVERRUN = 0.05  # seconds a segment may run past its key period's end (whole AAC frames)


# --- the segment handed back ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiveSegment:
    """One encrypted segment. ``key_lines``: the ``EXT-X-KEY`` lines to write before it (empty
    when the rendition's key set is unchanged since its previous segment); ``keys``: the whole
    key set in effect; ``pssh``: the pssh boxes put in each moof (fMP4 in-band rotation);
    ``reused_key``: the period's keys were missing and, within the grace time, the keys in use
    before it were used (logged at WARNING; see :class:`~.periods.KeyCache`);
    ``entry``: the key entry used (its DRM signaling, for manifests; holds the key: never log
    it); ``key_period``: the key period whose keys encrypted it (``period`` itself, or within
    the grace time an earlier one)."""

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
    entry: KeyEntry | None = field(default=None, repr=False, compare=False)
    key_period: int = -1

    @property
    def key_changed(self) -> bool:
        return bool(self.key_lines)


# --- renditions -----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Rendition:
    name: str
    init: bytes | None  # clear fMP4 init; None for TS
    tracks: list[TrackInfo]
    lock: threading.Lock = field(default_factory=threading.Lock)
    mp4: Mp4Encryptor | None = None
    mp4s: dict[int, Mp4Encryptor] = field(default_factory=dict)  # init_per_period: by period
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
    IVs deterministic (None: random per session). ``key_policy``: prefetch lead, retries, grace
    time and periods per request (:class:`~.periods.LiveKeyPolicy`); when a period's keys are
    missing past the grace time the session raises
    :class:`~speke_packager.errors.KeyGraceExpired` (a ``KeyRotationError``; with no grace
    time, or no earlier keys, a plain ``KeyRotationError``) and hands out no segment.
    ``init_per_period``: fMP4 cenc/cbcs renditions get one init per key period (its ``tenc``
    default KID and IV are the period's; ask for it with ``encrypt_init(name, period=N)``) and
    each period's segments are encrypted with that default key, so they need no ``seig`` group
    (rotation by new init / new DASH Period); otherwise one init for the whole session and
    later periods are signalled in band (``seig`` + moof pssh).
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
        key_policy: LiveKeyPolicy | None = None,
        iv_seed: bytes | None = None,
        moof_pssh: bool = True,
        prefetch: bool = True,
        init_per_period: bool = False,
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
        self.init_per_period = init_per_period
        self._seed = iv_seed if iv_seed is not None else os.urandom(16)
        self._keys = KeyCache(key_source, schedule, policy=key_policy)
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
        """The key set used for ``period`` (fetched if needed; within the grace time, the keys in
        use before it when its own are missing)."""
        return self._keys.get(period).keyset

    def _iv(self, key: ContentKey) -> bytes:
        """The 16-byte IV of a key: the key server's, else derived from the seed and KID."""
        return rendition_iv(key, lambda: live_iv(self._seed, key))

    def _protect(self, r: _Rendition, entry: KeyEntry) -> Protection:
        """The rendition's key, IV, IV size, pssh boxes and HLS DRMs in this period."""
        return protect(entry, self.scheme, fmp4=r.init is not None, iv=self._iv, drms=self.drms)

    def _entry(self, r: _Rendition, pk: PeriodKeys, period: int) -> KeyEntry:
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

    def _hls_keys(self, p: Protection) -> tuple[HlsKey, ...]:
        entry = p.entry
        drms = [s.drm for s in entry.drm if s.drm in p.drms]
        uri = self.key_uri.replace("{kid}", entry.kid.hex) if self.key_uri else None
        return tuple(hls_keys(entry, self.scheme, iv=p.iv, key_uri=uri, drms=drms))

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

    def _mp4(self, r: _Rendition, p: Protection, period: int) -> Mp4Encryptor:
        """The rendition's encryptor: one made with the first key it sees (the init's default
        KID), or with ``init_per_period`` one per key period whose keys it holds (``period``:
        the source period of the keys, which within the grace time is an earlier one than the
        segment's, so the init and the segments keep one default KID); call with ``r.lock``
        held."""
        if self.init_per_period:
            enc = r.mp4s.get(period)
            if enc is None:
                enc = r.mp4s[period] = self._new_mp4(r, p)
                for old in sorted(r.mp4s)[:-2]:  # the current and the previous period
                    del r.mp4s[old]
            return enc
        if r.mp4 is None:
            r.mp4 = self._new_mp4(r, p)
        return r.mp4

    def _new_mp4(self, r: _Rendition, p: Protection) -> Mp4Encryptor:
        assert r.init is not None
        keys = {t.track_id: _segment_key(p) for t in r.tracks}
        return Mp4Encryptor(r.init, self.scheme, keys, pssh=p.pssh,
                            iv_seed=live_cenc_seed(self._seed, r.name), iv_size=p.iv_size)

    def encrypt_init(self, rendition: str, *, start_time: float | None = None,
                     period: int | None = None, key_period: int | None = None) -> bytes:
        """The protected init segment of an fMP4 rendition. Its default KID is the key of the
        period holding ``start_time`` (default: the schedule's ``t0``), or of ``period``, at the
        rendition's first call (init or segment); later periods are signalled per fragment
        (seig + moof pssh). With ``init_per_period`` it is the init of that key period.
        ``key_period`` (with ``init_per_period``): the init of the keys a segment was encrypted
        with (:attr:`LiveSegment.key_period`), without asking the key source again.
        ``aes-128``: the clear init (whole-segment encryption leaves it clear)."""
        r = self._rendition(rendition, None)
        if r.init is None:
            raise UsageError(f"rendition {rendition!r} is MPEG-TS: it has no init segment")
        if self.scheme is Scheme.AES_128:
            return r.init
        if key_period is not None and self.init_per_period:
            with r.lock:
                enc = r.mp4s.get(key_period)
                if enc is not None:
                    return enc.encrypted_init()
        if period is None:
            t = self.schedule.t0 if start_time is None else start_time
            period = self.schedule.index(t)
        elif period < 0:
            raise UsageError("key period indexes start at 0")
        else:
            t = self.schedule.bounds(period)[0] if start_time is None else start_time
        pk = self._keys.get(period, t)
        p = self._protect(r, self._entry(r, pk, period))
        with r.lock:
            return self._mp4(r, p, pk.source_period).encrypted_init()

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
            # an encoder's audio segments end on whole frames, not where the video's do: one
            # that starts in a key period may run a few milliseconds into the next and stays
            # in its period (keys change at segment starts); a larger overrun is an interval
            # that is not a multiple of the segment duration
            self.schedule.segment_periods([start_time], [start_time + duration],
                                          overrun=min(0.1 * duration, AUDIO_OVERRUN))
        r = self._rendition(rendition, data)
        if r.init is None and self.scheme not in _TS_SCHEMES:
            raise UnsupportedMediaError(f"MPEG-TS segments cannot carry {self.scheme.value}")
        pk = self._keys.get(period, start_time)
        entry = self._entry(r, pk, period)
        p = self._protect(r, entry)
        keys = self._hls_keys(p)
        pssh: tuple[bytes, ...] = ()
        mp4 = r.init is not None and self.scheme is not Scheme.AES_128
        with r.lock:  # only the rendition's state; encryption runs outside the lock
            enc = self._mp4(r, p, pk.source_period) if mp4 else None
            sae: SampleAesEncryptor | None = None
            if self.scheme is Scheme.SAMPLE_AES:
                assert p.iv is not None
                sae = r.sae.get(entry.kid)
                if sae is None:  # keep the previous period's too (late segments)
                    r.sae = dict(list(r.sae.items())[-1:])
                    sae = r.sae[entry.kid] = SampleAesEncryptor(entry.key.key, p.iv)
            lines = () if keys == r.last_keys else tuple(k.render() for k in keys)
            r.last_keys = keys
            r.period = period
        if enc is not None:
            key = _segment_key(p)
            pssh = p.pssh if self.moof_pssh else ()
            out = enc.encrypt_segment(data, segment_index=sequence,
                                      keys={t.track_id: key for t in r.tracks}, pssh=pssh)
        elif sae is not None:
            out = sae.encrypt_segment(data)
        else:
            assert p.iv is not None
            out = encrypt_aes128(data, entry.key.key, p.iv)
        low = min((x.period for x in self._renditions.values() if x.period is not None),
                  default=period)
        self._keys.evict_below(low)
        if self.prefetch_enabled:  # N + 1 once N's start is within the lead of the boundary
            self._keys.prefetch(start_time)
        return LiveSegment(data=out, rendition=rendition, sequence=sequence,
                           start_time=start_time, period=period, kid=entry.kid, keys=keys,
                           key_lines=lines, pssh=pssh, reused_key=pk.grace, entry=entry,
                           key_period=pk.source_period)


def _segment_key(p: Protection) -> ContentKey:
    """The key handed to the fMP4 encryptor: for cbcs it carries the period's constant IV (a
    new key period writes a new seig), for cenc it is the key as is."""
    return replace(p.key, iv=p.iv) if p.scheme is Scheme.CBCS else p.key
