"""HLS media and multivariant playlists: read, keep every tag we do not own, write keys ourselves.

We own ``EXT-X-KEY``, ``EXT-X-SESSION-KEY`` and ``EXT-X-VERSION``; segment URIs, byte ranges and
``EXT-X-MAP`` are rewritten from the objects (they change when segments grow); every other line
(PROGRAM-DATE-TIME, DISCONTINUITY, DATERANGE, I-frame and rendition tags, comments, unknown tags)
is written back verbatim and in place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .._hls_attrs import AttrValue, Quoted, format_attribute_list, parse_attribute_list, parse_hex
from ..errors import ManifestError

TAG_KEY = "#EXT-X-KEY"
TAG_SESSION_KEY = "#EXT-X-SESSION-KEY"
TAG_VERSION = "#EXT-X-VERSION"
TAG_MAP = "#EXT-X-MAP"
TAG_BYTERANGE = "#EXT-X-BYTERANGE"
TAG_EXTINF = "#EXTINF"
TAG_MEDIA_SEQUENCE = "#EXT-X-MEDIA-SEQUENCE"
TAG_IFRAMES_ONLY = "#EXT-X-I-FRAMES-ONLY"
TAG_STREAM_INF = "#EXT-X-STREAM-INF"
TAG_IFRAME_STREAM_INF = "#EXT-X-I-FRAME-STREAM-INF"
TAG_MEDIA = "#EXT-X-MEDIA"
TAG_DISCONTINUITY = "#EXT-X-DISCONTINUITY"
TAG_ENDLIST = "#EXT-X-ENDLIST"

# Tags that belong to the next segment (everything before the first of them is header).
_SEGMENT_TAGS = frozenset({
    TAG_EXTINF, TAG_BYTERANGE, TAG_DISCONTINUITY, "#EXT-X-PROGRAM-DATE-TIME", TAG_MAP, TAG_KEY,
    "#EXT-X-GAP", "#EXT-X-BITRATE", "#EXT-X-DATERANGE", "#EXT-X-CUE-OUT", "#EXT-X-CUE-IN",
})
_MULTIVARIANT_TAGS = frozenset({TAG_STREAM_INF, TAG_IFRAME_STREAM_INF, TAG_MEDIA,
                                TAG_SESSION_KEY, "#EXT-X-SESSION-DATA"})


def _tag_name(line: str) -> str:
    return line.split(":", 1)[0]


def _tag_value(line: str) -> str:
    return line.split(":", 1)[1] if ":" in line else ""


# --- keys ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HlsKey:
    """One ``EXT-X-KEY`` / ``EXT-X-SESSION-KEY``. ``raw`` keeps a key server's line verbatim."""

    method: str
    uri: str | None = None
    iv: bytes | None = None
    keyformat: str | None = None
    keyformatversions: str | None = None
    keyid: bytes | None = None
    raw: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.method == "NONE":
            if self.uri or self.iv or self.keyformat or self.keyformatversions:
                raise ManifestError("METHOD=NONE takes no other attribute")
        elif not self.uri:
            raise ManifestError(f"METHOD={self.method} needs a URI")
        if self.iv is not None and len(self.iv) != 16:
            raise ManifestError("an HLS IV must be 16 bytes")
        if self.iv is not None and self.method == "SAMPLE-AES-CTR":
            raise ManifestError("SAMPLE-AES-CTR must not carry an IV")

    @classmethod
    def parse(cls, line: str, *, lineno: int | None = None) -> HlsKey:
        """Parse an ``#EXT-X-KEY:`` or ``#EXT-X-SESSION-KEY:`` line, keeping it as ``raw``."""
        line = line.strip()
        if _tag_name(line) not in (TAG_KEY, TAG_SESSION_KEY):
            raise ManifestError(f"not a key tag: {line[:40]!r}", line=lineno)
        attrs = parse_attribute_list(_tag_value(line), line=lineno)
        if "METHOD" not in attrs:
            raise ManifestError("key tag without METHOD", line=lineno)
        iv = parse_hex(attrs["IV"], what="IV", line=lineno) if "IV" in attrs else None
        if iv is not None and len(iv) < 16:
            iv = iv.rjust(16, b"\x00")
        kid = parse_hex(attrs["KEYID"], what="KEYID", line=lineno) if "KEYID" in attrs else None
        try:
            return cls(method=attrs["METHOD"], uri=attrs.get("URI"), iv=iv,
                       keyformat=attrs.get("KEYFORMAT"),
                       keyformatversions=attrs.get("KEYFORMATVERSIONS"), keyid=kid, raw=line)
        except ManifestError as exc:
            raise ManifestError(str(exc), line=lineno) from None

    @property
    def effective_keyformat(self) -> str:
        return self.keyformat or "identity"

    def attributes(self) -> list[tuple[str, AttrValue]]:
        attrs: list[tuple[str, AttrValue]] = [("METHOD", self.method)]
        if self.uri is not None:
            attrs.append(("URI", Quoted(self.uri)))
        if self.iv is not None:
            attrs.append(("IV", self.iv))
        if self.keyid is not None:
            attrs.append(("KEYID", self.keyid))
        if self.keyformat is not None:
            attrs.append(("KEYFORMAT", Quoted(self.keyformat)))
        if self.keyformatversions is not None:
            attrs.append(("KEYFORMATVERSIONS", Quoted(self.keyformatversions)))
        return attrs

    def render(self, tag: str = TAG_KEY) -> str:
        """The tag line. A key server's line is returned as given (with the tag name asked)."""
        if self.raw is not None:
            return f"{tag}:{_tag_value(self.raw)}"
        return f"{tag}:{format_attribute_list(self.attributes())}"

    def required_version(self) -> int:
        if self.method in ("SAMPLE-AES", "SAMPLE-AES-CTR") or self.keyformat is not None or \
                self.keyformatversions is not None:
            return 5
        if self.iv is not None:
            return 2
        return 1


