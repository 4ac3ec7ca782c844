"""Find the renditions of a package directory: DASH MPDs and HLS playlists, read-only.

A :class:`Rendition` lists its segment files in playback order together with the DRM
signaling its manifest declares, so `verify` can decrypt it and compare both.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from lxml import etree

from .._hls_attrs import parse_attribute_list
from .._xml import parse_xml
from ..constants import NS_CENC, NS_MPD, NS_MSPR
from ..errors import CpixError, ManifestError, UnsupportedMediaError

MAX_PLAYLIST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Piece:
    """A segment (or init segment) file, optionally a byte range of it."""

    path: Path
    offset: int = 0
    length: int | None = None

    def open(self) -> BinaryIO:
        """The file, positioned at ``offset``; refused unless it is a regular file (a FIFO
        would block, a device never end)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise ManifestError(f"segment {self.path.name} cannot be read: {exc.strerror}",
                                path=str(self.path)) from exc
        fh = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            fh.close()
            raise ManifestError(f"segment {self.path.name} is not a regular file",
                                path=str(self.path))
        fh.seek(self.offset)
        return fh

    def read(self) -> bytes:
        with self.open() as fh:
            try:
                return fh.read() if self.length is None else fh.read(self.length)
            except OSError as exc:
                raise ManifestError(f"segment {self.path.name} cannot be read: "
                                    f"{exc.strerror}", path=str(self.path)) from exc


@dataclass(frozen=True, slots=True)
class KeyTag:
    """One ``EXT-X-KEY`` / ``EXT-X-SESSION-KEY`` tag."""

    attrs: dict[str, str]
    line: int
    playlist: Path

    @property
    def method(self) -> str:
        return self.attrs.get("METHOD", "")

    @property
    def keyformat(self) -> str:
        return self.attrs.get("KEYFORMAT", "identity")


@dataclass(frozen=True, slots=True)
class HlsSegment:
    piece: Piece
    duration: float
    sequence: int
    keys: tuple[KeyTag, ...]  # the EXT-X-KEY tags in force (METHOD=NONE dropped)
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class ContentProtection:
    """One DASH ``ContentProtection`` element."""

    scheme_id: str
    value: str
    default_kid: str | None
    pssh: tuple[str, ...]  # base64 text of cenc:pssh
    pro: tuple[str, ...]  # base64 text of mspr:pro
    laurl: str | None


@dataclass(slots=True)
class Rendition:
    """One decryptable stream of the package (a DASH Representation or an HLS media playlist)."""

    name: str
    source: str  # 'dash' | 'hls'
    manifest: Path
    container: str  # 'fmp4' | 'ts'
    init: Piece | None
    segments: list[Piece]
    content_type: str = ""
    protections: list[ContentProtection] = field(default_factory=list)  # DASH
    hls_segments: list[HlsSegment] = field(default_factory=list)  # HLS
    hls_key_tags: list[KeyTag] = field(default_factory=list)  # every EXT-X-KEY of the playlist
    hls_version: int = 1
    target_duration: int = 0


@dataclass(slots=True)
class Package:
    root: Path
    renditions: list[Rendition]
    session_keys: list[KeyTag]
    manifests: list[Path]


def _local(base: Path, uri: str, root: Path, where: Path) -> Path:
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc:
        raise UnsupportedMediaError(f"remote segment URI {uri!r} in {where.name}: verify reads "
                                    "local packages only")
    p = (base / unquote(parts.path)).resolve()
    if root not in p.parents and p != root:
        raise ManifestError(f"URI {uri!r} points outside the package", path=str(where))
    return p


