"""DASH MPD: read a clear MPD, find its segments, add ContentProtection, write it back.

Everything of the input is kept; we only add ``ContentProtection`` elements (placed where the
schema's RepresentationBaseType wants them: after FramePacking / AudioChannelConfiguration),
split an AdaptationSet whose Representations use different keys (one KID per AdaptationSet),
and update byte ranges that moved when segments grew. Built with lxml, never with strings.
"""

from __future__ import annotations

import base64
import copy
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit
from uuid import UUID

from lxml import etree

from .._xml import parse_xml
from ..constants import (
    DASH_CP_VALUE,
    DASH_MP4PROTECTION_SCHEME,
    DASHIF_CLEARKEY,
    NS_CENC,
    NS_DASHIF_CPS,
    NS_MPD,
    NS_MSPR,
    DrmSystem,
    Scheme,
)
from ..drm.pssh import parse_pssh
from ..errors import ManifestError
from ..model import DrmSignal

_M = f"{{{NS_MPD}}}"
_CENC = f"{{{NS_CENC}}}"
_MSPR = f"{{{NS_MSPR}}}"
_DASHIF = f"{{{NS_DASHIF_CPS}}}"
CP_NSMAP = {"cenc": NS_CENC, "mspr": NS_MSPR, "dashif": NS_DASHIF_CPS}
_BEFORE_CP = frozenset({f"{_M}FramePacking", f"{_M}AudioChannelConfiguration",
                        f"{_M}ContentProtection"})


def parse_mpd(data: bytes, *, path: str | None = None) -> etree._Element:
    """Parse a clear MPD with the hardened parser; refuses protected or non-MPD documents."""
    root = parse_xml(data, what=f"MPD {path or ''}".strip(),
                     error=ManifestError)
    if root.tag != f"{_M}MPD":
        raise ManifestError(f"not a DASH MPD (root element {root.tag})", path=path)
    if root.get("type", "static") != "static":
        raise ManifestError("only static (VOD) MPDs can be encrypted here", path=path)
    if root.find(f".//{_M}ContentProtection") is not None:
        raise ManifestError("the input MPD is already protected (ContentProtection); give a "
                            "clear package", path=path)
    return root


def render_mpd(root: etree._Element) -> bytes:
    """Serialise the MPD with the cenc/mspr/dashif prefixes declared once on the root."""
    used: set[str] = set()
    for el in root.iter():
        if isinstance(el.tag, str):
            for name in (el.tag, *el.attrib.keys()):
                ns = etree.QName(name).namespace
                if ns:
                    used.add(ns)
    top = {p: ns for p, ns in CP_NSMAP.items() if ns in used}
    etree.cleanup_namespaces(root, top_nsmap=top or None)
    out: bytes = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    return out + b"\n"


# --- durations and segments ---------------------------------------------------------------------
_DUR = re.compile(r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                  r"(?:(\d+(?:\.\d+)?)S)?)?\Z")


def parse_duration(text: str) -> float:
    """xs:duration (days, hours, minutes, seconds) -> seconds."""
    m = _DUR.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        raise ManifestError(f"unsupported xs:duration {text!r}")
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


@dataclass(slots=True)
class RangeSlot:
    """An MPD attribute that holds a byte range (``first-last``), to update after encryption."""

    element: etree._Element
    attribute: str

    def set(self, first: int, last: int) -> None:
        self.element.set(self.attribute, f"{first}-{last}")


@dataclass(frozen=True, slots=True)
class DashSegment:
    """One addressable piece: a path relative to the MPD and an optional inclusive byte range."""

    url: str
    byterange: tuple[int, int] | None = None
    slot: RangeSlot | None = field(default=None, compare=False, hash=False)


@dataclass(slots=True)
class RepresentationSegments:
    representation: etree._Element
    adaptation_set: etree._Element
    addressing: str  # 'template' | 'list' | 'base'
    init: DashSegment | None
    media: list[DashSegment]
    index: DashSegment | None = None  # SegmentBase@indexRange (sidx)
    timescale: int = 1
    starts: list[float] = field(default_factory=list)  # media segment start times (s)
    # @duration templates: the count comes from the period length; ``more(n)`` is the URL of
    # segment number n (callers may keep going while such files exist)
    next_number: int | None = None
    more: Callable[[int], str] | None = None


