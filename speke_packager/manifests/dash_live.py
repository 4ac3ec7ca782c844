"""The live DASH MPD, written from scratch after every publication (ISO/IEC 23009-1, DASH-IF IOP
live profile): ``type="dynamic"`` with ``availabilityStartTime``, ``publishTime``,
``timeShiftBufferDepth`` and ``minimumUpdatePeriod`` while live; ``type="static"`` with
``mediaPresentationDuration`` once ended. Every Representation is addressed with a
``SegmentTemplate`` + ``SegmentTimeline`` (``$Number$`` or ``$Time$``). Key rotation is a new
Period per key period (the caller builds one :class:`MpdPeriod` each), so every Period carries
its own ``cenc:default_KID`` and ContentProtection (:func:`.dash.content_protections`).
Built with lxml, never with strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from ..constants import DASH_PROFILE_LIVE, DASH_UTC_DIRECT, DASH_UTC_HTTP_ISO, NS_MPD
from ..errors import ManifestError
from .dash import CP_NSMAP, render_mpd

__all__ = ["MpdAdaptationSet", "MpdPeriod", "MpdRepresentation", "MpdTimes", "render_live_mpd",
           "xs_datetime", "xs_duration"]

_M = f"{{{NS_MPD}}}"


def xs_duration(seconds: float) -> str:
    """Seconds -> xs:duration (``PT12.5S``; milliseconds at most)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ManifestError(f"bad duration {seconds!r}")
    ms = round(seconds * 1000)
    whole, frac = divmod(ms, 1000)
    return f"PT{whole}.{frac:03d}".rstrip("0") + "S" if frac else f"PT{whole}S"


def xs_datetime(t: datetime) -> str:
    """A timezone-aware time -> xs:dateTime in UTC with milliseconds (``...T12:00:00.000Z``)."""
    if t.tzinfo is None:
        raise ManifestError("MPD times must be timezone-aware")
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class MpdRepresentation:
    """One Representation of one Period. ``segments``: (t, d) in ``timescale`` units, in
    order; ``start_number``: the ``$Number$`` of the first. ``media`` / ``initialization``:
    template and URL relative to the MPD."""

    id: str
    bandwidth: int
    codecs: str | None
    timescale: int
    media: str
    initialization: str | None
    start_number: int
    presentation_time_offset: int
    segments: list[tuple[int, int]]
    width: int = 0
    height: int = 0
    frame_rate: str | None = None
    sample_rate: int = 0


@dataclass(slots=True)
class MpdAdaptationSet:
    id: int
    content_type: str  # 'video' | 'audio'
    mime_type: str
    protections: list[etree._Element]  # ContentProtection elements, in order
    representations: list[MpdRepresentation]
    lang: str | None = None


@dataclass(slots=True)
class MpdPeriod:
    id: str
    start: float  # seconds from availabilityStartTime
    adaptation_sets: list[MpdAdaptationSet] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MpdTimes:
    """The MPD-level timing. ``duration``: the presentation's end (seconds from the
    availability start) once it has ended (static MPD); None while live. ``utc_timing`` (live
    only): ``"direct"`` writes the publish time as the clock players synchronise with (it can
    only be late by the MPD's age, which delays the live edge, never advances it), a URL
    answering an ISO 8601 time (``http-iso``), or None for no ``UTCTiming``."""

    availability_start: datetime
    publish: datetime
    time_shift_buffer: float | None
    minimum_update_period: float
    min_buffer_time: float
    max_segment_duration: float
    suggested_presentation_delay: float | None = None
    duration: float | None = None
    utc_timing: str | None = "direct"  # 'direct' (publish time), a time URL, or None


