"""Plan and write the DASH side of a package: every Representation's init and media segments
become pieces; after encryption the MPD gets new byte ranges and ContentProtection per key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ManifestError, UnsupportedMediaError
from ..manifests import dash
from ..media.mp4.layout import split_single_file
from ..media.mp4.sidx import rewrite_sidx
from ..model import KeyEntry
from .contexts import Mp4Context
from .hls_job import Contexts, resolve
from .options import TrackSummary
from .plan import GeneratedFile, Piece, Plan

_EPS = 1e-6


@dataclass(slots=True)
class _Rep:
    segs: dash.RepresentationSegments
    ctx: Mp4Context
    init_piece: Piece | None = None
    index_piece: Piece | None = None
    pieces: list[Piece] = field(default_factory=list)


class DashJob:
    """The DASH half of one run."""

    def __init__(self, plan: Plan, contexts: Contexts, mpd_rel: str, clear_lead: float,
                 clearkey_license_url: str | None) -> None:
        self.plan = plan
        self.ctx = contexts
        self.choice = contexts.choice
        self.mpd_rel = mpd_rel
        self.clear_lead = clear_lead
        self.clearkey_license_url = clearkey_license_url
        self.root: etree._Element | None = None
        self.reps: list[_Rep] = []
        self.tracks: list[TrackSummary] = []

    def _rel(self, url: str) -> str:
        return resolve(self.mpd_rel, url, what="segment")

    def prepare(self) -> None:
        scheme = self.choice.scheme
        if scheme.value not in ("cenc", "cbcs"):
            raise UnsupportedMediaError(f"DASH needs cenc or cbcs; {scheme.value} is HLS-only "
                                        "(use --format hls)")
        data = self.plan.read(self.mpd_rel, what="MPD")
        self.root = dash.parse_mpd(data, path=self.mpd_rel)
        for segs in dash.representation_segments(self.root, path=self.mpd_rel):
            rid = segs.representation.get("id") or "?"
            if segs.addressing == "base":
                self.reps.append(self._single_file(segs, rid))
                continue
            if segs.init is None:
                raise ManifestError(f"Representation {rid!r} has no initialization segment",
                                    path=self.mpd_rel)
            irel = self._rel(segs.init.url)
            off, ln = _off_len(segs.init.byterange)
            ctx = self.ctx.mp4_context(irel, off, ln)
            rep = _Rep(segs, ctx)
            rep.init_piece = self.plan.add(Piece(irel, off, ln, ctx.init_transform(),
                                                 clear=not ctx.encrypted))
            if self.clear_lead > 0 and len(segs.starts) != len(segs.media):
                raise ManifestError(f"Representation {rid!r}: segment times unknown, cannot "
                                    "apply --clear-lead", path=self.mpd_rel)
            self._extend(segs)
            for i, m in enumerate(segs.media):
                start = segs.starts[i] if segs.starts else 0.0
                clear = start + _EPS < self.clear_lead or not ctx.encrypted
                o, n = _off_len(m.byterange)
                rep.pieces.append(self.plan.add(Piece(
                    self._rel(m.url), o, n, ctx.segment_transform(i, clear=clear), clear=clear)))
            self.reps.append(rep)
            self._summary(rid, ctx)

    def _extend(self, segs: dash.RepresentationSegments) -> None:
        """@duration templates: also carry segments present past the computed count (muxers
        often write a short last one), so the package keeps every file."""
        if segs.more is None or segs.next_number is None:
            return
        n = segs.next_number
        step = segs.starts[1] - segs.starts[0] if len(segs.starts) > 1 else 0.0
        while n - segs.next_number < 10_000:
            url = segs.more(n)
            if not self.plan.exists(self._rel(url)):
                break
            segs.media.append(dash.DashSegment(url))
            segs.starts.append(segs.starts[-1] + step if segs.starts else 0.0)
            n += 1

    def _single_file(self, segs: dash.RepresentationSegments, rid: str) -> _Rep:
        rel = self._rel(segs.media[0].url)
        gen = self.plan.generated.get(rel)
        if isinstance(gen, GeneratedFile):  # a native single-file rendition: known layout
            init_box, sidx, frags = gen.layout()
        else:
            fd = self.plan.open(rel)
            try:
                init_box, sidx, frags = split_single_file(fd, rel)
            finally:
                os.close(fd)
        ctx = self.ctx.mp4_context(rel, 0, init_box.size)
        rep = _Rep(segs, ctx)
        rep.init_piece = self.plan.add(Piece(rel, 0, init_box.size, ctx.init_transform(),
                                             clear=not ctx.encrypted))
        if self.clear_lead > 0:
            raise ManifestError(f"Representation {rid!r} (SegmentBase): --clear-lead is not "
                                "supported for single-file representations", path=self.mpd_rel)
        if sidx is not None:
            s_off = sidx.offset

            def late(body: bytes, spans: dict[int, tuple[int, int]]) -> bytes:
                return rewrite_sidx(body, s_off, spans[s_off][0], spans)

            rep.index_piece = self.plan.add(Piece(rel, sidx.offset, sidx.size, None,
                                                  late=late))
        for i, (o, n) in enumerate(frags):
            rep.pieces.append(self.plan.add(Piece(
                rel, o, n, ctx.segment_transform(i, clear=not ctx.encrypted),
                clear=not ctx.encrypted)))
        self._summary(rid, ctx)
        return rep

    def _summary(self, rid: str, ctx: Mp4Context) -> None:
        e = ctx.entry
        for t in ctx.tracks:
            self.tracks.append(TrackSummary(f"{self.mpd_rel}#{rid}", t.kind.value, t.codec,
                                            t.width, t.height, t.channels,
                                            str(e.kid) if e else None,
                                            e.track_type if e else None))

    def check_signaling(self) -> None:
        for rep in self.reps:
            if rep.ctx.entry is not None:
                self._protections(rep.ctx.entry)

    def _protections(self, entry: KeyEntry) -> list[etree._Element]:
        return dash.content_protections(entry.kid, self.choice.scheme, entry.drm,
                                        clearkey_license_url=self.clearkey_license_url)

    def render(self) -> dict[str, bytes]:
        """The MPD bytes (call after the plan ran)."""
        assert self.root is not None
        for rep in self.reps:
            segs = rep.segs
            if segs.init is not None and segs.init.slot is not None and rep.init_piece:
                self._set(segs.init.slot, rep.init_piece)
            if segs.index is not None and segs.index.slot is not None and rep.index_piece:
                self._set(segs.index.slot, rep.index_piece)
            if segs.addressing == "list":
                for m, p in zip(segs.media, rep.pieces, strict=True):
                    if m.slot is not None and m.byterange is not None:
                        self._set(m.slot, p)
                        self._shift_index(m, p)
        by_set: dict[int, tuple[etree._Element, list[_Rep]]] = {}
        for rep in self.reps:
            a = rep.segs.adaptation_set
            by_set.setdefault(id(a), (a, []))[1].append(rep)
        for aset, reps in by_set.values():
            groups: dict[str, list[_Rep]] = {}
            for rep in reps:
                e = rep.ctx.entry if any(not p.clear for p in rep.pieces) else None
                groups.setdefault(str(e.kid) if e else "", []).append(rep)
            ordered = list(groups.values())
            sets = dash.split_adaptation_set(aset, [[r.segs.representation for r in g]
                                                    for g in ordered])
            for target, g in zip(sets, ordered, strict=True):
                e = g[0].ctx.entry if any(not p.clear for p in g[0].pieces) else None
                if e is not None:
                    dash.add_content_protection(target, self._protections(e))
        return {self.mpd_rel: dash.render_mpd(self.root)}

    def _shift_index(self, m: dash.DashSegment, piece: Piece) -> None:
        """SegmentURL@indexRange (a sidx inside the range) moves with its segment."""
        assert m.slot is not None and m.byterange is not None
        text = m.slot.element.get("indexRange")
        if not text:
            return
        first, _, last = text.partition("-")
        try:
            a, b = int(first), int(last)
        except ValueError:
            raise ManifestError(f"bad indexRange {text!r}", path=self.mpd_rel) from None
        off, _ = self.plan.new_range(piece.rel, piece.offset, piece.length)
        delta = off - m.byterange[0]
        m.slot.element.set("indexRange", f"{a + delta}-{b + delta}")

    def _set(self, slot: dash.RangeSlot, piece: Piece) -> None:
        off, ln = self.plan.new_range(piece.rel, piece.offset, piece.length)
        slot.set(off, off + ln - 1)


def _off_len(br: tuple[int, int] | None) -> tuple[int | None, int | None]:
    return (None, None) if br is None else (br[0], br[1] - br[0] + 1)
