"""Keys per key period for live packaging: the key source (:class:`SpekeKeySource`: one SPEKE
request per period) and the session's bounded cache that fetches the next period ahead in one
background thread and, when asked to, reuses the last key after a failed fetch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from ...errors import KeyRotationError, SpekePackagerError, UsageError
from ...keys import EncryptionContract, SpekeClient
from ...model import KeyPeriod, KeySet
from ..rotation import RotationSchedule

__all__ = ["KeyCache", "PeriodKeySource", "PeriodKeys", "SpekeKeySource", "check_period"]

log = logging.getLogger(__name__)

PeriodKeySource = Callable[[int], KeySet]
"""A key source for live packaging: key period index -> the keys of that period."""


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


@dataclass(frozen=True, slots=True)
class PeriodKeys:
    """The key set in effect for one period."""

    keyset: KeySet
    source_period: int  # the period whose keys these are (differs when reused)
    reused: bool = False


class KeyCache:
    """Key sets by period: fetched on demand or ahead in one background thread, bounded."""

    def __init__(self, source: PeriodKeySource, schedule: RotationSchedule, *,
                 reuse_last_key_on_failure: bool) -> None:
        self._source = source
        self._schedule = schedule
        self._reuse = reuse_last_key_on_failure
        self._lock = threading.Lock()
        self._sets: dict[int, PeriodKeys] = {}
        self._pending: dict[int, Future[KeySet]] = {}
        self._last: tuple[int, KeySet] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self.fetches = 0  # key source calls started (diagnostics)
        self.failures = 0  # key source calls that failed

    def _run(self, index: int, fut: Future[KeySet]) -> None:
        try:
            ks = self._source(index)
            check_period(ks, index)
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

    def get(self, index: int) -> PeriodKeys:
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
                have = self._sets[index] = PeriodKeys(ks, index)
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
            have = self._sets[index] = PeriodKeys(last[1], last[0], reused=True)
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


def check_period(ks: KeySet, index: int) -> None:
    """``ks`` must hold keys, all of key period ``index``."""
    if not ks.entries:
        raise KeyRotationError(f"the key source returned no keys for key period {index}",
                               period=index)
    for e in ks.entries:
        if e.period is not None and e.period.index != index:
            raise KeyRotationError(f"the key source answered key period {e.period.index} "
                                   f"for key period {index} (KID {e.kid})", period=index)
