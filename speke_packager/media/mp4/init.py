"""Init segments: read tracks (probe) and write the protected sample entries (sinf/tenc, pssh).

``encv``/``enca`` + ``sinf{frma, schm, schi{tenc}}`` per ISO/IEC 23001-7 §8 and
media-encryption.md §4; ancestor sizes follow from re-serialising the tree.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from ...constants import Scheme
from ...errors import CodecError, Mp4FormatError, UnsupportedMediaError
from ...model import TrackInfo, TrackKind
from ..codecs.h264 import parse_avcc
from ..codecs.hevc import parse_hvcc
from ..subsamples import CodecFamily, SubsampleMapper
from .boxes import Node, box_bytes, full_box, iter_boxes, parse_tree

__all__ = [
    "InitSegment",
    "Protection",
    "TrackSetup",
    "build_sinf",
    "parse_init",
    "probe_init",
]

VIDEO_CODECS = {b"avc1": CodecFamily.H264, b"avc3": CodecFamily.H264,
                b"hvc1": CodecFamily.HEVC, b"hev1": CodecFamily.HEVC,
                b"vp09": CodecFamily.VP9}
AUDIO_CODECS = frozenset({b"mp4a", b"ac-3", b"ec-3", b"Opus"})
_HANDLERS = {b"vide": TrackKind.VIDEO, b"soun": TrackKind.AUDIO, b"text": TrackKind.TEXT,
             b"subt": TrackKind.TEXT, b"sbtl": TrackKind.TEXT}


@dataclass(frozen=True, slots=True)
class Protection:
    """What a track's tenc (or a seig entry) says."""

    scheme: Scheme
    kid: UUID
    iv_size: int  # per-sample IV size; 0 with a constant IV
    constant_iv: bytes | None
    crypt: int
    skip: int


@dataclass(frozen=True, slots=True)
class TrackSetup:
    """One track of an init segment, with what encryption needs."""

    track_id: int
    kind: TrackKind
    fourcc: bytes  # sample entry type of the clear track (frma if already protected)
    entry_type: bytes  # as written in the input
    timescale: int
    width: int
    height: int
    channels: int
    entry_count: int
    default_sample_size: int
    default_sample_duration: int
    config: bytes  # avcC/hvcC payload (empty for others)
    protection: Protection | None
    hdr: bool = False  # PQ or HLG transfer in colr (nclx) or vpcC

    def info(self) -> TrackInfo:
        fps = 0.0
        if self.kind is TrackKind.VIDEO and self.default_sample_duration and self.timescale:
            fps = self.timescale / self.default_sample_duration
        codec = self.fourcc.decode("latin-1")
        return TrackInfo(kind=self.kind, codec=codec, width=self.width, height=self.height,
                         channels=self.channels, fps=fps, hdr=self.hdr, track_id=self.track_id)

    def mapper(self, scheme: Scheme) -> SubsampleMapper:
        """Subsample rules for this track; UnsupportedMediaError for other codecs."""
        if self.fourcc in AUDIO_CODECS:
            return SubsampleMapper(CodecFamily.AUDIO, scheme)
        family = VIDEO_CODECS.get(self.fourcc)
        if family is None:
            raise UnsupportedMediaError(
                f"track {self.track_id}: codec {self.fourcc.decode('latin-1')!r} cannot be "
                "encrypted (supported: avc1 avc3 hvc1 hev1 vp09 mp4a ac-3 ec-3 Opus)")
        try:
            if family is CodecFamily.H264:
                avc = parse_avcc(self.config)
                return SubsampleMapper(family, scheme, avc.nal_length_size,
                                       (*avc.sps, *avc.pps))
            if family is CodecFamily.HEVC:
                hv = parse_hvcc(self.config)
                return SubsampleMapper(family, scheme, hv.nal_length_size, hv.nals)
        except CodecError as exc:
            raise CodecError(f"track {self.track_id}: {exc}") from exc
        return SubsampleMapper(family, scheme, width=self.width, height=self.height)


@dataclass(slots=True)
class InitSegment:
    """Top-level boxes of an init segment; ``moov`` as an editable tree."""

    boxes: list[tuple[bytes, bytes | Node]]  # (type, raw box bytes | moov tree)
    moov: Node
    traks: dict[int, Node]
    tracks: dict[int, TrackSetup]

    def to_bytes(self) -> bytes:
        return b"".join(b.to_bytes() if isinstance(b, Node) else b for _, b in self.boxes)


def _fullbox_body(node: Node, minimum: int) -> bytes:
    if len(node.payload) < minimum:
        raise Mp4FormatError(f"truncated {node.type.decode('latin-1')} box", box_path=node.path)
    return node.payload