def _timeline(parent: etree._Element, segments: Sequence[tuple[int, int]]) -> None:
    tl = etree.SubElement(parent, f"{_M}SegmentTimeline")
    prev_end: int | None = None
    last: etree._Element | None = None
    last_d = 0
    for t, d in segments:
        if d <= 0:
            raise ManifestError("a segment of the timeline has no duration")
        if last is not None and t == prev_end and d == last_d:
            last.set("r", str(int(last.get("r", "0")) + 1))
        else:
            last = etree.SubElement(tl, f"{_M}S")
            last.set("t", str(t))
            last.set("d", str(d))
            last_d = d
        prev_end = t + d


def render_live_mpd(periods: Sequence[MpdPeriod], times: MpdTimes) -> bytes:
    """The MPD of ``periods`` (each with at least one Representation holding a segment)."""
    if not periods:
        raise ManifestError("a live MPD needs at least one Period")
    nsmap: dict[str | None, str] = {None: NS_MPD}
    nsmap.update(CP_NSMAP)
    root = etree.Element(f"{_M}MPD", nsmap=nsmap)  # type: ignore[arg-type]
    root.set("profiles", DASH_PROFILE_LIVE)
    ended = times.duration is not None
    root.set("type", "static" if ended else "dynamic")
    root.set("availabilityStartTime", xs_datetime(times.availability_start))
    root.set("publishTime", xs_datetime(times.publish))
    if ended:
        assert times.duration is not None
        root.set("mediaPresentationDuration", xs_duration(times.duration))
    else:
        root.set("minimumUpdatePeriod", xs_duration(times.minimum_update_period))
        if times.time_shift_buffer is not None:
            root.set("timeShiftBufferDepth", xs_duration(times.time_shift_buffer))
        if times.suggested_presentation_delay is not None:
            root.set("suggestedPresentationDelay",
                     xs_duration(times.suggested_presentation_delay))
    root.set("maxSegmentDuration", xs_duration(times.max_segment_duration))
    root.set("minBufferTime", xs_duration(times.min_buffer_time))
    for p in periods:
        pe = etree.SubElement(root, f"{_M}Period")
        pe.set("id", p.id)
        pe.set("start", xs_duration(p.start))
        for a in p.adaptation_sets:
            if not a.representations:
                continue
            ae = etree.SubElement(pe, f"{_M}AdaptationSet")
            ae.set("id", str(a.id))
            ae.set("contentType", a.content_type)
            ae.set("mimeType", a.mime_type)
            if a.lang:
                ae.set("lang", a.lang)
            ae.set("segmentAlignment", "true")
            ae.set("startWithSAP", "1")
            for cp in a.protections:
                ae.append(cp)
            for r in a.representations:
                _representation(ae, r)
    if not ended and times.utc_timing:
        direct = times.utc_timing == "direct"
        ut = etree.SubElement(root, f"{_M}UTCTiming")
        ut.set("schemeIdUri", DASH_UTC_DIRECT if direct else DASH_UTC_HTTP_ISO)
        ut.set("value", xs_datetime(times.publish) if direct else times.utc_timing)
    return render_mpd(root)


def _representation(parent: etree._Element, r: MpdRepresentation) -> None:
    if not r.segments:
        raise ManifestError(f"Representation {r.id!r} has no segment in this Period")
    re_ = etree.SubElement(parent, f"{_M}Representation")
    re_.set("id", r.id)
    re_.set("bandwidth", str(max(1, r.bandwidth)))
    if r.codecs:
        re_.set("codecs", r.codecs)
    if r.width and r.height:
        re_.set("width", str(r.width))
        re_.set("height", str(r.height))
    if r.frame_rate:
        re_.set("frameRate", r.frame_rate)
    if r.sample_rate:
        re_.set("audioSamplingRate", str(r.sample_rate))
    st = etree.SubElement(re_, f"{_M}SegmentTemplate")
    st.set("timescale", str(r.timescale))
    if r.initialization is not None:
        st.set("initialization", r.initialization)
    st.set("media", r.media)
    if "$Number" in r.media:
        st.set("startNumber", str(r.start_number))
    st.set("presentationTimeOffset", str(r.presentation_time_offset))
    _timeline(st, r.segments)
