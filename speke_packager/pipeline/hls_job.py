"""Plan and write the HLS side of a package: every media playlist's segments become pieces of
the plan; after encryption the playlists are written with the new byte ranges and key tags."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .._redact import redact_url
from ..constants import Scheme
from ..errors import ManifestError
from ..manifests.hls import (
    ByteRange,
    HlsKey,
    InitSection,
    MediaPlaylist,
    MultivariantPlaylist,
    is_multivariant,
    parse_media_playlist,
    parse_multivariant_playlist,
    render_media_playlist,
    render_multivariant_playlist,
    retarget,
)
from ..manifests.hls_signaling import hls_keys, hls_session_keys
from ..model import KeyEntry, TrackInfo
from .contexts import KeyChoice, Mp4Context, TsContext, container_of
from .iframes import remap_fmp4_range, remap_ts_range
from .options import TrackSummary
from .plan import Piece, Plan

_EPS = 1e-6
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def resolve(base_rel: str, uri: str, *, what: str) -> str:
    """A package-relative path for ``uri`` found in the file ``base_rel`` (HLS and DASH).

    Refused with a :class:`ManifestError`: NUL and control characters, remote URIs, and paths
    that leave the package folder on the text (symbolic links are checked when the file is
    opened, :func:`.._io.open_input`)."""
    if _CONTROL.search(uri):
        raise ManifestError(f"{what} {uri!r}: NUL or control character in the URI")
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc:
        raise ManifestError(f"{what} {redact_url(uri)!r} is remote; only local packages can be "
                            "encrypted")
    path = posixpath.normpath(posixpath.join(posixpath.dirname(base_rel), parts.path))
    if path.startswith("../") or path == ".." or path.startswith("/"):
        raise ManifestError(f"{what} {uri!r} points outside the package folder")
    return path


@dataclass(slots=True)
class _Media:
    rel: str
    playlist: MediaPlaylist
    iframe: bool
    pieces: list[Piece] = field(default_factory=list)
    map_pieces: dict[int, Piece] = field(default_factory=dict)
    entry: KeyEntry | None = None
    dropped: bool = False
    remap: bool = False  # I-frame ranges inside SAMPLE-AES TS segments: moved after encryption


class Contexts:
    """Encryption contexts shared by HLS and DASH (CMAF segments used by both)."""

    def __init__(self, plan: Plan, choice: KeyChoice) -> None:
        self.plan = plan
        self.choice = choice
        self.mp4: dict[tuple[str, int | None, int | None], Mp4Context] = {}

    def mp4_context(self, rel: str, offset: int | None, length: int | None) -> Mp4Context:
        k = (rel, offset, length)
        if k not in self.mp4:
            init = self.plan.read(rel, offset, length, what="init section")
            self.mp4[k] = Mp4Context(init, self.choice, what=rel)
        return self.mp4[k]


class HlsJob:
    """The HLS half of one run."""

    def __init__(self, plan: Plan, contexts: Contexts, top_rel: str, clear_lead: float) -> None:
        self.plan = plan
        self.ctx = contexts
        self.choice = contexts.choice
        self.top_rel = top_rel
        self.clear_lead = clear_lead
        self.master: MultivariantPlaylist | None = None
        self.media: dict[str, _Media] = {}
        self.warnings: list[str] = []
        self.tracks: list[TrackSummary] = []

    def _text(self, rel: str) -> str:
        data = self.plan.read(rel, what="playlist")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError("playlist is not UTF-8 text", path=rel) from None

    def prepare(self) -> None:
        """Read the playlists and register every segment with the plan."""
        text = self._text(self.top_rel)
        refs: list[tuple[str, bool]] = []
        if is_multivariant(text):
            self.master = parse_multivariant_playlist(text, path=self.top_rel)
            for r in self.master.refs:
                rel = resolve(self.top_rel, r.uri, what="playlist")
                if rel not in [x for x, _ in refs]:
                    refs.append((rel, r.kind == "iframe"))
        else:
            refs.append((self.top_rel, False))
        refs.sort(key=lambda x: x[1])  # I-frame playlists last: they reuse other pieces
        for rel, iframe in refs:
            pl = parse_media_playlist(self._text(rel), path=rel)
            m = _Media(rel, pl, iframe or pl.iframes_only)
            self.media[rel] = m
            self._register(m)

    def _register(self, m: _Media) -> None:
        segs = m.playlist.segments
        first = segs[0]
        seg_rel = [resolve(m.rel, s.uri, what="segment") for s in segs]
        if m.iframe and any(self._overlaps(r, s.byterange) for r, s in zip(seg_rel, segs,
                                                                           strict=True)):
            if self._can_remap(m, seg_rel):
                m.remap = True
                init = first.init
                if init is not None:
                    irel = resolve(m.rel, init.uri, what="init section")
                    ictx = self.ctx.mp4_context(irel, None, None)
                    self.plan.add(Piece(irel, None, None, ictx.init_transform(),
                                        clear=not ictx.encrypted))
                    m.entry = ictx.entry
                else:
                    head = self.plan.read(seg_rel[0], what="segment")
                    m.entry = TsContext(head, self.choice, what=m.rel).entry
                m.pieces = [self.plan.pieces[(r, None, None)] for r in seg_rel]
                return
            m.dropped = True
            self.warnings.append(f"I-frame playlist {m.rel} points inside segments whose size "
                                 "changes when encrypted; it was left out of the output")
            return
        if first.init is not None:
            self._register_fmp4(m, seg_rel)
            return
        head = self.plan.read(seg_rel[0], *(_off_len(first.byterange)), what="segment")
        kind = container_of(head[:376])
        if kind == "mp4":
            raise ManifestError(f"fMP4 segments in {m.rel} without EXT-X-MAP are not supported")
        if kind == "webvtt":
            for r, s in zip(seg_rel, segs, strict=True):
                m.pieces.append(self.plan.add(Piece(r, *_off_len(s.byterange), None)))
            self.tracks.append(TrackSummary(m.rel, "text", "wvtt"))
            return
        if kind != "ts":
            raise ManifestError(f"segment {seg_rel[0]} is neither MPEG-TS, fMP4 nor WebVTT")
        ctx = TsContext(head, self.choice, what=m.rel)
        m.entry = ctx.entry
        t0 = 0.0
        for r, s in zip(seg_rel, segs, strict=True):
            clear = t0 + _EPS < self.clear_lead or not ctx.encrypted
            m.pieces.append(self.plan.add(Piece(r, *_off_len(s.byterange),
                                                ctx.segment_transform(clear=clear),
                                                clear=clear)))
            t0 += s.duration
        self._summary(m, ctx.tracks, ctx.entry)

    def _register_fmp4(self, m: _Media, seg_rel: list[str]) -> None:
        t0 = 0.0
        index = 0
        last_init: InitSection | None = None
        ctx: Mp4Context | None = None
        for r, s in zip(seg_rel, m.playlist.segments, strict=True):
            if s.init is None:
                raise ManifestError(f"segment {s.uri} of {m.rel} has no EXT-X-MAP")
            if s.init is not last_init:
                last_init = s.init
                irel = resolve(m.rel, s.init.uri, what="init section")
                off, ln = _off_len(s.init.byterange)
                ctx = self.ctx.mp4_context(irel, off, ln)
                if m.entry is None:
                    m.entry = ctx.entry
                elif ctx.entry is not None and ctx.entry.kid != m.entry.kid:
                    raise ManifestError(f"{m.rel}: init sections select different keys")
                m.map_pieces[id(s.init)] = self.plan.add(
                    Piece(irel, off, ln, ctx.init_transform(), clear=not ctx.encrypted))
                if len(m.map_pieces) == 1:
                    self._summary(m, ctx.tracks, ctx.entry)
            assert ctx is not None
            clear = t0 + _EPS < self.clear_lead or not ctx.encrypted
            m.pieces.append(self.plan.add(Piece(r, *_off_len(s.byterange),
                                                ctx.segment_transform(index, clear=clear),
                                                clear=clear)))
            index += 1
            t0 += s.duration

    def _summary(self, m: _Media, tracks: Sequence[TrackInfo], entry: KeyEntry | None) -> None:
        for t in tracks:
            self.tracks.append(TrackSummary(m.rel, t.kind.value, t.codec, t.width, t.height,
                                            t.channels, str(entry.kid) if entry else None,
                                            entry.track_type if entry else None))

    def _can_remap(self, m: _Media, seg_rel: list[str]) -> bool:
        """I-frame ranges into whole-file segments can follow their key frame: SAMPLE-AES TS
        (by PES) and cenc/cbcs fMP4 (by moof; the init section must be a whole file)."""
        fmp4 = m.playlist.segments[0].init is not None
        if fmp4 and self.choice.scheme not in (Scheme.CENC, Scheme.CBCS):
            return False
        if not fmp4 and self.choice.scheme is not Scheme.SAMPLE_AES:
            return False
        for r, s in zip(seg_rel, m.playlist.segments, strict=True):
            if s.byterange is None or (r, None, None) not in self.plan.pieces:
                return False
            if (s.init is not None) != fmp4 or (s.init is not None and
                                                s.init.byterange is not None):
                return False
        return True

    def _overlaps(self, rel: str, br: ByteRange | None) -> bool:
        off, ln = _off_len(br)
        for p in self.plan.by_rel.get(rel, ()):
            if (p.offset, p.length) == (off, ln):
                continue
            if p.offset is None or off is None:
                return True
            assert p.length is not None and ln is not None
            if p.offset < off + ln and off < p.offset + p.length:
                return True
        return False

    # --- output -------------------------------------------------------------------------------
    def _keys(self, m: _Media, entry: KeyEntry, *, session: bool = False) -> list[HlsKey]:
        """The key tags of ``m``, encrypted with ``entry``: the IV and the DRM systems are
        those :func:`.protection.protect` decided, as for the segments."""
        fmp4 = bool(m.playlist.segments) and m.playlist.segments[0].init is not None
        p = self.choice.protect(entry, fmp4=fmp4)
        fn = hls_session_keys if session else hls_keys
        return fn(entry, p.scheme, iv=p.iv, key_uri=self.choice.uri_for(entry),
                  drms=sorted(p.drms, key=lambda d: d.label))

    def check_signaling(self) -> None:
        """Build every key tag before any segment is encrypted (fail early)."""
        for m in self.media.values():
            if m.entry is not None and not m.dropped:
                self._keys(m, m.entry)
                if self.master is not None:
                    self._keys(m, m.entry, session=True)

    def render(self, out_dir: Path) -> dict[str, str]:
        """Playlist texts by package-relative path (call after the plan ran)."""
        out: dict[str, str] = {}
        session: list[HlsKey] = []
        dropped_uris: set[str] = set()
        for m in self.media.values():
            if m.dropped:
                dropped_uris.add(m.rel)
                continue
            ranges: dict[tuple[str, ByteRange | None], ByteRange] = {}
            keys: list[list[HlsKey]] = []
            tags = self._keys(m, m.entry) if m.entry is not None else []
            for s, p in zip(m.playlist.segments, m.pieces, strict=True):
                if m.remap and s.byterange is not None:
                    clear = self.plan.read(p.rel, what="segment")
                    enc = (out_dir / p.rel).read_bytes() if not p.clear else clear
                    remap = remap_fmp4_range if s.init is not None else remap_ts_range
                    off, ln = remap(clear, enc, s.byterange.offset, s.byterange.length)
                    ranges[(s.uri, s.byterange)] = ByteRange(ln, off)
                elif s.byterange is not None:
                    off, ln = self.plan.new_range(p.rel, p.offset, p.length)
                    ranges[(s.uri, s.byterange)] = ByteRange(ln, off)
                keys.append([] if p.clear else tags)
            for s in m.playlist.segments:
                if s.init is not None and s.init.byterange is not None:
                    p = m.map_pieces[id(s.init)]
                    off, ln = self.plan.new_range(p.rel, p.offset, p.length)
                    ranges[(s.init.uri, s.init.byterange)] = ByteRange(ln, off)
            out[m.rel] = render_media_playlist(retarget(m.playlist, ranges), keys)
            if m.entry is not None and any(not p.clear for p in m.pieces):
                session.extend(self._keys(m, m.entry, session=True))
        if self.master is not None:
            mv = self.master
            if dropped_uris:
                mv = _without(mv, self.top_rel, dropped_uris)
            out[self.top_rel] = render_multivariant_playlist(mv, session)
        return out


def _without(mv: MultivariantPlaylist, top_rel: str, rels: set[str]) -> MultivariantPlaylist:
    from .._hls_attrs import parse_attribute_list

    lines = []
    for ln in mv.lines:
        if ln.startswith("#EXT-X-I-FRAME-STREAM-INF:"):
            uri = parse_attribute_list(ln.split(":", 1)[1]).get("URI", "")
            if resolve(top_rel, uri, what="playlist") in rels:
                continue
        lines.append(ln)
    refs = [r for r in mv.refs if resolve(top_rel, r.uri, what="playlist") not in rels]
    return MultivariantPlaylist(lines=lines, refs=refs, version=mv.version)


def _off_len(br: ByteRange | None) -> tuple[int | None, int | None]:
    return (None, None) if br is None else (br.offset, br.length)