def _entry(trak: Node) -> tuple[Node, Node]:
    stsd = trak.need(b"mdia").need(b"minf").need(b"stbl").need(b"stsd")
    entries = stsd.children or []
    if not entries:
        raise Mp4FormatError("stsd has no sample entry", box_path=stsd.path)
    return stsd, entries[0]


def _read_protection(entry: Node) -> tuple[bytes, Protection | None]:
    sinf = entry.find(b"sinf")
    if sinf is None:
        return entry.type, None
    frma = _fullbox_body(sinf.need(b"frma"), 4)
    schm = _fullbox_body(sinf.need(b"schm"), 12)
    scheme_type = bytes(schm[4:8])
    try:
        scheme = Scheme(scheme_type.decode("latin-1"))
    except ValueError:
        raise UnsupportedMediaError(
            f"protection scheme {scheme_type!r} is not supported") from None
    tenc = _fullbox_body(sinf.need(b"schi").need(b"tenc"), 24)
    version = tenc[0]
    crypt, skip = (tenc[5] >> 4, tenc[5] & 15) if version else (0, 0)
    iv_size = tenc[7]
    kid = UUID(bytes=bytes(tenc[8:24]))
    const: bytes | None = None
    if tenc[6] and iv_size == 0:
        if len(tenc) < 25 or len(tenc) < 25 + tenc[24]:
            raise Mp4FormatError("tenc constant IV truncated", box_path=entry.path)
        const = bytes(tenc[25:25 + tenc[24]])
    return bytes(frma[:4]), Protection(scheme, kid, iv_size, const, crypt, skip)


_HDR_TRANSFERS = frozenset({16, 18})  # SMPTE ST 2084 (PQ), ARIB STD-B67 (HLG); ISO/IEC 23091-2


def _is_hdr(entry: Node) -> bool:
    """PQ/HLG transfer characteristics signalled in ``colr`` (nclx) or ``vpcC``."""
    colr = entry.find(b"colr")
    if colr is not None and colr.payload[:4] in (b"nclx", b"nclc") and len(colr.payload) >= 8:
        return struct.unpack_from(">H", colr.payload, 6)[0] in _HDR_TRANSFERS
    vpcc = entry.find(b"vpcC")
    if vpcc is not None and vpcc.payload[:1] == b"\x01" and len(vpcc.payload) >= 9:
        return vpcc.payload[8] in _HDR_TRANSFERS
    return False


def _trex(moov: Node) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    mvex = moov.find(b"mvex")
    for trex in mvex.find_all(b"trex") if mvex else ():
        p = _fullbox_body(trex, 24)
        tid, _sdi, dur, size = struct.unpack_from(">IIII", p, 4)
        out[tid] = (dur, size)
    return out


def parse_init(init: bytes | memoryview) -> InitSegment:
    """Parse an init segment (ftyp + moov ...). Mp4FormatError names the broken box."""
    boxes: list[tuple[bytes, bytes | Node]] = []
    moov: Node | None = None
    mv = memoryview(init)
    for box in iter_boxes(mv, path="init"):
        if box.type == b"moov":
            moov = parse_tree(mv, box, "init")
            boxes.append((box.type, moov))
        elif box.type in (b"moof", b"mdat"):
            break
        else:
            boxes.append((box.type, bytes(mv[box.start:box.end])))
    if moov is None:
        raise Mp4FormatError("no moov box in the init segment", box_path="init")
    trex = _trex(moov)
    traks: dict[int, Node] = {}
    tracks: dict[int, TrackSetup] = {}
    for trak in moov.find_all(b"trak"):
        tkhd = _fullbox_body(trak.need(b"tkhd"), 24)
        tid = struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0]
        mdia = trak.need(b"mdia")
        mdhd = _fullbox_body(mdia.need(b"mdhd"), 24)
        timescale = struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0]
        hdlr = _fullbox_body(mdia.need(b"hdlr"), 12)
        kind = _HANDLERS.get(bytes(hdlr[8:12]), TrackKind.OTHER)
        stsd, entry = _entry(trak)
        fourcc, prot = _read_protection(entry)
        width = height = channels = 0
        if kind is TrackKind.VIDEO and len(entry.prefix) >= 28:
            width, height = struct.unpack_from(">HH", entry.prefix, 24)
        elif kind is TrackKind.AUDIO and len(entry.prefix) >= 20:
            channels = struct.unpack_from(">H", entry.prefix, 16)[0]
        hdr = _is_hdr(entry)
        config = b""
        for name in (b"avcC", b"hvcC"):
            c = entry.find(name)
            if c is not None:
                config = c.payload
        dur, size = trex.get(tid, (0, 0))
        if tid in tracks:
            raise Mp4FormatError(f"two tracks with track_ID {tid}", box_path=trak.path)
        traks[tid] = trak
        tracks[tid] = TrackSetup(tid, kind, fourcc, entry.type, timescale, width, height,
                                 channels, len(stsd.children or ()), size, dur, config, prot,
                                 hdr)
    if not tracks:
        raise Mp4FormatError("moov has no track", box_path="init/moov")
    return InitSegment(boxes, moov, traks, tracks)