def parse_key_lines(text: str) -> list[HlsKey]:
    """Key tags from a key server's decoded HLSSignalingData (one or more complete lines)."""
    keys = [HlsKey.parse(ln) for ln in text.splitlines() if ln.strip()]
    if not keys:
        raise ManifestError("empty HLS signaling data")
    return keys


# --- media playlists ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ByteRange:
    length: int
    offset: int

    def render(self) -> str:
        return f"{self.length}@{self.offset}"


@dataclass(slots=True)
class InitSection:
    """An ``EXT-X-MAP``; other attributes than URI/BYTERANGE are kept in ``extra``."""

    uri: str
    byterange: ByteRange | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        attrs: list[tuple[str, AttrValue]] = [("URI", Quoted(self.uri))]
        if self.byterange is not None:
            attrs.append(("BYTERANGE", Quoted(self.byterange.render())))
        attrs.extend((k, Quoted(v)) for k, v in self.extra)
        return f"{TAG_MAP}:{format_attribute_list(attrs)}"


class _ByteRangeSlot:
    """Marks where a segment's EXT-X-BYTERANGE line goes."""


_BR_SLOT = _ByteRangeSlot()
_Item = str | InitSection | _ByteRangeSlot


@dataclass(slots=True)
class MediaSegment:
    uri: str
    duration: float
    sequence: int
    byterange: ByteRange | None = None
    init: InitSection | None = None  # the EXT-X-MAP in effect
    discontinuity: bool = False
    items: list[_Item] = field(default_factory=list)  # lines before the URI, in input order


@dataclass(slots=True)
class MediaPlaylist:
    header: list[str]
    segments: list[MediaSegment]
    trailer: list[str]
    version: int = 1
    media_sequence: int = 0
    iframes_only: bool = False


# RFC 8216 §4.1: no control characters but CR and LF (a tab is tolerated). A NUL or another
# control character would end up in a file name or a rewritten line: refused, whatever tag.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _lines(text: str, path: str | None) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    bad = _CONTROL.search(text)
    if bad is not None:
        raise ManifestError(f"control character U+{ord(bad.group()):04X} in the playlist "
                            "(NUL and control characters are not allowed, RFC 8216 4.1)",
                            line=text.count("\n", 0, bad.start()) + 1, path=path)
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise ManifestError("not an HLS playlist (no #EXTM3U first line)", line=1, path=path)
    return lines


