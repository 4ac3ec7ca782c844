"""Keys per key period for live packaging, with the failure rules of a production encoder.

:class:`SpekeKeySource` asks a SPEKE server for the keys of one key period per request (every
version: v1 and v2.0 send the period's ``index``; v2.1 also its ``start``/``end`` wall-clock
times when the schedule has an ``origin``), or of several periods per request where the
version allows it (SPEKE v1 only: ``LiveKeyPolicy(periods_per_request=N)``).

:class:`KeyCache` is what a live session asks on its segment path (``get(index, media_time)``):

- **prefetch**: the next period is fetched in a background thread once media time is within
  ``lead`` seconds of the boundary; the segment path never does network I/O for it. Only when a
  segment needs keys that are missing does it wait: for the fetch in flight (for a late
  prefetch at most ``wait`` seconds while grace keys may stand in), or (no keys, no grace
  left) for one more attempt it asks for.
- **retries**: one fetch is the :class:`~speke_packager.keys.SpekeClient`'s request with its
  own retries (transient failures only: timeouts, connection errors, 408/429/5xx; never
  4xx or an invalid answer); a fetch that still fails with a transient error is tried again
  in the background with exponential back-off and jitter (``backoff`` doubling up to
  ``max_backoff``) until it succeeds, the period is no longer needed, or the cache closes.
- **grace**: while a period's keys are missing, its segments may use the keys in use before it
  for ``grace`` seconds of media time past the end of that period; each such segment is logged
  at WARNING and its :class:`PeriodKeys` says ``grace=True`` and whose keys they are
  (``source_period``), so the packager keeps announcing that key. Keys that arrive within the
  grace time are used from the next segment on.
- **stop**: past the grace time (or at once with ``grace=0``) :class:`KeyGraceExpired` (a
  :class:`~speke_packager.errors.KeyRotationError`) is raised: the caller must stop publishing
  new segments. Nothing is ever handed out clear or with keys of an unknown period.

Options for a command line (``encrypt-live``), all in :class:`LiveKeyPolicy`::

    --rotation SECONDS            RotationSchedule(interval=SECONDS)
    --key-lead SECONDS            LiveKeyPolicy(lead=SECONDS)    default: one interval
    --key-grace SECONDS           LiveKeyPolicy(grace=SECONDS)   default: 0 (fail closed)
    --retries N                   LiveKeyPolicy(retries=N)       default: 3
    --retry-backoff SECONDS       LiveKeyPolicy(backoff=...)     default: 0.5
    --retry-max-backoff SECONDS   LiveKeyPolicy(max_backoff=...) default: 30
    --key-periods-per-request N   LiveKeyPolicy(periods_per_request=N)  SPEKE v1 only
    --key-wait SECONDS            LiveKeyPolicy(wait=...)        default: 2

and build the client with ``SpekeClient(url, ..., **policy.client_options())``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from ...constants import SpekeVersion
from ...errors import KeyGraceExpired, KeyRotationError, SpekePackagerError, UsageError
from ...keys import EncryptionContract, SpekeClient
from ...keys.client import backoff_delay, is_transient
from ...keys.request import MAX_PERIODS_PER_REQUEST, check_periods_per_request
from ...model import KeyEntry, KeyPeriod, KeySet
from ..rotation import RotationSchedule

__all__ = [
    "BatchPeriodKeySource",
    "KeyCache",
    "LiveKeyPolicy",
    "PeriodKeySource",
    "PeriodKeys",
    "SpekeKeySource",
    "check_period",
    "split_periods",
]

log = logging.getLogger(__name__)

PeriodKeySource = Callable[[int], KeySet]
"""A key source for live packaging: key period index -> the keys of that period."""


@runtime_checkable
class BatchPeriodKeySource(Protocol):
    """A key source that can also fetch several periods at once (one request)."""

    def __call__(self, index: int) -> KeySet: ...

    def fetch_periods(self, indexes: Sequence[int]) -> Mapping[int, KeySet]: ...


# --- the options ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiveKeyPolicy:
    """How a live session gets its keys (see the module docstring for the CLI mapping).

    ``lead``: seconds of media time before a period boundary when the next period's keys are
    requested (None: the schedule's lead, by default one interval; speke.md §9 advises at least
    one interval and twice the client's worst case including retries). ``grace``: seconds of
    media time past the end of the period whose keys are in use during which its keys may
    stand in for missing ones (0: fail closed at the boundary). ``retries``, ``backoff``,
    ``max_backoff``: the client's retries within one fetch (:meth:`client_options`) and the
    back-off between background fetches. ``periods_per_request``: key periods per SPEKE
    request (more than one needs SPEKE v1 and a server that takes several keys per document).
    ``wait``: how long a segment waits for its period's keys while their prefetch is still in
    flight before, within the grace time, the previous keys stand in (without grace keys it
    waits for the request to end, which the client's total deadline bounds).
    """

    lead: float | None = None
    grace: float = 0.0
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    periods_per_request: int = 1
    wait: float = 2.0

    def __post_init__(self) -> None:
        def seconds(name: str, v: float | None) -> None:
            if v is not None and (not math.isfinite(v) or v < 0):
                raise UsageError(f"the key {name} must be a non-negative number of seconds")

        seconds("lead", self.lead)
        seconds("grace time", self.grace)
        seconds("retry back-off", self.backoff)
        seconds("retry back-off limit", self.max_backoff)
        seconds("wait", self.wait)
        if self.backoff > self.max_backoff:
            raise UsageError("the retry back-off must not exceed its limit")
        if not 0 <= self.retries <= 100:
            raise UsageError("key request retries must be between 0 and 100")
        if not 1 <= self.periods_per_request <= MAX_PERIODS_PER_REQUEST:
            raise UsageError(f"key periods per request must be between 1 and "
                             f"{MAX_PERIODS_PER_REQUEST}")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~speke_packager.keys.SpekeClient`."""
        return {"retries": self.retries, "backoff": self.backoff,
                "max_backoff": self.max_backoff}


# --- the SPEKE source -------------------------------------------------------------------------
class SpekeKeySource:
    """Keys of key periods over SPEKE: ``contract`` with the period(s) set. With a schedule
    whose ``origin`` is set, SPEKE v2.1 periods carry their ``start``/``end`` times (other
    versions send the index only, as their schemas require)."""

    def __init__(self, client: SpekeClient, contract: EncryptionContract, *,
                 schedule: RotationSchedule | None = None) -> None:
        self.client = client
        self.contract = contract
        self.schedule = schedule

    def __repr__(self) -> str:
        return f"SpekeKeySource({self.client!r}, content_id={self.contract.content_id!r})"

    @property
    def max_periods_per_request(self) -> int:
        return 1 if self.contract.version.is_v2 else MAX_PERIODS_PER_REQUEST

    def _period(self, index: int) -> KeyPeriod:
        if self.schedule is None:
            return KeyPeriod(index=index)
        return self.schedule.key_period(
            index, times=self.contract.version is SpekeVersion.V2_1)

    def __call__(self, index: int) -> KeySet:
        return self.client.fetch(replace(self.contract, period=self._period(index), periods=()))

    def fetch_periods(self, indexes: Sequence[int]) -> dict[int, KeySet]:
        """The keys of ``indexes`` in one request (SPEKE v1), split per period."""
        check_periods_per_request(self.contract.version, len(indexes))
        periods = [self._period(i) for i in indexes]
        ks = self.client.fetch_periods(self.contract, periods, per_request=len(periods))
        return split_periods(ks, indexes)


def check_period(ks: KeySet, index: int) -> None:
    """``ks`` must hold keys, all of key period ``index``."""
    if not ks.entries:
        raise KeyRotationError(f"the key source returned no keys for key period {index}",
                               period=index)
    for e in ks.entries:
        if e.period is not None and e.period.index != index:
            raise KeyRotationError(f"the key source answered key period {e.period.index} "
                                   f"for key period {index} (KID {e.kid})", period=index)


def split_periods(ks: KeySet, indexes: Sequence[int]) -> dict[int, KeySet]:
    """A multi-period key set split per period: every period of ``indexes`` must have keys,
    and every key must name one of them."""
    want = set(indexes)
    out: dict[int, list[KeyEntry]] = {i: [] for i in indexes}
    for e in ks.entries:
        if e.period is None or e.period.index not in want:
            got = "no key period" if e.period is None else f"key period {e.period.index}"
            raise KeyRotationError(f"the key source answered {got} for key periods "
                                   f"{sorted(want)} (KID {e.kid})", period=min(want))
        out[e.period.index].append(e)
    for i, entries in out.items():
        if not entries:
            raise KeyRotationError(f"the key source returned no keys for key period {i}",
                                   period=i)
    return {i: replace(ks, entries=tuple(entries)) for i, entries in out.items()}


# --- the cache --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeriodKeys:
    """The keys to use for a segment of key period ``period``: those of ``source_period``
    (the same period, or with ``grace`` the period in use before it while this one's keys are
    missing; ``grace_left``: seconds of media time of grace left after this segment start)."""

    keyset: KeySet = field(repr=False)
    source_period: int
    grace: bool = False
    period: int | None = None
    grace_left: float | None = None

    @property
    def reused(self) -> bool:
        """Old name of :attr:`grace`."""
        return self.grace


@dataclass(eq=False)
class _Job:
    """One background fetch of one or several periods, with its retries."""

    indexes: tuple[int, ...]
    wake: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    attempts: int = 0
    failures: int = 0
    error: BaseException | None = None
    final: bool = False  # no further attempt will run (keys stored, final error, cancelled)
    cancelled: bool = False
    thread: threading.Thread | None = None


class KeyCache:
    """Key sets by period, fetched ahead in background threads, with retries, a bounded grace
    time and a typed stop (module docstring). Thread-safe."""

    def __init__(self, source: PeriodKeySource, schedule: RotationSchedule, *,
                 policy: LiveKeyPolicy | None = None) -> None:
        policy = policy or LiveKeyPolicy()
        if policy.periods_per_request > 1:
            if not isinstance(source, BatchPeriodKeySource):
                raise UsageError("this key source fetches one key period per request")
            if isinstance(source, SpekeKeySource):
                check_periods_per_request(source.contract.version, policy.periods_per_request)
            cap = getattr(source, "max_periods_per_request", MAX_PERIODS_PER_REQUEST)
            if policy.periods_per_request > cap:
                raise UsageError(f"this key source fetches at most {cap} key period(s) per "
                                 "request")
        lead = schedule.prefetch_lead if policy.lead is None else policy.lead
        if lead > 10 * schedule.interval:
            raise UsageError("the key prefetch lead must be at most 10 intervals")
        self._source = source
        self._schedule = schedule
        self.policy = policy
        self._lead = lead
        self._cond = threading.Condition()
        self._sets: dict[int, KeySet] = {}
        self._jobs: dict[int, _Job] = {}
        self._current: tuple[int, KeySet] | None = None  # the keys last handed out (not grace)
        self._closed = False
        self._threads: list[threading.Thread] = []
        self.fetches = 0  # key source calls started (diagnostics)
        self.failures = 0  # key source calls that failed
        self.grace_segments = 0  # get() answers that used grace keys

    def __repr__(self) -> str:
        return f"KeyCache(cached={self.cached()}, policy={self.policy!r})"

    # -- background fetches ----------------------------------------------------------------------
    def _start(self, index: int) -> _Job:
        """A new background job for ``index`` (and the following missing periods, up to
        ``periods_per_request``); call with the lock held."""
        if self._closed:
            raise UsageError("the live session is closed")
        idx = [index]
        while len(idx) < self.policy.periods_per_request:
            nxt = idx[-1] + 1
            if nxt in self._sets or nxt in self._jobs:
                break
            idx.append(nxt)
        job = _Job(tuple(idx))
        for i in idx:
            self._jobs[i] = job
        job.thread = threading.Thread(target=self._worker, args=(job,), daemon=True,
                                      name=f"speke-live-keys-{index}")
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(job.thread)
        job.thread.start()
        return job

    def _fetch(self, indexes: tuple[int, ...]) -> dict[int, KeySet]:
        if len(indexes) == 1:
            ks = self._source(indexes[0])
            check_period(ks, indexes[0])
            return {indexes[0]: ks}
        assert isinstance(self._source, BatchPeriodKeySource)
        got = dict(self._source.fetch_periods(indexes))
        if set(got) != set(indexes):
            raise KeyRotationError(f"the key source answered key periods {sorted(got)} for "
                                   f"{list(indexes)}", period=indexes[0])
        for i, ks in got.items():
            check_period(ks, i)
        return got

    def _worker(self, job: _Job) -> None:
        while True:
            with self._cond:
                if self._closed or job.cancelled:
                    job.final = True
                    self._cond.notify_all()
                    return
                job.running = True
                self.fetches += 1
            got: dict[int, KeySet] | None = None
            err: BaseException | None = None
            try:
                got = self._fetch(job.indexes)
            except BaseException as exc:  # handed to whoever waits
                err = exc
            with self._cond:
                job.running = False
                job.attempts += 1
                if got is not None:
                    for i, ks in got.items():
                        if not job.cancelled:
                            self._sets[i] = ks
                        if self._jobs.get(i) is job:
                            del self._jobs[i]
                    job.final = True
                    job.error = None
                    self._cond.notify_all()
                    return
                self.failures += 1
                job.failures += 1
                job.error = err
                what = _periods_text(job.indexes)
                if err is None or not is_transient(err) or self._closed or job.cancelled:
                    job.final = True
                    log.warning("%s: key request failed, not retried: %s", what, err)
                    self._cond.notify_all()
                    return
                delay = backoff_delay(job.failures, self.policy.backoff,
                                      self.policy.max_backoff)
                log.warning("%s: key request failed (%s); retrying in %.2fs in the background "
                            "(failure %d)", what, err, delay, job.failures)
                job.wake.clear()
                self._cond.notify_all()
            job.wake.wait(delay)

    # -- the segment path ------------------------------------------------------------------------
    def get(self, index: int, media_time: float | None = None) -> PeriodKeys:
        """The keys for a segment of period ``index`` starting at ``media_time`` (default: the
        period's start): the period's own, or within the grace time the keys in use before
        it. Raises :class:`KeyGraceExpired` / :class:`KeyRotationError` when there are none.

        Waits for a fetch in flight when no grace keys may stand in, or when this call started
        it (no prefetch); for a late prefetch within the grace time at most ``policy.wait``
        seconds."""
        t = self._schedule.bounds(index)[0] if media_time is None else media_time
        kicked = False
        started_here = False  # this call started the fetch (no prefetch): wait for it
        target = 0
        give_up: float | None = None
        with self._cond:
            while True:
                ks = self._sets.get(index)
                if ks is not None:
                    if self._current is None or self._current[0] <= index:
                        self._current = (index, ks)
                    return PeriodKeys(ks, index, period=index)
                job = self._jobs.get(index)
                if job is None:
                    job = self._start(index)
                    started_here = True
                if not job.final and (job.failures == 0 or (kicked and job.attempts < target)):
                    # the attempt in flight (or the one asked for below): wait for it; for a
                    # late prefetch at most ``wait`` seconds while grace keys may stand in
                    if kicked or started_here or not self._grace_open(index, t):
                        self._cond.wait()
                        continue
                    if give_up is None:
                        give_up = time.monotonic() + self.policy.wait
                    left = give_up - time.monotonic()
                    if left > 0:
                        self._cond.wait(left)
                        continue
                pk = self._grace(index, t, job.error)
                if pk is not None:
                    return pk
                if kicked:
                    raise self._no_keys(index, t, job.error)
                kicked = True  # needed and missing: one more attempt now, then give up
                if job.final:
                    for i in job.indexes:
                        if self._jobs.get(i) is job:
                            del self._jobs[i]
                    job = self._start(index)
                    target = 1
                else:
                    target = job.attempts + 1
                    job.wake.set()

    def _grace_left(self, index: int, t: float) -> float:
        """Seconds of grace time left at media time ``t`` for period ``index`` (<= 0: none)."""
        cur = self._current
        if cur is None or cur[0] >= index or self.policy.grace <= 0:
            return 0.0
        return self._schedule.bounds(cur[0])[1] + self.policy.grace - t

    def _grace_open(self, index: int, t: float) -> bool:
        return self._grace_left(index, t) > 1e-9

    def _grace(self, index: int, t: float, error: BaseException | None) -> PeriodKeys | None:
        if error is not None and not isinstance(error, SpekePackagerError):
            return None
        left = self._grace_left(index, t)
        cur = self._current
        if left <= 1e-9 or cur is None:
            return None
        self.grace_segments += 1
        why = error if error is not None else "its key request is still in flight"
        log.warning("KEY GRACE: key period %d has no keys (%s); the segment at %.3fs uses the "
                    "keys of key period %d, %.3fs of the %gs grace time left", index, why, t,
                    cur[0], left, self.policy.grace)
        return PeriodKeys(cur[1], cur[0], grace=True, period=index, grace_left=left)

    def _no_keys(self, index: int, t: float, error: BaseException | None) -> BaseException:
        if error is not None and not isinstance(error, SpekePackagerError):
            return error
        cur = self._current
        exc: KeyRotationError
        if self.policy.grace > 0 and cur is not None and cur[0] < index:
            end = self._schedule.bounds(cur[0])[1]
            exc = KeyGraceExpired(
                f"key period {index} has no keys ({error}); the {self.policy.grace:g}s grace "
                f"time after key period {cur[0]} (until media time {end + self.policy.grace:.3f}s)"
                f" is used up at {t:.3f}s: stop publishing", period=index)
        else:
            exc = KeyRotationError(f"no keys for key period {index}: {error}", period=index)
        exc.__cause__ = error
        log.error("%s", exc)
        return exc

    # -- prefetch and housekeeping ---------------------------------------------------------------
    def prefetch(self, t: float) -> int | None:
        """Start fetching the period that ``t`` calls for (``schedule.next_fetch`` with the
        policy's lead) in the background. Returns the period started, or None."""
        with self._cond:
            if self._closed:
                return None
            want = self._schedule.next_fetch(t, set(self._sets) | set(self._jobs),
                                             lead=self._lead)
            if want is None:
                return None
            self._start(want)
            return want

    def ready(self, index: int, timeout: float | None) -> bool:
        """True once the keys of ``index`` are held, waiting up to ``timeout`` seconds for the
        attempt in flight; False when none is, or it failed. Never starts a fetch."""
        with self._cond:
            def settled() -> bool:
                job = self._jobs.get(index)
                return (index in self._sets or job is None or job.final
                        or (job.failures > 0 and not job.running))
            self._cond.wait_for(settled, timeout)
            return index in self._sets

    def evict_below(self, index: int) -> None:
        """Forget key sets of periods before ``index`` and stop fetches only they need."""
        with self._cond:
            for i in [i for i in self._sets if i < index]:
                del self._sets[i]
            for i, job in list(self._jobs.items()):
                if i < index:
                    del self._jobs[i]
                    if all(x < index for x in job.indexes):
                        job.cancelled = True
                        job.wake.set()
            self._cond.notify_all()

    def cached(self) -> list[int]:
        with self._cond:
            return sorted(self._sets)

    def close(self) -> None:
        """Stop background fetches (waits for requests in flight)."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                job.cancelled = True
                job.wake.set()
            threads, self._threads = self._threads, []
            self._cond.notify_all()
        for t in threads:
            if t is not threading.current_thread():
                t.join()


def _periods_text(indexes: Sequence[int]) -> str:
    if len(indexes) == 1:
        return f"key period {indexes[0]}"
    return f"key periods {indexes[0]}-{indexes[-1]}"
