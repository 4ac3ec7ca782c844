"""The native segmenter: a progressive MP4/MOV becomes a clear CMAF package description without
FFmpeg, and its media segments are made only when the plan runs.

:func:`fragment_media` reads the input's sample tables, cuts every audio/video track
(:mod:`..media.mp4.fragmenter`), writes the small files of the clear package into the work
folder (one init segment per track, the DASH MPD and the HLS playlists, laid out as FFmpeg's
DASH muxer lays them out) and returns the media segments as :class:`Generated` files of the
plan: each is built from the input in a worker's reused buffer, encrypted there by the same
transform as any clear CMAF segment, and written once. The manifest jobs read the description
exactly as they read a package that FFmpeg wrote.

With ``single_file`` (``--single-file``) each track is instead one :class:`NativeSingleFile`
(init, a ``sidx`` of the clear fragment sizes, the fragments without ``styp``) described by a
SegmentBase MPD and byte-range playlists, as a single-file package on disk would be; the plan
asks for it part by part (each fragment made and encrypted like a segment) and rewrites the
``sidx`` from where the encrypted fragments landed.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .._io import open_input
from ..constants import NS_MPD
from ..errors import MediaError, Mp4FormatError, UnsupportedMediaError
from ..media.mp4 import probe_init
from ..media.mp4.codec_string import codec_string
from ..media.mp4.fragmenter import TrackFragmenter, cut_movie
from ..media.mp4.layout import Span
from ..media.mp4.sample_table import read_movie
from ..media.mp4.sidx import rewrite_sidx
from .plan import LateTransform, Piece

SINGLE_NAME = "media.mp4"  # a --single-file rendition's file, in its track's folder
NATIVE_SUFFIXES = frozenset({".mp4", ".m4v", ".m4a", ".mov"})
_HINT = "use --segmenter ffmpeg to segment it with FFmpeg"
_PROFILE = "urn:mpeg:dash:profile:isoff-live:2011"
_CHANNELS = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"


class NativeSegment:
    """One media segment of one track, made from the input when the plan runs."""

    __slots__ = ("_fd", "_frag", "_index")

    def __init__(self, frag: TrackFragmenter, index: int, fd: int) -> None:
        self._frag = frag
        self._index = index
        self._fd = fd

    def __repr__(self) -> str:
        return f"<native segment {self._frag.track.track_id}/{self._index}>"

    def produce(self) -> memoryview:
        return self._frag.build(self._index, self._fd)


class NativeSingleFile:
    """One track as a single file (init, sidx, every fragment), made by parts when the plan
    runs: the plan asks for the init, the sidx and each fragment by their byte ranges."""

    __slots__ = ("_fd", "_frag", "_init", "_parts", "_sidx", "size")

    def __init__(self, frag: TrackFragmenter, fd: int, init: bytes, sizes: list[int]) -> None:
        self._frag = frag
        self._fd = fd
        self._init = init
        self._sidx = frag.sidx(sizes)
        self._parts: dict[int, tuple[int, int]] = {0: (-2, len(init)),
                                                   len(init): (-1, len(self._sidx))}
        pos = len(init) + len(self._sidx)
        for i, n in enumerate(sizes):
            self._parts[pos] = (i, n)
            pos += n
        self.size = pos

    def __repr__(self) -> str:
        return f"<native single file of track {self._frag.track.track_id}>"

    def layout(self) -> tuple[Span, Span | None, list[tuple[int, int]]]:
        frags = [(o, n) for o, (i, n) in self._parts.items() if i >= 0]
        return Span(0, len(self._init)), Span(len(self._init), len(self._sidx)), frags

    def ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of the init, the sidx and each fragment, in order."""
        return [(o, n) for o, (_, n) in self._parts.items()]

    def produce(self) -> memoryview:
        raise MediaError(f"{self!r} is read by byte ranges only")

    def produce_range(self, offset: int, length: int) -> memoryview:
        part = self._parts.get(offset)
        if part is None or part[1] != length:
            raise MediaError(f"{self!r}: no part of {length} bytes at {offset}")
        i = part[0]
        if i >= 0:
            return self._frag.build(i, self._fd)
        return memoryview(bytearray(self._init if i == -2 else self._sidx))


@dataclass(slots=True)
class _Track:
    rep: str  # folder and Representation id
    frag: TrackFragmenter
    codecs: str
    width: int
    height: int
    channels: int
    rate: int
    durations: list[float]  # seconds per segment
    bits: list[int]  # bits per segment
    single: NativeSingleFile | None = None  # --single-file: the rendition's one file

    @property
    def kind(self) -> str:
        return self.frag.track.kind

    def peak(self) -> int:
        rates = [math.ceil(b / d) if d > 0 else b
                 for b, d in zip(self.bits, self.durations, strict=True)]
        return max(1, *rates)

    def average(self) -> int:
        total = sum(self.durations)
        return max(1, math.ceil(sum(self.bits) / total)) if total > 0 else self.peak()