def is_multivariant(text: str) -> bool:
    """True for a multivariant (master) playlist, False for a media playlist."""
    for ln in text.splitlines():
        name = _tag_name(ln.strip())
        if name in _MULTIVARIANT_TAGS:
            return True
        if name == TAG_EXTINF:
            return False
    return False


def _byterange(value: str, prev_end: int | None, *, lineno: int, path: str | None) -> ByteRange:
    m = re.fullmatch(r"\s*(\d+)(?:@(\d+))?\s*", value)
    if not m:
        raise ManifestError(f"malformed byte range {value!r}", line=lineno, path=path)
    length = int(m.group(1))
    if m.group(2) is not None:
        return ByteRange(length, int(m.group(2)))
    if prev_end is None:
        raise ManifestError("byte range without offset and no previous range of the same "
                            "resource", line=lineno, path=path)
    return ByteRange(length, prev_end)


def parse_media_playlist(text: str, *, path: str | None = None) -> MediaPlaylist:
    """Parse a clear media playlist. Encrypted input (``EXT-X-KEY`` other than NONE) is refused."""
    lines = _lines(text, path)
    header: list[str] = []
    segments: list[MediaSegment] = []
    pending: list[_Item] = []
    in_header = True
    version = 1
    media_sequence = 0
    iframes = False
    duration: float | None = None
    br: tuple[int, str] | None = None
    init: InitSection | None = None
    disc = False
    ends: dict[str, int] = {}
    for idx, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            name = _tag_name(line)
            if in_header and name in _SEGMENT_TAGS:
                in_header = False
            if name == TAG_VERSION:
                try:
                    version = int(_tag_value(line))
                except ValueError:
                    raise ManifestError("bad EXT-X-VERSION", line=idx, path=path) from None
                header.append(line)
                continue
            if name == TAG_MEDIA_SEQUENCE:
                try:
                    media_sequence = int(_tag_value(line))
                except ValueError:
                    raise ManifestError("bad EXT-X-MEDIA-SEQUENCE", line=idx, path=path) from None
            if name == TAG_IFRAMES_ONLY:
                iframes = True
            if name in _MULTIVARIANT_TAGS:
                raise ManifestError("a multivariant tag in a media playlist", line=idx, path=path)
            if name == TAG_KEY:
                if HlsKey.parse(line, lineno=idx).method != "NONE":
                    raise ManifestError("the input playlist is already encrypted (EXT-X-KEY); "
                                        "give a clear package", line=idx, path=path)
                continue  # METHOD=NONE: we write keys ourselves
            if in_header:
                header.append(line)
                continue
            if name == TAG_EXTINF:
                val = _tag_value(line).split(",", 1)[0]
                try:
                    duration = float(val)
                except ValueError:
                    raise ManifestError(f"bad EXTINF duration {val!r}", line=idx,
                                        path=path) from None
                pending.append(line)
            elif name == TAG_BYTERANGE:
                br = (idx, _tag_value(line))
                pending.append(_BR_SLOT)
            elif name == TAG_MAP:
                attrs = parse_attribute_list(_tag_value(line), line=idx, path=path)
                if "URI" not in attrs:
                    raise ManifestError("EXT-X-MAP without URI", line=idx, path=path)
                mbr = (_byterange(attrs["BYTERANGE"], 0, lineno=idx, path=path)
                       if "BYTERANGE" in attrs else None)
                extra = [(k, v) for k, v in attrs.items() if k not in ("URI", "BYTERANGE")]
                init = InitSection(attrs["URI"], mbr, extra)
                if mbr is not None:
                    ends[init.uri] = mbr.offset + mbr.length
                pending.append(init)
            else:
                if name == TAG_DISCONTINUITY:
                    disc = True
                pending.append(line)
            continue
        # a URI line closes a segment
        if in_header:
            raise ManifestError("segment URI before any EXTINF", line=idx, path=path)
        if duration is None:
            raise ManifestError(f"segment {line!r} has no EXTINF", line=idx, path=path)
        seg_br: ByteRange | None = None
        if br is not None:
            bidx, bval = br
            seg_br = _byterange(bval, ends.get(line), lineno=bidx, path=path)
            ends[line] = seg_br.offset + seg_br.length
        segments.append(MediaSegment(uri=line, duration=duration,
                                     sequence=media_sequence + len(segments), byterange=seg_br,
                                     init=init, discontinuity=disc, items=pending))
        pending, duration, br, disc = [], None, None, False
    trailer = [x for x in pending if isinstance(x, str)]
    if len(trailer) != len(pending) or duration is not None:
        raise ManifestError("playlist ends inside a segment (tags without a URI)", path=path)
    if not segments:
        raise ManifestError("media playlist has no segments", path=path)
    return MediaPlaylist(header=header, segments=segments, trailer=trailer, version=version,
                         media_sequence=media_sequence, iframes_only=iframes)