def probe_init(init: bytes) -> list[TrackInfo]:
    """What each track of an init segment is: kind, codec fourcc, size, channels, track_id."""
    return [t.info() for t in parse_init(init).tracks.values()]


def tenc_payload(p: Protection) -> bytes:
    """tenc body after version/flags (media-encryption.md §4 table)."""
    pattern = (p.crypt << 4) | p.skip if p.scheme is Scheme.CBCS else 0
    body = struct.pack(">BBBB", 0, pattern, 1, p.iv_size) + p.kid.bytes
    if p.iv_size == 0:
        if p.constant_iv is None:
            raise UnsupportedMediaError("a constant IV is needed when the per-sample IV size is 0")
        body += bytes([len(p.constant_iv)]) + p.constant_iv
    return body


def build_sinf(original: bytes, p: Protection) -> Node:
    """``sinf{frma, schm, schi{tenc}}`` for one sample entry."""
    version = 1 if p.scheme is Scheme.CBCS else 0
    frma = Node(b"frma", original)
    schm = Node(b"schm", struct.pack(">I4sI", 0, p.scheme.value.encode(), 0x00010000))
    tenc_box = full_box(b"tenc", version, 0, tenc_payload(p))
    tenc = Node(b"tenc", tenc_box[8:])
    return Node(b"sinf", children=[frma, schm, Node(b"schi", children=[tenc])])


def protect_init(init: InitSegment, protections: dict[int, Protection],
                 pssh: Sequence[bytes], *, clear_entry: bool = False) -> bytes:
    """The encrypted init: protected sample entries for ``protections``' tracks, pssh in moov.

    ``clear_entry`` keeps the clear entry as sample description 2 (for clear-lead fragments,
    which point at it with tfhd sample_description_index, as Shaka Packager does)."""
    for tid, prot in protections.items():
        trak = init.traks[tid]
        stsd, _ = _entry(trak)
        entries = stsd.children or []
        if len(entries) != 1:
            raise UnsupportedMediaError(
                f"track {tid}: {len(entries)} sample entries (only one is supported)")
        entry = entries[0]
        if entry.find(b"sinf") is not None:
            raise UnsupportedMediaError(f"track {tid} is already encrypted")
        kind = init.tracks[tid].kind
        original = entry.type
        new_entry = Node(b"encv" if kind is TrackKind.VIDEO else b"enca",
                         children=[*(entry.children or []), build_sinf(original, prot)],
                         prefix=entry.prefix, path=entry.path)
        stsd.children = [new_entry, entry] if clear_entry else [new_entry]
        stsd.prefix = stsd.prefix[:4] + struct.pack(">I", len(stsd.children))
    moov = init.moov
    moov.children = [c for c in moov.children or [] if c.type != b"pssh"]
    for box in pssh:
        for b in iter_boxes(box, path="pssh"):
            if b.type != b"pssh":
                raise UnsupportedMediaError(f"expected a pssh box, got {b.type!r}")
            moov.children.append(Node(b"pssh", bytes(box[b.payload_start:b.end])))
    return init.to_bytes()


def strip_init(init: InitSegment) -> bytes:
    """The clear init of a protected one (frma restored, sinf and pssh removed)."""
    for trak in init.traks.values():
        stsd, entry = _entry(trak)
        if entry.find(b"sinf") is None:
            continue
        fourcc, _ = _read_protection(entry)
        stsd.children = [Node(fourcc, children=[c for c in entry.children or []
                                                if c.type != b"sinf"], prefix=entry.prefix)]
        stsd.prefix = stsd.prefix[:4] + struct.pack(">I", 1)
    init.moov.children = [c for c in init.moov.children or [] if c.type != b"pssh"]
    return init.to_bytes()


def pssh_box(raw: bytes) -> bytes:
    """Validate one whole pssh box (returned unchanged)."""
    boxes = list(iter_boxes(raw, path="pssh"))
    if len(boxes) != 1 or boxes[0].type != b"pssh":
        raise UnsupportedMediaError("pssh argument must be exactly one pssh box")
    return box_bytes(b"pssh", raw[boxes[0].payload_start:])