# --- HLS ---------------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_PLAYLIST_BYTES:
        raise ManifestError("playlist too large", path=str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError("playlist is not UTF-8", path=str(path)) from exc


def _tag(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value


def read_master(path: Path, root: Path) -> tuple[list[Path], list[KeyTag]]:
    """Media playlists referenced by a multivariant playlist, and its session keys."""
    lines = _read_text(path).splitlines()
    out: list[Path] = []
    session: list[KeyTag] = []
    expect_uri = False
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            name, value = _tag(line)
            if name == "#EXT-X-STREAM-INF":
                expect_uri = True
            elif name == "#EXT-X-MEDIA":
                attrs = parse_attribute_list(value, line=no, path=str(path))
                if "URI" in attrs:
                    out.append(_local(path.parent, attrs["URI"], root, path))
            elif name == "#EXT-X-SESSION-KEY":
                session.append(KeyTag(parse_attribute_list(value, line=no, path=str(path)), no,
                                      path))
            continue
        if expect_uri:
            out.append(_local(path.parent, line, root, path))
            expect_uri = False
    return list(dict.fromkeys(out)), session


def read_media_playlist(path: Path, root: Path) -> Rendition:
    """Parse one HLS media playlist into a :class:`Rendition`."""
    text = _read_text(path)
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise ManifestError("playlist does not start with #EXTM3U", line=1, path=str(path))
    seq = 0
    version = 1
    target = 0
    keys: dict[str, KeyTag] = {}
    all_tags: list[KeyTag] = []
    init: Piece | None = None
    duration: float | None = None
    byterange: tuple[int, int | None] | None = None
    last_end: dict[Path, int] = {}
    disc = False
    segs: list[HlsSegment] = []
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or (line.startswith("#") and not line.startswith("#EXT")):
            continue
        if line.startswith("#"):
            name, value = _tag(line)
            if name == "#EXT-X-MEDIA-SEQUENCE":
                seq = _int(value, no, path)
            elif name == "#EXT-X-VERSION":
                version = _int(value, no, path)
            elif name == "#EXT-X-TARGETDURATION":
                target = _int(value, no, path)
            elif name == "#EXT-X-KEY":
                tag = KeyTag(parse_attribute_list(value, line=no, path=str(path)), no, path)
                all_tags.append(tag)
                if tag.method == "NONE":
                    keys.clear()
                else:
                    keys[tag.keyformat] = tag
            elif name == "#EXT-X-MAP":
                attrs = parse_attribute_list(value, line=no, path=str(path))
                if "URI" not in attrs:
                    raise ManifestError("EXT-X-MAP without URI", line=no, path=str(path))
                p = _local(path.parent, attrs["URI"], root, path)
                off, ln = 0, None
                if "BYTERANGE" in attrs:
                    ln_s, _, off_s = attrs["BYTERANGE"].partition("@")
                    ln, off = int(ln_s), int(off_s or 0)
                init = Piece(p, off, ln)
            elif name == "#EXTINF":
                try:
                    duration = float(value.split(",", 1)[0])
                except ValueError:
                    raise ManifestError("bad EXTINF duration", line=no, path=str(path)) from None
            elif name == "#EXT-X-BYTERANGE":
                ln_s, _, off_s = value.partition("@")
                byterange = (int(ln_s), int(off_s) if off_s else None)
            elif name == "#EXT-X-DISCONTINUITY":
                disc = True
            elif name in ("#EXT-X-I-FRAMES-ONLY",):
                raise UnsupportedMediaError("I-frame playlists are not verified")
            continue
        if duration is None:
            raise ManifestError("segment URI without EXTINF", line=no, path=str(path))
        p = _local(path.parent, line, root, path)
        piece = Piece(p)
        if byterange is not None:
            length, start = byterange
            off = start if start is not None else last_end.get(p, 0)
            piece = Piece(p, off, length)
            last_end[p] = off + length
        segs.append(HlsSegment(piece, duration, seq, tuple(keys.values()), disc))
        seq += 1
        duration = None
        byterange = None
        disc = False
    if not segs:
        raise ManifestError("media playlist has no segments", path=str(path))
    first = segs[0].piece.path.suffix.lower()
    container = "fmp4" if init is not None or first in (".mp4", ".m4s", ".cmfv", ".cmfa", ".m4a",
                                                         ".m4v") else "ts"
    rel = path.relative_to(root).as_posix()
    return Rendition(
        name=f"hls:{rel}", source="hls", manifest=path, container=container, init=init,
        segments=[s.piece for s in segs], hls_segments=segs, hls_key_tags=all_tags,
        hls_version=version, target_duration=target,
    )


def _int(value: str, no: int, path: Path) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ManifestError(f"expected an integer, got {value!r}", line=no,
                            path=str(path)) from None


# --- DASH --------------------------------------------------------------------------------------

_NS = {"mpd": NS_MPD, "cenc": NS_CENC, "mspr": NS_MSPR}
_DUR = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$")
_TPL = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth)(%0(\d+)d)?\$|\$\$")


def iso_duration(text: str) -> float:
    m = _DUR.match(text.strip())
    if not m:
        raise ManifestError(f"bad ISO 8601 duration {text!r}")
    y, mo, d, h, mi, s = m.groups()
    if y or mo:
        raise ManifestError(f"duration {text!r} uses years or months")
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def _fill(template: str, rep_id: str, bandwidth: str, number: int, time: int) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, width = m.group(1), m.group(3)
        val: str = {"RepresentationID": rep_id, "Bandwidth": bandwidth,
                    "Number": str(number), "Time": str(time)}[name]
        return val.zfill(int(width)) if width and name in ("Number", "Time") else val

    return _TPL.sub(sub, template)


def _base(el: etree._Element, base: str) -> str:
    b = el.find("mpd:BaseURL", _NS)
    if b is not None and b.text:
        text = b.text.strip()
        return text if "://" in text or text.startswith("/") else base + text
    return base


def _protections(el: etree._Element) -> list[ContentProtection]:
    out = []
    for cp in el.findall("mpd:ContentProtection", _NS):
        laurl = None
        for child in cp:
            if isinstance(child.tag, str) and etree.QName(child).localname.lower() == "laurl":
                laurl = (child.text or "").strip()
        out.append(ContentProtection(
            scheme_id=(cp.get("schemeIdUri") or "").lower(), value=cp.get("value") or "",
            default_kid=cp.get(f"{{{NS_CENC}}}default_KID"),
            pssh=tuple((p.text or "").strip() for p in cp.findall("cenc:pssh", _NS)),
            pro=tuple((p.text or "").strip() for p in cp.findall("mspr:pro", _NS)),
            laurl=laurl,
        ))
    return out


def read_mpd(path: Path, root: Path) -> list[Rendition]:
    """Parse an MPD into one :class:`Rendition` per Period x Representation."""
    try:
        mpd = parse_xml(path.read_bytes(), what=f"MPD {path.name}")
    except CpixError as exc:
        raise ManifestError(str(exc), path=str(path)) from exc
    if etree.QName(mpd).localname != "MPD" or etree.QName(mpd).namespace != NS_MPD:
        raise ManifestError("root element is not an MPD", path=str(path))
    total = iso_duration(mpd.get("mediaPresentationDuration") or "PT0S")
    periods = mpd.findall("mpd:Period", _NS)
    out: list[Rendition] = []
    base0 = _base(mpd, "")
    for pi, period in enumerate(periods):
        pbase = _base(period, base0)
        pdur = period.get("duration")
        period_seconds = iso_duration(pdur) if pdur else total
        for ai, aset in enumerate(period.findall("mpd:AdaptationSet", _NS)):
            abase = _base(aset, pbase)
            a_cp = _protections(aset)
            ctype = aset.get("contentType") or (aset.get("mimeType") or "").split("/")[0]
            for rep in aset.findall("mpd:Representation", _NS):
                rid = rep.get("id") or str(ai)
                rbase = _base(rep, abase)
                ctype_r = ctype or (rep.get("mimeType") or "").split("/")[0]
                init, segs = _rep_segments(path, root, (period, aset, rep), rid, rbase,
                                           period_seconds=period_seconds)
                name = f"dash:{path.name}:{period.get('id') or pi}/{ctype_r or ai}/{rid}"
                out.append(Rendition(
                    name=name, source="dash", manifest=path, container="fmp4", init=init,
                    segments=segs, content_type=ctype_r,
                    protections=a_cp + _protections(rep),
                ))
    return out


def _byte_range(text: str | None, path: Path) -> tuple[int, int | None]:
    """``first-last`` (inclusive, both given) as (offset, length); absent: the whole file."""
    if not text:
        return 0, None
    m = re.fullmatch(r"\s*(\d+)-(\d+)\s*", text)
    if not m or int(m.group(2)) < int(m.group(1)):
        raise ManifestError(f"bad byte range {text!r}", path=str(path))
    return int(m.group(1)), int(m.group(2)) - int(m.group(1)) + 1


def _nearest(chain: tuple[etree._Element, ...], tag: str) -> list[etree._Element]:
    """The ``tag`` children along Period > AdaptationSet > Representation, outermost first."""
    return [el for el in (c.find(f"mpd:{tag}", _NS) for c in chain) if el is not None]


def _rep_segments(path: Path, root: Path, chain: tuple[etree._Element, ...], rid: str,
                  base: str, *, period_seconds: float) -> tuple[Piece | None, list[Piece]]:
    rep = chain[-1]
    bandwidth = rep.get("bandwidth") or ""

    def local(uri: str) -> Path:
        return _local(path.parent, uri if "://" in uri or uri.startswith("/") else base + uri,
                      root, path)

    def piece(uri: str, byte_range: str | None) -> Piece:
        off, length = _byte_range(byte_range, path)
        return Piece(local(uri), off, length)

    templates = _nearest(chain, "SegmentTemplate")
    if templates:
        return _template(path, templates, rid, bandwidth, local=local,
                         period_seconds=period_seconds)
    lists = _nearest(chain, "SegmentList")
    if lists:
        seg_list = lists[-1]
        ini = next((el for el in (s.find("mpd:Initialization", _NS) for s in reversed(lists))
                    if el is not None), None)
        init = None
        if ini is not None:
            init = piece(ini.get("sourceURL") or "", ini.get("range"))
        return init, [piece(u.get("media") or "", u.get("mediaRange"))
                      for u in seg_list.findall("mpd:SegmentURL", _NS)]
    if base:  # SegmentBase or a bare BaseURL: one self-initialising file, read whole
        return None, [Piece(local(""))]
    raise ManifestError(f"representation {rid} has no segment information", path=str(path))


MAX_EXTRA_SEGMENTS = 10_000


def _template(path: Path, templates: list[etree._Element], rid: str, bandwidth: str, *,
              local: Callable[[str], Path], period_seconds: float
              ) -> tuple[Piece | None, list[Piece]]:
    attrs: dict[str, str] = {}
    timeline = None
    for tpl in templates:
        attrs.update({str(k): str(v) for k, v in tpl.attrib.items()})
        tl = tpl.find("mpd:SegmentTimeline", _NS)
        if tl is not None:
            timeline = tl
    media = attrs.get("media")
    if not media:
        raise ManifestError(f"SegmentTemplate of representation {rid} has no media",
                            path=str(path))
    start = int(attrs.get("startNumber", "1"))
    init = None
    if attrs.get("initialization"):
        init = Piece(local(_fill(attrs["initialization"], rid, bandwidth, 0, 0)))
    pieces: list[Piece] = []
    if timeline is not None:
        number, t = start, 0
        for s in timeline.findall("mpd:S", _NS):
            t = int(s.get("t", t))
            d = int(s.get("d", "0"))
            r = int(s.get("r", "0"))
            if r < 0:
                raise UnsupportedMediaError("SegmentTimeline with r<0 is not verified")
            for _ in range(r + 1):
                pieces.append(Piece(local(_fill(media, rid, bandwidth, number, t))))
                number += 1
                t += d
        return init, pieces
    dur = int(attrs.get("duration", "0"))
    scale = int(attrs.get("timescale", "1"))
    if dur <= 0 or period_seconds <= 0:
        raise ManifestError(f"representation {rid}: no SegmentTimeline and no duration",
                            path=str(path))
    count = math.ceil(period_seconds * scale / dur - 1e-9)
    for i in range(count):
        pieces.append(Piece(local(_fill(media, rid, bandwidth, start + i, i * dur))))
    if "$Number" in media:
        # muxers often write one segment past mediaPresentationDuration (audio priming);
        # encrypt-vod carries such files along, so they are read here too
        for i in range(count, count + MAX_EXTRA_SEGMENTS):
            p = local(_fill(media, rid, bandwidth, start + i, i * dur))
            if not p.is_file():
                break
            pieces.append(Piece(p))
    return init, pieces


def discover(root: Path) -> Package:
    """Every rendition of the package under ``root`` (MPDs and HLS playlists)."""
    root = root.resolve()
    if not root.is_dir():
        raise ManifestError(f"{root} is not a directory")
    renditions: list[Rendition] = []
    session: list[KeyTag] = []
    manifests: list[Path] = []
    for mpd in sorted(root.rglob("*.mpd")):
        manifests.append(mpd)
        renditions.extend(read_mpd(mpd, root))
    playlists = sorted(root.rglob("*.m3u8"))
    masters: list[Path] = []
    referenced: list[Path] = []
    for pl in playlists:
        if "#EXT-X-STREAM-INF" in _read_text(pl):
            masters.append(pl)
            refs, sk = read_master(pl, root)
            referenced.extend(refs)
            session.extend(sk)
    media = list(dict.fromkeys(referenced)) if masters else playlists
    manifests.extend(masters)
    for pl in media:
        if not pl.exists():
            raise ManifestError(f"playlist {pl.name} referenced but missing", path=str(pl))
        manifests.append(pl)
        renditions.append(read_media_playlist(pl, root))
    if not renditions:
        raise ManifestError(f"no MPD or HLS playlist found in {root}")
    return Package(root, renditions, session, manifests)
