"""The live MPD's state: one DASH Period per key period, each rendition's SegmentTimeline in it,
the sliding window, and the MPD built from it (:mod:`...manifests.dash_live`).

A Period is announced once every rendition has a segment in it (an AdaptationSet that appears
later in a live Period confuses players); until then the earlier Periods stay open. Its start is
the key period's start on the media timeline (availabilityStartTime is media time ``t0``); each
Representation's ``presentationTimeOffset`` maps its first segment there, so the segments' own
decode times (``tfdt``) address them and their ``$Time$`` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from ...constants import Scheme
from ...manifests.dash import content_protections
from ...manifests.dash_live import (
    MpdAdaptationSet,
    MpdPeriod,
    MpdRepresentation,
    MpdTimes,
    render_live_mpd,
)
from ...model import DrmSignal, KeyEntry, TrackKind
from ..protection import DASH_DRMS

__all__ = ["DashRendition", "DashState"]


@dataclass(slots=True)
class DashRendition:
    """What the MPD says about one rendition besides its segments."""

    name: str
    kind: TrackKind
    timescale: int
    codecs: str | None
    media: str  # template relative to the MPD
    width: int = 0
    height: int = 0
    language: str | None = None
    bandwidth: int = 0


@dataclass(slots=True)
class _Seg:
    number: int
    t: int
    d: int
    rel: str


@dataclass(slots=True)
class _Rep:
    entry: KeyEntry
    init: str
    pto: int
    segments: list[_Seg] = field(default_factory=list)


@dataclass(slots=True)
class _Period:
    key: tuple[int, int]  # (discontinuity count, key period index): the order of Periods
    start: float
    reps: dict[str, _Rep] = field(default_factory=dict)

    @property
    def id(self) -> str:
        disc, index = self.key
        return f"p{index}" if disc == 0 else f"p{index}d{disc}"


class DashState:
    """Not thread-safe: the packager calls it under its publication lock."""

    def __init__(self, renditions: Sequence[DashRendition], scheme: Scheme, *,
                 window: int | None, drms: Sequence[object] | None,
                 clearkey_license_url: str | None) -> None:
        self.renditions = {r.name: r for r in renditions}
        self.order = [r.name for r in renditions]
        self.scheme = scheme
        self.window = window
        self.drms = drms
        self.clearkey_license_url = clearkey_license_url
        self.periods: dict[tuple[int, int], _Period] = {}
        self.max_duration = 0.0
        self.ended = False

    def add(self, name: str, *, period: int, discontinuity: int, boundary: float,
            media_time: float, entry: KeyEntry, init: str, number: int, t: int, d: int,
            rel: str) -> None:
        """Record one published segment of ``name``: key period ``period`` after
        ``discontinuity`` encoder discontinuities, the period starting at ``boundary``
        seconds (presentation time), the segment at ``media_time`` seconds, its decode time
        ``t`` and duration ``d`` in the timescale. A discontinuity starts a new Period where it
        happens (the decode times may jump or restart there); key periods start at their
        boundary."""
        r = self.renditions[name]
        key = (discontinuity, period)
        p = self.periods.get(key)
        if p is None:
            split = any(k[1] == period and k[0] < discontinuity for k in self.periods)
            p = self.periods[key] = _Period(key, max(boundary, media_time) if split
                                            else boundary)
        rep = p.reps.get(name)
        if rep is None:
            pto = max(0, t - round((media_time - p.start) * r.timescale))
            rep = p.reps[name] = _Rep(entry, init, pto)
        rep.segments.append(_Seg(number, t, d, rel))
        self.max_duration = max(self.max_duration, d / r.timescale)

    def slide(self) -> None:
        """Keep each rendition's last ``window`` segments; a Period still in the window keeps
        at least the last segment of every Representation it has; Periods left empty go."""
        if self.window is None:
            return
        keep: dict[tuple[tuple[int, int], str], int] = {}  # (Period, name) -> kept at the end
        for name in self.order:
            left = self.window
            for idx in sorted(self.periods, reverse=True):
                rep = self.periods[idx].reps.get(name)
                if rep is not None:
                    keep[(idx, name)] = max(0, min(left, len(rep.segments)))
                    left -= keep[(idx, name)]
        for idx in sorted(self.periods):
            p = self.periods[idx]
            kept = any(keep.get((idx, n), 0) for n in p.reps)
            if not kept:
                del self.periods[idx]
                continue
            for name, rep in p.reps.items():
                n = max(1, keep.get((idx, name), 0))
                del rep.segments[:len(rep.segments) - n]

    def referenced(self, name: str) -> set[str]:
        """The segment and init paths of ``name`` the MPD names now."""
        out: set[str] = set()
        for p in self.periods.values():
            rep = p.reps.get(name)
            if rep is not None:
                out.add(rep.init)
                out.update(s.rel for s in rep.segments)
        return out

    def _announced(self) -> list[_Period]:
        """Periods in the MPD: all once ended, else up to the last one that every rendition
        has reached (a Period that slid partly out of the window stays announced)."""
        ps = [self.periods[i] for i in sorted(self.periods)]
        if self.ended:
            return [p for p in ps if p.reps]
        out: list[_Period] = []
        for p in ps:
            if out and not all(n in p.reps for n in self.order):
                break
            if out or self._reached(p):
                out.append(p)
        return out

    def _reached(self, p: _Period) -> bool:
        """Every rendition has a segment in ``p`` or a later Period."""
        return all(any(n in q.reps for k, q in self.periods.items() if k >= p.key)
                   for n in self.order)

    def end_time(self, periods: Sequence[_Period]) -> float:
        """The presentation end (seconds from the availability start) of ``periods``."""
        end = 0.0
        for p in periods:
            for name, rep in p.reps.items():
                if rep.segments:
                    last = rep.segments[-1]
                    ts = self.renditions[name].timescale
                    end = max(end, p.start + (last.t + last.d - rep.pto) / ts)
        return end

    def has_content(self) -> bool:
        return bool(self._announced())

    def render(self, *, availability_start: datetime, publish: datetime,
               minimum_update_period: float, suggested_delay: float | None,
               utc_timing: str | None) -> bytes:
        periods = self._announced()
        seg = max(self.max_duration, 0.001)
        times = MpdTimes(
            availability_start=availability_start, publish=publish,
            time_shift_buffer=None if self.window is None else self.window * seg,
            minimum_update_period=minimum_update_period, min_buffer_time=seg,
            max_segment_duration=seg, suggested_presentation_delay=suggested_delay,
            duration=self.end_time(periods) if self.ended else None, utc_timing=utc_timing)
        return render_live_mpd([self._period(p) for p in periods], times)

    def _signals(self, entry: KeyEntry) -> list[DrmSignal]:
        return [s for s in entry.drm if s.drm in DASH_DRMS
                and (self.drms is None or s.drm in self.drms)]

    def _period(self, p: _Period) -> MpdPeriod:
        sets: dict[tuple[TrackKind, UUID, str | None], MpdAdaptationSet] = {}
        for pos, name in enumerate(self.order):
            rep = p.reps.get(name)
            if rep is None or not rep.segments:
                continue
            r = self.renditions[name]
            group = (r.kind, rep.entry.kid, r.language)
            a = sets.get(group)
            if a is None:
                kind = "video" if r.kind is TrackKind.VIDEO else "audio"
                a = sets[group] = MpdAdaptationSet(
                    id=pos + 1, content_type=kind, mime_type=f"{kind}/mp4",
                    protections=content_protections(
                        rep.entry.kid, self.scheme, self._signals(rep.entry),
                        clearkey_license_url=self.clearkey_license_url),
                    representations=[], lang=r.language)
            a.representations.append(MpdRepresentation(
                id=name, bandwidth=r.bandwidth, codecs=r.codecs, timescale=r.timescale,
                media=r.media, initialization=rep.init,
                start_number=rep.segments[0].number, presentation_time_offset=rep.pto,
                segments=[(s.t, s.d) for s in rep.segments], width=r.width, height=r.height,
                sample_rate=r.timescale if r.kind is TrackKind.AUDIO else 0))
        return MpdPeriod(id=p.id, start=p.start, adaptation_sets=list(sets.values()))