@dataclass(slots=True)
class NativePackage:
    """What :func:`fragment_media` made: the work folder's files and the plan's generated
    segments (the input stays open until :meth:`close`)."""

    directory: Path
    master: Path | None
    mpd: Path | None
    generated: dict[str, NativeSegment | NativeSingleFile]
    fd: int

    def index_pieces(self) -> list[Piece]:
        """The sidx of every single-file rendition, as a plan piece rewritten once its
        fragments are written (encryption changes their sizes), whichever manifests use it."""
        out: list[Piece] = []
        for rel, gen in self.generated.items():
            if isinstance(gen, NativeSingleFile):
                _, sidx, _ = gen.layout()
                assert sidx is not None
                out.append(Piece(rel, sidx.offset, sidx.size, None, late=_late_sidx(sidx.offset)))
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _late_sidx(at: int) -> LateTransform:
    def late(body: bytes, spans: dict[int, tuple[int, int]]) -> bytes:
        return rewrite_sidx(body, at, spans[at][0], spans)

    return late


def _retag(exc: MediaError, name: str) -> MediaError:
    """The same kind of error, saying which file and how to get past it."""
    msg = f"{name}: {exc} ({_HINT})"
    if isinstance(exc, Mp4FormatError):
        return Mp4FormatError(msg)
    return type(exc)(msg) if type(exc) in (UnsupportedMediaError, MediaError) else \
        UnsupportedMediaError(msg)


def fragment_media(src: Path, workdir: Path, *, seconds: float, hls: bool, dash: bool,
                   single_file: bool = False) -> NativePackage:
    """Describe ``src`` as a clear CMAF package in ``workdir`` (init segments, manifests).

    ``single_file``: one file per track (``<n>/media.mp4``: init, sidx, fragments), addressed
    by DASH SegmentBase and HLS byte ranges; its parts are made when the plan runs, as the
    segments are."""
    fd = open_input(src.parent, src.name, what="input")
    if hasattr(os, "posix_fadvise"):  # the samples are read front to back, track by track
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    try:
        try:
            movie = read_movie(fd, src.name)
            cuts = cut_movie(movie, seconds)
            tracks = sorted(movie.tracks, key=lambda t: (t.kind != "video", t.track_id))
            out: list[_Track] = []
            generated: dict[str, NativeSegment | NativeSingleFile] = {}
            for k, t in enumerate(tracks):
                frag = TrackFragmenter(movie, t, cuts[t.track_id], styp=not single_file)
                init = frag.init_segment()
                info = probe_init(init)[0]
                folder = workdir / str(k)
                folder.mkdir(parents=True, exist_ok=True)
                durs = (frag.segment_durations() / t.timescale).tolist()
                sizes = [frag.segment_size(i) for i in range(frag.segment_count)]
                rate = int.from_bytes(frag.entry[32:34], "big") if t.kind == "audio" else 0
                tr = _Track(str(k), frag, codec_string(frag.entry), info.width, info.height,
                            info.channels, rate or t.timescale, durs, [8 * n for n in sizes])
                out.append(tr)
                if single_file:
                    tr.single = NativeSingleFile(frag, fd, init, sizes)
                    generated[f"{k}/{SINGLE_NAME}"] = tr.single
                    continue
                (folder / "init.mp4").write_bytes(init)
                for i in range(frag.segment_count):
                    generated[f"{k}/segment_{i + 1:05d}.m4s"] = NativeSegment(frag, i, fd)
        except MediaError as exc:
            raise _retag(exc, src.name) from exc
        mpd = None
        master = None
        if dash:
            mpd = workdir / "manifest.mpd"
            mpd.write_text(_mpd(out), encoding="utf-8")
        if hls:
            master = workdir / "master.m3u8"
            for tr in out:
                (workdir / f"media_{tr.rep}.m3u8").write_text(_media_playlist(tr),
                                                              encoding="utf-8")
            master.write_text(_master(out), encoding="utf-8")
        return NativePackage(workdir, master, mpd, generated, fd)
    except BaseException:
        os.close(fd)
        raise


# ---- manifests of the clear package ----------------------------------------------------------

