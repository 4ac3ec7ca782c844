"""Key rotation arithmetic: media time -> key period, period bounds, when to fetch the next keys.

The index scheme is ours (speke.md §9): ``index = floor((t - t0) / interval)``. Key servers key on
(content id, KID), so any stable scheme works; SPEKE v2.1 live periods also carry their
xs:dateTime ``start``/``end`` (the wall-clock time the key is used from/until), which
:meth:`RotationSchedule.key_period` fills from a wall-clock origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import UsageError
from ..model import KeyPeriod


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RotationSchedule:
    """Crypto-periods of ``interval`` seconds from media time ``t0``.

    ``lead``: how long before a boundary the next period's keys should be requested (at least
    one interval is advised; speke.md §9). ``origin``: wall-clock time of media time ``t0``, for
    the v2.1 ``start``/``end`` of each period."""

    interval: float
    t0: float = 0.0
    lead: float | None = None
    origin: datetime | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.interval) or self.interval <= 0:
            raise UsageError("the key rotation interval must be a positive number of seconds")
        if self.lead is not None and not 0 <= self.lead <= 10 * self.interval:
            raise UsageError("the key prefetch lead must be between 0 and 10 intervals")
        if self.origin is not None and self.origin.tzinfo is None:
            raise UsageError("the rotation origin must be timezone-aware")

    @property
    def prefetch_lead(self) -> float:
        return self.interval if self.lead is None else self.lead

    def index(self, t: float) -> int:
        """The key period holding media time ``t`` (a boundary belongs to the later period)."""
        if t < self.t0:
            raise UsageError(f"media time {t} is before the rotation start {self.t0}")
        # a tiny tolerance keeps 5.999999999 (accumulated float durations) in period 0 of 6 s
        return math.floor((t - self.t0) / self.interval + 1e-9)

    def bounds(self, index: int) -> tuple[float, float]:
        """Media-time [start, end) of period ``index``."""
        if index < 0:
            raise UsageError("key period indexes start at 0")
        start = self.t0 + index * self.interval
        return start, start + self.interval

    def segment_periods(self, starts: list[float], ends: list[float], *,
                        overrun: float = 1e-6) -> list[int]:
        """The period of each segment, by its start; a segment running more than ``overrun``
        seconds past its period's end raises (keys change at segment boundaries only: align the
        interval to the segments)."""
        out = []
        for s, e in zip(starts, ends, strict=True):
            i = self.index(s)
            if e - max(overrun, 1e-6) > self.bounds(i)[1]:
                raise UsageError(f"the segment at {s:.3f}s crosses a key-period boundary; use "
                                 "an interval that is a multiple of the segment duration")
            out.append(i)
        return out

    def next_fetch(self, t: float, have: set[int], *, lead: float | None = None) -> int | None:
        """The period whose keys should be requested now (None: nothing to do): the current
        one if missing, else the next one once ``t`` is within the lead (``lead``, default
        :attr:`prefetch_lead`) of the boundary."""
        cur = self.index(t)
        if cur not in have:
            return cur
        lead = self.prefetch_lead if lead is None else lead
        if self.bounds(cur)[1] - t <= lead + 1e-9 and cur + 1 not in have:
            return cur + 1
        return None

    def key_period(self, index: int, *, times: bool = True) -> KeyPeriod:
        """A :class:`KeyPeriod` for ``index``; with ``times`` and a wall-clock ``origin`` it
        carries its bounds as xs:dateTime in UTC with milliseconds (``start``/``end`` of SPEKE
        v2.1 live periods: media time ``t`` is wall-clock ``origin + (t - t0)``)."""
        start, end = self.bounds(index)
        if self.origin is None or not times:
            return KeyPeriod(index=index)
        base = self.origin - timedelta(seconds=self.t0)
        return KeyPeriod(index=index, start=_iso(base + timedelta(seconds=start)),
                         end=_iso(base + timedelta(seconds=end)))