def _needed_version(pl: MediaPlaylist, keys: Sequence[Sequence[HlsKey]]) -> int:
    need = 1
    if any(s.duration != int(s.duration) for s in pl.segments):
        need = 3
    if pl.iframes_only or any(s.byterange for s in pl.segments):
        need = max(need, 4)
    if any(s.init for s in pl.segments):
        need = max(need, 5 if pl.iframes_only else 6)
    for group in keys:
        for k in group:
            need = max(need, k.required_version())
    return need


def _with_version(header: list[str], version: int) -> list[str]:
    out = [ln for ln in header if _tag_name(ln) != TAG_VERSION]
    return [out[0], f"{TAG_VERSION}:{version}", *out[1:]]


def render_media_playlist(
    pl: MediaPlaylist,
    keys: Sequence[Sequence[HlsKey]],
    *,
    version: int | None = None,
) -> str:
    """Write ``pl`` with ``keys[i]`` (all KEYFORMATs) in effect for segment ``i``.

    The full key set is written before a segment whenever it differs from the previous segment's
    (an empty set writes ``METHOD=NONE``); tags go after that segment's ``EXT-X-MAP`` so an init
    section is never covered by a new key. For ``AES-128`` a later ``EXT-X-MAP`` is preceded by
    ``METHOD=NONE`` (the init section stays clear) and the key set is repeated after it."""
    if len(keys) != len(pl.segments):
        raise ManifestError(f"{len(keys)} key sets for {len(pl.segments)} segments")
    ver = max(pl.version, _needed_version(pl, keys), version or 1)
    out: list[str] = _with_version(pl.header, ver)
    current: tuple[HlsKey, ...] = ()
    for seg, seg_keys in zip(pl.segments, keys, strict=True):
        want = tuple(seg_keys)
        formats = [k.effective_keyformat for k in want]
        if len(set(formats)) != len(formats):
            raise ManifestError(f"two keys with the same KEYFORMAT for segment {seg.uri}")
        placed = False
        for item in seg.items:
            if isinstance(item, InitSection):
                if current and any(k.method == "AES-128" for k in current):
                    out.append(f"{TAG_KEY}:METHOD=NONE")
                    current = ()
                out.append(item.render())
                if placed and want != current:  # the map came after this segment's EXTINF
                    out.extend(k.render() for k in want)
                    current = want
                continue
            if not placed and (item is _BR_SLOT or (isinstance(item, str)
                                                    and _tag_name(item) == TAG_EXTINF)):
                if want != current:
                    out.extend(k.render() for k in want) if want else out.append(
                        f"{TAG_KEY}:METHOD=NONE")
                    current = want
                placed = True
            if isinstance(item, _ByteRangeSlot):
                if seg.byterange is None:
                    raise ManifestError(f"segment {seg.uri} lost its byte range")
                out.append(f"{TAG_BYTERANGE}:{seg.byterange.render()}")
            elif isinstance(item, str):
                out.append(item)
        out.append(seg.uri)
    out.extend(pl.trailer)
    return "\n".join(out) + "\n"