def _base_url(elems: Sequence[etree._Element], path: str | None) -> str:
    base = ""
    for el in elems:
        b = el.find(f"{_M}BaseURL")
        if b is not None and (b.text or "").strip():
            base = urljoin(base, (b.text or "").strip())
    if urlsplit(base).scheme:
        raise ManifestError(f"remote BaseURL {base!r} is not supported; give a local package",
                            path=path)
    return base


def _inherited(elems: Sequence[etree._Element], name: str) -> list[etree._Element]:
    """The elements named ``name`` from outermost to innermost level."""
    found = []
    for el in elems:
        x = el.find(f"{_M}{name}")
        if x is not None:
            found.append(x)
    return found


MAX_SEGMENTS = 100_000  # per Representation: 55 hours of 2-second segments


def _int(text: str | None, what: str, path: str | None, *, default: int,
         minimum: int | None = None) -> int:
    """An integer MPD attribute, or a ManifestError naming it (never ValueError)."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ManifestError(f"{what} is not an integer: {text[:40]!r}", path=path) from None
    if minimum is not None and value < minimum:
        raise ManifestError(f"{what} must be at least {minimum}, not {value}", path=path)
    return value


def _too_many(count: int, rep_id: str, path: str | None) -> None:
    if count > MAX_SEGMENTS:
        raise ManifestError(f"Representation {rep_id!r} would have {count} segments, more than "
                            f"the limit of {MAX_SEGMENTS}", path=path)


def _attr(chain: Sequence[etree._Element], name: str) -> str | None:
    for el in reversed(chain):
        v = el.get(name)
        if v is not None:
            return v
    return None


_VAR = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth|SubNumber)?(%0(\d+)d)?\$")


def fill_template(tpl: str, *, rep_id: str, number: int | None = None, time: int | None = None,
                  bandwidth: str = "") -> str:
    """Substitute DASH template identifiers ($RepresentationID$, $Number%05d$, $Time$, ...)."""

    def sub(m: re.Match[str]) -> str:
        name, width = m.group(1), m.group(3)
        if name is None:
            return "$"
        if name == "RepresentationID":
            return rep_id
        if name == "Bandwidth":
            return bandwidth
        if name == "Number" and number is not None:
            val = number
        elif name == "Time" and time is not None:
            val = time
        else:
            raise ManifestError(f"template {tpl!r} uses ${name}$ which cannot be filled here")
        return f"{val:0{int(width)}d}" if width else str(val)

    return _VAR.sub(sub, tpl)


def _range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)-(\d+)\s*", text)
    if not m or int(m.group(2)) < int(m.group(1)):
        raise ManifestError(f"bad byte range {text!r}")
    return int(m.group(1)), int(m.group(2))


def _period_seconds(mpd: etree._Element, period: etree._Element) -> float | None:
    if period.get("duration"):
        return parse_duration(period.get("duration", ""))
    periods = mpd.findall(f"{_M}Period")
    idx = periods.index(period)
    start = parse_duration(period.get("start", "PT0S"))
    if idx + 1 < len(periods) and periods[idx + 1].get("start"):
        return parse_duration(periods[idx + 1].get("start", "")) - start
    if mpd.get("mediaPresentationDuration"):
        return parse_duration(mpd.get("mediaPresentationDuration", "")) - start
    return None


def representation_segments(
    mpd: etree._Element, *, path: str | None = None
) -> list[RepresentationSegments]:
    """Every Representation of every Period with its init and media segments."""
    out: list[RepresentationSegments] = []
    for period in mpd.findall(f"{_M}Period"):
        if period.get("{http://www.w3.org/1999/xlink}href"):
            raise ManifestError("xlink Periods are not supported", path=path)
        for aset in period.findall(f"{_M}AdaptationSet"):
            for rep in aset.findall(f"{_M}Representation"):
                out.append(_rep_segments(mpd, period, aset, rep, path))
    if not out:
        raise ManifestError("the MPD has no Representation", path=path)
    return out


def _rep_segments(mpd: etree._Element, period: etree._Element, aset: etree._Element,
                  rep: etree._Element, path: str | None) -> RepresentationSegments:
    levels = [mpd, period, aset, rep]
    base = _base_url(levels, path)
    rep_id = rep.get("id") or ""
    bw = rep.get("bandwidth") or ""
    tpls = _inherited(levels[1:], "SegmentTemplate")
    lists = _inherited(levels[1:], "SegmentList")
    bases = _inherited(levels[1:], "SegmentBase")
    if tpls:
        return _template(mpd, period, aset, rep, tpls=tpls, base=base, rep_id=rep_id, bw=bw,
                         path=path)
    if lists:
        seg_list = lists[-1]
        ts = _int(_attr(lists, "timescale"), "SegmentList@timescale", path, default=1, minimum=1)
        init_el = seg_list.find(f"{_M}Initialization")
        init = None
        if init_el is not None:
            init = DashSegment(urljoin(base, init_el.get("sourceURL") or ""),
                               _range(init_el.get("range")), RangeSlot(init_el, "range"))
        media = [DashSegment(urljoin(base, su.get("media") or ""), _range(su.get("mediaRange")),
                             RangeSlot(su, "mediaRange"))
                 for su in seg_list.findall(f"{_M}SegmentURL")]
        if not media:
            raise ManifestError(f"SegmentList of Representation {rep_id!r} has no SegmentURL",
                                path=path)
        _too_many(len(media), rep_id, path)
        dur = _int(_attr(lists, "duration"), "SegmentList@duration", path, default=0, minimum=0)
        starts = [i * dur / ts for i in range(len(media))] if dur else []
        return RepresentationSegments(rep, aset, "list", init, media, timescale=ts,
                                      starts=starts)
    if not base:
        raise ManifestError(f"Representation {rep_id!r} has no segment information", path=path)
    sb = bases[-1] if bases else None
    init = index = None
    if sb is not None:
        init_el = sb.find(f"{_M}Initialization")
        if init_el is not None and init_el.get("range"):
            init = DashSegment(base, _range(init_el.get("range")), RangeSlot(init_el, "range"))
        if sb.get("indexRange"):
            index = DashSegment(base, _range(sb.get("indexRange")), RangeSlot(sb, "indexRange"))
    return RepresentationSegments(rep, aset, "base", init, [DashSegment(base)], index=index)


def _template(mpd: etree._Element, period: etree._Element, aset: etree._Element,
              rep: etree._Element, *, tpls: list[etree._Element], base: str, rep_id: str,
              bw: str, path: str | None) -> RepresentationSegments:
    media_t = _attr(tpls, "media")
    if not media_t:
        raise ManifestError(f"SegmentTemplate of Representation {rep_id!r} has no @media",
                            path=path)
    ts = _int(_attr(tpls, "timescale"), "SegmentTemplate@timescale", path, default=1, minimum=1)
    start_number = _int(_attr(tpls, "startNumber"), "SegmentTemplate@startNumber", path,
                        default=1, minimum=0)
    pto = _int(_attr(tpls, "presentationTimeOffset"), "SegmentTemplate@presentationTimeOffset",
               path, default=0, minimum=0)
    init_t = _attr(tpls, "initialization")
    init = DashSegment(urljoin(base, fill_template(init_t, rep_id=rep_id, bandwidth=bw))) \
        if init_t else None
    timeline = None
    for t in reversed(tpls):
        timeline = t.find(f"{_M}SegmentTimeline")
        if timeline is not None:
            break
    period_s = _period_seconds(mpd, period)
    media: list[DashSegment] = []
    starts: list[float] = []
    if timeline is not None:
        t_now = 0
        number = start_number
        entries = timeline.findall(f"{_M}S")
        for i, s in enumerate(entries):
            if s.get("t") is not None:
                t_now = _int(s.get("t"), "S@t", path, default=0, minimum=0)
            d = _int(s.get("d"), "S@d", path, default=0)
            if d <= 0:
                raise ManifestError("SegmentTimeline S without a positive @d", path=path)
            r = _int(s.get("r"), "S@r", path, default=0, minimum=-1)
            if r < 0:
                if i + 1 < len(entries) and entries[i + 1].get("t"):
                    end = _int(entries[i + 1].get("t"), "S@t", path, default=0, minimum=0)
                elif period_s is not None:
                    end = pto + round(period_s * ts)
                else:
                    raise ManifestError("S@r=-1 without a known end", path=path)
                r = max(0, math.ceil((end - t_now) / d) - 1)
            _too_many(len(media) + r + 1, rep_id, path)
            for _ in range(r + 1):
                media.append(DashSegment(urljoin(base, fill_template(
                    media_t, rep_id=rep_id, number=number, time=t_now, bandwidth=bw))))
                starts.append((t_now - pto) / ts)
                t_now += d
                number += 1
    else:
        dur = _attr(tpls, "duration")
        if not dur or "$Number" not in media_t:
            raise ManifestError(f"SegmentTemplate of Representation {rep_id!r} needs "
                                "SegmentTimeline or @duration with $Number$", path=path)
        if period_s is None:
            raise ManifestError("cannot count segments: no Period or presentation duration",
                                path=path)
        seg_dur = _int(dur, "SegmentTemplate@duration", path, default=0, minimum=1)
        count = max(1, math.ceil(period_s * ts / seg_dur - 1e-9))
        _too_many(count, rep_id, path)
        for i in range(count):
            media.append(DashSegment(urljoin(base, fill_template(
                media_t, rep_id=rep_id, number=start_number + i, bandwidth=bw))))
            starts.append(i * seg_dur / ts)

        def more(n: int) -> str:
            return urljoin(base, fill_template(media_t, rep_id=rep_id, number=n, bandwidth=bw))

        return RepresentationSegments(rep, aset, "template", init, media, timescale=ts,
                                      starts=starts, next_number=start_number + count,
                                      more=more)
    return RepresentationSegments(rep, aset, "template", init, media, timescale=ts,
                                  starts=starts)


# --- ContentProtection --------------------------------------------------------------------------
def _cp(scheme_id: str, value: str | None = None) -> etree._Element:
    nsmap: dict[str | None, str] = {None: NS_MPD}
    nsmap.update(CP_NSMAP)
    el = etree.Element(f"{_M}ContentProtection", nsmap=nsmap)  # type: ignore[arg-type]
    el.set("schemeIdUri", scheme_id)
    if value is not None:
        el.set("value", value)
    return el


def _sub(parent: etree._Element, tag: str, text: str) -> etree._Element:
    el = etree.SubElement(parent, tag)
    el.text = text
    return el


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _cpd_children(cpd: str, drm: DrmSystem) -> list[etree._Element]:
    """Elements of a key server's ContentProtectionData fragment (children of a wrapper, or of a
    whole ContentProtection element if the server sent one)."""
    decls = " ".join(f'xmlns:{p}="{ns}"' for p, ns in CP_NSMAP.items())
    wrapper = parse_xml(f"<w {decls}>{cpd}</w>".encode(), what=f"{drm.label} CPD fragment",
                        error=ManifestError)
    kids = [c for c in wrapper if isinstance(c.tag, str)]
    if len(kids) == 1 and etree.QName(kids[0]).localname == "ContentProtection":
        kids = [c for c in kids[0] if isinstance(c.tag, str)]
    return [copy.deepcopy(c) for c in kids]


def content_protections(
    kid: UUID,
    scheme: Scheme,
    signals: Sequence[DrmSignal],
    *,
    clearkey_license_url: str | None = None,
) -> list[etree._Element]:
    """The ContentProtection elements for one AdaptationSet keyed by ``kid``.

    First ``mp4protection`` with ``cenc:default_KID``, then one per DRM (Widevine, PlayReady,
    ClearKey) carrying the key server's CPD as-is or ``cenc:pssh``/``mspr:pro`` built from the
    pssh; ClearKey gets ``dashif:Laurl`` when a license URL is known and never a ``cenc:pssh``
    (dash.js rejects it there; the common pssh is in the init segment). FairPlay and AES-128 have no
    DASH signaling and are skipped."""
    if scheme not in (Scheme.CENC, Scheme.CBCS):
        raise ManifestError(f"DASH needs cenc or cbcs, not {scheme.value}")
    out = [_cp(DASH_MP4PROTECTION_SCHEME, scheme.value)]
    out[0].set(f"{_CENC}default_KID", str(kid))
    have_clearkey = False
    for sig in signals:
        if sig.drm not in DASH_CP_VALUE:
            continue
        sys_id = DASHIF_CLEARKEY if sig.drm is DrmSystem.CLEARKEY else sig.system_id
        cp = _cp(f"urn:uuid:{sys_id}", DASH_CP_VALUE[sig.drm])
        if sig.content_protection_data:
            for child in _cpd_children(sig.content_protection_data, sig.drm):
                if sig.drm is DrmSystem.CLEARKEY and child.tag == f"{_CENC}pssh":
                    # dash.js (4.7) hands a pssh found in the DASH-IF ClearKey descriptor to
                    # generateRequest('keyids', ...) and fails; the common pssh stays in the
                    # init segment's moov, where every ClearKey CDM reads it.
                    continue
                cp.append(child)
        elif sig.drm is not DrmSystem.CLEARKEY:
            if sig.pssh:
                _sub(cp, f"{_CENC}pssh", _b64(sig.pssh))
            if sig.drm is DrmSystem.PLAYREADY:
                pro = sig.playready_object or (parse_pssh(sig.pssh).data if sig.pssh else None)
                if pro:
                    _sub(cp, f"{_MSPR}pro", _b64(pro))
        if sig.drm is DrmSystem.CLEARKEY:
            have_clearkey = True
            if clearkey_license_url and cp.find(f"{_DASHIF}Laurl") is None:
                _sub(cp, f"{_DASHIF}Laurl", clearkey_license_url).set("licenseType", "EME-1.0")
        out.append(cp)
    if not have_clearkey and clearkey_license_url:
        cp = _cp(f"urn:uuid:{DASHIF_CLEARKEY}", DASH_CP_VALUE[DrmSystem.CLEARKEY])
        _sub(cp, f"{_DASHIF}Laurl", clearkey_license_url).set("licenseType", "EME-1.0")
        out.append(cp)
    return out


def add_content_protection(parent: etree._Element, elements: Sequence[etree._Element]) -> None:
    """Insert ``elements`` into an AdaptationSet (or Representation) where the schema wants them:
    after FramePacking / AudioChannelConfiguration / ContentProtection, before the rest."""
    pos = 0
    for i, child in enumerate(parent):
        if isinstance(child.tag, str) and child.tag not in _BEFORE_CP:
            break
        pos = i + 1
    indent = parent.text if parent.text is not None and not parent.text.strip() else None
    for el in reversed(elements):
        if indent is not None:
            el.tail = indent
        parent.insert(pos, el)


def split_adaptation_set(
    aset: etree._Element, groups: Sequence[Sequence[etree._Element]]
) -> list[etree._Element]:
    """Split ``aset`` so each group of its Representations gets its own AdaptationSet.

    The first group stays in ``aset``; the others go to deep copies inserted right after it,
    with fresh ``@id`` values when the original had one. Returns the sets in group order."""
    if len(groups) <= 1:
        return [aset]
    period = aset.getparent()
    if period is None:
        raise ManifestError("AdaptationSet without a Period")
    reps = aset.findall(f"{_M}Representation")
    index = {id(r): i for i, r in enumerate(reps)}
    ids = [int(a.get("id", "0")) for a in period.findall(f"{_M}AdaptationSet")
           if (a.get("id") or "").isdigit()]
    next_id = max(ids, default=0) + 1
    result = [aset]
    keep_first = {index[id(r)] for r in groups[0]}
    template = copy.deepcopy(aset)
    anchor = aset
    for group in groups[1:]:
        wanted = {index[id(r)] for r in group}
        clone = copy.deepcopy(template)
        for i, r in enumerate(clone.findall(f"{_M}Representation")):
            if i not in wanted:
                clone.remove(r)
        if aset.get("id") is not None:
            clone.set("id", str(next_id))
            next_id += 1
        anchor.addnext(clone)
        anchor = clone
        result.append(clone)
    for i, r in enumerate(reps):
        if i not in keep_first:
            aset.remove(r)
    return result