def _iso(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _timeline(frag: TrackFragmenter) -> list[str]:
    """SegmentTimeline S elements, runs of equal durations joined."""
    times = frag.segment_times().tolist()
    durs = frag.segment_durations().tolist()
    out: list[str] = []
    i = 0
    while i < len(durs):
        j = i
        while j + 1 < len(durs) and durs[j + 1] == durs[i] and times[j + 1] == times[j] + durs[j]:
            j += 1
        r = f' r="{j - i}"' if j > i else ""
        out.append(f'<S t="{times[i]}" d="{durs[i]}"{r} />')
        i = j + 1
    return out


def _mpd(tracks: list[_Track]) -> str:
    total = max(sum(t.durations) for t in tracks)
    longest = max(max(t.durations) for t in tracks)
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             f'<MPD xmlns="{NS_MPD}" profiles="{_PROFILE}" type="static" '
             f'mediaPresentationDuration="{_iso(total)}" maxSegmentDuration="{_iso(longest)}" '
             f'minBufferTime="{_iso(min(longest * 2, 10.0))}">',
             '  <Period id="0" start="PT0S">']
    for t in tracks:
        ts = t.frag.track.timescale
        if t.kind == "video":
            dd = t.frag.default_duration
            fr = Fraction(ts, dd) if dd else None
            frame_rate = ("" if fr is None else f' frameRate="{fr.numerator}"' if
                          fr.denominator == 1 else f' frameRate="{fr.numerator}/{fr.denominator}"')
            lines.append(f'    <AdaptationSet id="{t.rep}" contentType="video" '
                         f'segmentAlignment="true" startWithSAP="1"{frame_rate}>')
            lines.append(f'      <Representation id="{t.rep}" mimeType="video/mp4" '
                         f'codecs="{t.codecs}" bandwidth="{t.peak()}" width="{t.width}" '
                         f'height="{t.height}" sar="1:1">')
        else:
            lines.append(f'    <AdaptationSet id="{t.rep}" contentType="audio" '
                         'segmentAlignment="true" startWithSAP="1">')
            lines.append(f'      <Representation id="{t.rep}" mimeType="audio/mp4" '
                         f'codecs="{t.codecs}" bandwidth="{t.peak()}" '
                         f'audioSamplingRate="{t.rate}">')
            lines.append(f'        <AudioChannelConfiguration schemeIdUri="{_CHANNELS}" '
                         f'value="{t.channels}" />')
        if t.single is not None:
            init, sidx, _ = t.single.layout()
            assert sidx is not None
            lines += [f"        <BaseURL>{t.rep}/{SINGLE_NAME}</BaseURL>",
                      f'        <SegmentBase timescale="{ts}" '
                      f'indexRange="{sidx.offset}-{sidx.end - 1}" indexRangeExact="true">',
                      f'          <Initialization range="{init.offset}-{init.end - 1}" />',
                      "        </SegmentBase>", "      </Representation>", "    </AdaptationSet>"]
            continue
        lines.append(f'        <SegmentTemplate timescale="{ts}" '
                     'initialization="$RepresentationID$/init.mp4" '
                     'media="$RepresentationID$/segment_$Number%05d$.m4s" startNumber="1">')
        lines.append("          <SegmentTimeline>")
        lines += [f"            {s}" for s in _timeline(t.frag)]
        lines += ["          </SegmentTimeline>", "        </SegmentTemplate>",
                  "      </Representation>", "    </AdaptationSet>"]
    lines += ["  </Period>", "</MPD>", ""]
    return "\n".join(lines)


def _media_playlist(t: _Track) -> str:
    target = max(1, math.ceil(max(t.durations) - 1e-3))
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD",
             "#EXT-X-INDEPENDENT-SEGMENTS"]
    if t.single is not None:  # byte ranges of the one file (the sidx is not referenced)
        uri = f"{t.rep}/{SINGLE_NAME}"
        (io, il), _, *frags = t.single.ranges()
        lines.append(f'#EXT-X-MAP:URI="{uri}",BYTERANGE="{il}@{io}"')
        for d, (o, n) in zip(t.durations, frags, strict=True):
            lines += [f"#EXTINF:{d:.6f},", f"#EXT-X-BYTERANGE:{n}@{o}", uri]
        lines += ["#EXT-X-ENDLIST", ""]
        return "\n".join(lines)
    lines.append(f'#EXT-X-MAP:URI="{t.rep}/init.mp4"')
    for i, d in enumerate(t.durations):
        lines += [f"#EXTINF:{d:.6f},", f"{t.rep}/segment_{i + 1:05d}.m4s"]
    lines += ["#EXT-X-ENDLIST", ""]
    return "\n".join(lines)


def _master(tracks: list[_Track]) -> str:
    videos = [t for t in tracks if t.kind == "video"]
    audios = [t for t in tracks if t.kind == "audio"]
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if videos and audios:
        for n, a in enumerate(audios):
            lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio_{a.rep}",'
                         f'DEFAULT={"YES" if n == 0 else "NO"},AUTOSELECT=YES,'
                         f'CHANNELS="{a.channels}",URI="media_{a.rep}.m3u8"')
        peak_a = max(a.peak() for a in audios)
        avg_a = max(a.average() for a in audios)
        for v in videos:
            codecs = ",".join(dict.fromkeys([v.codecs, *[a.codecs for a in audios]]))
            lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={v.peak() + peak_a},"
                         f"AVERAGE-BANDWIDTH={v.average() + avg_a},"
                         f'RESOLUTION={v.width}x{v.height},CODECS="{codecs}",AUDIO="audio"')
            lines.append(f"media_{v.rep}.m3u8")
    else:
        for t in tracks:
            res = f",RESOLUTION={t.width}x{t.height}" if t.kind == "video" else ""
            lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={t.peak()},"
                         f'AVERAGE-BANDWIDTH={t.average()}{res},CODECS="{t.codecs}"')
            lines.append(f"media_{t.rep}.m3u8")
    lines.append("")
    return "\n".join(lines)