def retarget(pl: MediaPlaylist, ranges: dict[tuple[str, ByteRange | None], ByteRange]
             ) -> MediaPlaylist:
    """A copy with byte ranges replaced by ``ranges[(uri, old_range)]`` where present."""
    inits: dict[int, InitSection] = {}
    segs: list[MediaSegment] = []
    for s in pl.segments:
        init = s.init
        if init is not None:
            if id(init) not in inits:
                new_br = ranges.get((init.uri, init.byterange), init.byterange)
                inits[id(init)] = InitSection(init.uri, new_br, list(init.extra))
            init = inits[id(init)]
        items: list[_Item] = [inits[id(i)] if isinstance(i, InitSection) else i for i in s.items]
        segs.append(replace(s, byterange=ranges.get((s.uri, s.byterange), s.byterange),
                            init=init, items=items))
    return replace(pl, segments=segs)


# --- multivariant playlists ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlaylistRef:
    """A media playlist referenced by a multivariant playlist."""

    uri: str
    kind: str  # 'variant', 'iframe', 'rendition'
    attributes: tuple[tuple[str, str], ...] = ()

    def attr(self, name: str) -> str | None:
        return dict(self.attributes).get(name)


@dataclass(slots=True)
class MultivariantPlaylist:
    lines: list[str]
    refs: list[PlaylistRef]
    version: int = 1


def parse_multivariant_playlist(text: str, *, path: str | None = None) -> MultivariantPlaylist:
    """Parse a clear multivariant playlist (input ``EXT-X-SESSION-KEY`` is refused)."""
    lines = _lines(text, path)
    out: list[str] = []
    refs: list[PlaylistRef] = []
    version = 1
    expect_uri: tuple[tuple[str, str], ...] | None = None
    for idx, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        name = _tag_name(line)
        if not line.startswith("#"):
            if expect_uri is None:
                raise ManifestError("URI without EXT-X-STREAM-INF", line=idx, path=path)
            refs.append(PlaylistRef(line, "variant", expect_uri))
            expect_uri = None
            out.append(line)
            continue
        if name == TAG_EXTINF:
            raise ManifestError("EXTINF in a multivariant playlist", line=idx, path=path)
        if name == TAG_VERSION:
            try:
                version = int(_tag_value(line))
            except ValueError:
                raise ManifestError("bad EXT-X-VERSION", line=idx, path=path) from None
        elif name == TAG_SESSION_KEY:
            if HlsKey.parse(line, lineno=idx).method != "NONE":
                raise ManifestError("the input playlist is already encrypted "
                                    "(EXT-X-SESSION-KEY); give a clear package", line=idx,
                                    path=path)
            continue
        elif name == TAG_STREAM_INF:
            expect_uri = tuple(parse_attribute_list(_tag_value(line), line=idx,
                                                    path=path).items())
        elif name in (TAG_IFRAME_STREAM_INF, TAG_MEDIA):
            attrs = parse_attribute_list(_tag_value(line), line=idx, path=path)
            if "URI" in attrs:
                kind = "iframe" if name == TAG_IFRAME_STREAM_INF else "rendition"
                refs.append(PlaylistRef(attrs["URI"], kind, tuple(attrs.items())))
            elif name == TAG_IFRAME_STREAM_INF:
                raise ManifestError("EXT-X-I-FRAME-STREAM-INF without URI", line=idx, path=path)
        out.append(line)
    if expect_uri is not None:
        raise ManifestError("EXT-X-STREAM-INF without a URI line", path=path)
    if not refs:
        raise ManifestError("multivariant playlist references no media playlist", path=path)
    return MultivariantPlaylist(lines=out, refs=refs, version=version)


def render_multivariant_playlist(
    mv: MultivariantPlaylist, session_keys: Sequence[HlsKey]
) -> str:
    """Write ``mv`` with ``EXT-X-SESSION-KEY`` lines (deduplicated) before the first variant."""
    seen: list[str] = []
    for k in session_keys:
        if k.method == "NONE":
            raise ManifestError("EXT-X-SESSION-KEY cannot be METHOD=NONE")
        line = k.render(TAG_SESSION_KEY)
        if line not in seen:
            seen.append(line)
    need = max([mv.version, *(k.required_version() for k in session_keys)])
    body = _with_version(mv.lines, need)
    pos = next((i for i, ln in enumerate(body)
                if _tag_name(ln) in (TAG_STREAM_INF, TAG_IFRAME_STREAM_INF, TAG_MEDIA)),
               len(body))
    return "\n".join([*body[:pos], *seen, *body[pos:]]) + "\n"
