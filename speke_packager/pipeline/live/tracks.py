"""What the live manifests need to know about a rendition, read from its media: the RFC 6381
codecs string of an fMP4 init (:mod:`speke_packager.media.mp4.codec_string`), the timescale, and the
decode time and duration of a CMAF segment (``tfdt`` and the ``trun`` sample durations)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from ...errors import Mp4FormatError, UnsupportedMediaError
from ...media.mp4.boxes import Node, iter_boxes, parse_tree
from ...media.mp4.codec_string import known_codec_string
from ...media.mp4.fragment import (
    TFHD_BASE_DATA_OFFSET,
    TFHD_DURATION,
    TFHD_SDI,
    TRUN_DATA_OFFSET,
    TRUN_DURATION,
    TRUN_FIRST_FLAGS,
)
from ...media.mp4.init import TrackSetup, parse_init
from ...model import TrackKind

__all__ = ["InitFacts", "fragment_timing", "init_facts"]


@dataclass(frozen=True, slots=True)
class InitFacts:
    """One fMP4 rendition (a single track): kind, timescale, codecs (None when unknown), size,
    default sample duration (from trex)."""

    kind: TrackKind
    timescale: int
    codecs: str | None
    width: int
    height: int
    channels: int
    default_duration: int


def _codecs(t: TrackSetup, entry: Node | None) -> str | None:
    if entry is None:
        return None
    # An already-protected entry (encv/enca) is described by its original format (frma).
    return known_codec_string(replace(entry, type=t.fourcc).to_bytes())


def init_facts(init: bytes) -> InitFacts:
    """The one track of a clear fMP4 init; :class:`UnsupportedMediaError` for several tracks
    (live renditions are demuxed: one track per init, as CMAF wants)."""
    parsed = parse_init(init)
    media = [t for t in parsed.tracks.values() if t.kind in (TrackKind.VIDEO, TrackKind.AUDIO)]
    if len(media) != 1:
        raise UnsupportedMediaError(f"a live fMP4 rendition needs exactly one audio or video "
                                    f"track per init segment, not {len(media)}")
    t = media[0]
    entry = None
    stsd = parsed.traks[t.track_id].find(b"mdia")
    for name in (b"minf", b"stbl", b"stsd"):
        stsd = stsd.find(name) if stsd is not None else None
    if stsd is not None and stsd.children:
        entry = stsd.children[0]
    return InitFacts(t.kind, t.timescale, _codecs(t, entry), t.width, t.height, t.channels,
                     t.default_sample_duration)


def fragment_timing(data: bytes | bytearray | memoryview, default_duration: int) -> tuple[int, int]:
    """(decode time of the first sample, summed sample durations) of a CMAF segment, in the
    track's timescale. :class:`Mp4FormatError` when there is no moof with a tfdt."""
    mv = memoryview(data)
    start: int | None = None
    total = 0
    for box in iter_boxes(mv, path="segment"):
        if box.type != b"moof":
            continue
        moof = parse_tree(mv, box, "segment")
        for traf in moof.find_all(b"traf"):
            tfdt = traf.find(b"tfdt")
            if tfdt is not None and start is None:
                p = tfdt.payload
                start = struct.unpack_from(">Q" if p[0] == 1 else ">I", p, 4)[0]
            total += _traf_duration(traf, default_duration)
    if start is None:
        raise Mp4FormatError("the segment has no moof with a tfdt (not a CMAF segment)",
                             box_path="segment")
    return start, total


def _traf_duration(traf: Node, default: int) -> int:
    p = traf.need(b"tfhd").payload
    flags = int.from_bytes(p[1:4], "big")
    pos = 8 + 8 * bool(flags & TFHD_BASE_DATA_OFFSET) + 4 * bool(flags & TFHD_SDI)
    if flags & TFHD_DURATION:
        default = struct.unpack_from(">I", p, pos)[0]
    total = 0
    for trun in traf.find_all(b"trun"):
        q = trun.payload
        tflags = int.from_bytes(q[1:4], "big")
        count = struct.unpack_from(">I", q, 4)[0]
        if not tflags & TRUN_DURATION:
            total += count * default
            continue
        rs = 8 + 4 * bool(tflags & TRUN_DATA_OFFSET) + 4 * bool(tflags & TRUN_FIRST_FLAGS)
        fields = bin(tflags & 0xF00).count("1")
        values = struct.unpack_from(f">{count * fields}I", q, rs)
        total += sum(values[0::fields])
    return total
