"""A small read-only ISO BMFF walker for verification: tenc/schm/frma, pssh, seig, senc, and per
fragment which sample entry each traf uses (tfhd/trex) to tell clear-lead fragments apart.

Independent of :mod:`speke_packager.media.mp4` on purpose: `verify` checks our own writer's
output, so it must not share its parser.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID

from ..drm.pssh import Pssh, parse_pssh
from ..errors import Mp4FormatError

_CONTAINERS = frozenset(
    {"moov", "trak", "mdia", "minf", "stbl", "sinf", "schi", "moof", "traf", "mvex", "edts",
     "dinf"}
)
_VISUAL_ENTRIES = frozenset({"encv", "avc1", "avc3", "hvc1", "hev1", "vp09", "av01"})
_AUDIO_ENTRIES = frozenset({"enca", "mp4a", "ac-3", "ec-3", "Opus", "fLaC"})


@dataclass(frozen=True, slots=True)
class Box:
    """One box: its type, path and byte range (header included) in the buffer."""

    type: str
    path: str
    start: int
    body: int  # offset of the payload (after size/type/largesize/uuid)
    end: int


def iter_boxes(
    buf: bytes, start: int = 0, end: int | None = None, parent: str = ""
) -> Iterator[Box]:
    """Boxes directly inside ``buf[start:end]``; raises :class:`Mp4FormatError` on bad sizes."""
    stop = len(buf) if end is None else end
    pos = start
    while pos < stop:
        if pos + 8 > stop:
            raise Mp4FormatError("truncated box header", box_path=parent or "/")
        size, raw = struct.unpack_from(">I4s", buf, pos)
        typ = raw.decode("latin-1")
        body = pos + 8
        if size == 1:
            if pos + 16 > stop:
                raise Mp4FormatError("truncated largesize", box_path=f"{parent}/{typ}")
            (size,) = struct.unpack_from(">Q", buf, pos + 8)
            body = pos + 16
        elif size == 0:
            size = stop - pos
        if typ == "uuid":
            body += 16
        if size < body - pos or pos + size > stop:
            raise Mp4FormatError(f"box size {size} out of range", box_path=f"{parent}/{typ}")
        yield Box(typ, f"{parent}/{typ}", pos, body, pos + size)
        pos += size


@dataclass(frozen=True, slots=True)
class Tenc:
    """The Track Encryption box of one sample entry."""

    scheme: str  # schm scheme_type ('cenc', 'cbcs', ...)
    original_format: str  # frma
    is_protected: bool
    per_sample_iv_size: int
    kid: UUID
    crypt_byte_block: int = 0
    skip_byte_block: int = 0
    constant_iv: bytes = b""


@dataclass(frozen=True, slots=True)
class TrafFacts:
    """One track fragment: its sample entry and whether it carries sample encryption data."""

    track_id: int
    sample_description_index: int  # from tfhd; 0 when absent (the trex default applies)
    has_senc: bool  # senc, or the PIFF sample encryption uuid box
    samples: int  # trun sample counts summed
    # sbgp 'seig': group_description_index of each sample run, (index, count) in order
    seig_runs: tuple[tuple[int, int], ...] = ()
    local_seig: tuple[bool, ...] = ()  # this traf's sgpd 'seig' entries: isProtected


@dataclass(frozen=True, slots=True)
class FragmentFacts:
    """One moof, in file order, with the name of the file it came from (for messages)."""

    trafs: tuple[TrafFacts, ...]
    source: str = ""


@dataclass(slots=True)
class Mp4Facts:
    """What verification needs from an init segment plus its media segments."""

    tracks: dict[int, list[Tenc]] = field(default_factory=dict)  # track_ID -> sample entries
    handlers: dict[int, str] = field(default_factory=dict)  # track_ID -> hdlr ('vide', 'soun')
    pssh: list[Pssh] = field(default_factory=list)  # moov and moof pssh boxes, in file order
    seig_kids: list[UUID] = field(default_factory=list)  # sgpd/seig KIDs in moofs
    # track_ID -> one flag per stsd entry, in order: True when protected (sinf with tenc)
    entries: dict[int, list[bool]] = field(default_factory=dict)
    trex_sdi: dict[int, int] = field(default_factory=dict)  # track_ID -> trex default index
    init_seig: dict[int, list[bool]] = field(default_factory=dict)  # stbl sgpd seig isProtected
    fragment_list: list[FragmentFacts] = field(default_factory=list)

    @property
    def fragments(self) -> int:
        return len(self.fragment_list)

    @property
    def senc_fragments(self) -> int:
        return sum(any(t.has_senc for t in f.trafs) for f in self.fragment_list)

    @property
    def kids(self) -> set[UUID]:
        return {t.kid for entries in self.tracks.values() for t in entries if t.is_protected}


def _full(buf: bytes, box: Box) -> tuple[int, int]:
    if box.body + 4 > box.end:
        raise Mp4FormatError("truncated full box", box_path=box.path)
    v = buf[box.body]
    flags = int.from_bytes(buf[box.body + 1 : box.body + 4], "big")
    return v, flags


def _parse_tenc(buf: bytes, box: Box, scheme: str, fmt: str) -> Tenc:
    version, _ = _full(buf, box)
    p = box.body + 4
    if p + 20 > box.end:
        raise Mp4FormatError("tenc too short", box_path=box.path)
    crypt = skip = 0
    if version >= 1:
        crypt, skip = buf[p + 1] >> 4, buf[p + 1] & 0x0F
    prot = buf[p + 2]
    ivs = buf[p + 3]
    kid = UUID(bytes=bytes(buf[p + 4 : p + 20]))
    const_iv = b""
    if prot and ivs == 0:
        if p + 21 > box.end:
            raise Mp4FormatError("tenc lacks its constant IV", box_path=box.path)
        n = buf[p + 20]
        if n not in (8, 16) or p + 21 + n > box.end:
            raise Mp4FormatError(f"tenc constant IV size {n} invalid", box_path=box.path)
        const_iv = bytes(buf[p + 21 : p + 21 + n])
    if ivs not in (0, 8, 16):
        raise Mp4FormatError(f"tenc per-sample IV size {ivs} invalid", box_path=box.path)
    return Tenc(scheme, fmt, bool(prot), ivs, kid, crypt, skip, const_iv)


def _parse_sinf(buf: bytes, sinf: Box) -> Tenc | None:
    scheme = fmt = ""
    tenc_box: Box | None = None
    for b in iter_boxes(buf, sinf.body, sinf.end, sinf.path):
        if b.type == "frma" and b.body + 4 <= b.end:
            fmt = bytes(buf[b.body : b.body + 4]).decode("latin-1")
        elif b.type == "schm" and b.body + 8 <= b.end:
            scheme = bytes(buf[b.body + 4 : b.body + 8]).decode("latin-1")
        elif b.type == "schi":
            for c in iter_boxes(buf, b.body, b.end, b.path):
                if c.type == "tenc":
                    tenc_box = c
    if tenc_box is None:
        return None
    return _parse_tenc(buf, tenc_box, scheme, fmt)


def _sample_entries(buf: bytes, stsd: Box) -> Iterator[Box]:
    yield from iter_boxes(buf, stsd.body + 8, stsd.end, stsd.path)


def _entry_children_start(buf: bytes, entry: Box) -> int | None:
    if entry.type in _VISUAL_ENTRIES:
        return entry.body + 78
    if entry.type in _AUDIO_ENTRIES:
        (qt_version,) = struct.unpack_from(">H", buf, entry.body + 8)
        return entry.body + 28 + {0: 0, 1: 16, 2: 36}.get(qt_version, 0)
    return None


def _walk_trak(buf: bytes, trak: Box, facts: Mp4Facts) -> None:
    track_id = 0
    handler = ""
    entries: list[Tenc] = []
    protected: list[bool] = []
    seig: list[bool] = []
    for b in iter_boxes(buf, trak.body, trak.end, trak.path):
        if b.type == "tkhd":
            v, _ = _full(buf, b)
            off = b.body + (4 + 16 if v == 1 else 4 + 8)
            (track_id,) = struct.unpack_from(">I", buf, off)
        elif b.type == "mdia":
            for m in iter_boxes(buf, b.body, b.end, b.path):
                if m.type == "hdlr":
                    handler = bytes(buf[m.body + 8 : m.body + 12]).decode("latin-1")
                elif m.type == "minf":
                    for g in _find(buf, m, ("stbl", "sgpd")):
                        seig.extend(_walk_sgpd(buf, g, facts))
                    for s in _find(buf, m, ("stbl", "stsd")):
                        for e in _sample_entries(buf, s):
                            protected.append(False)
                            start = _entry_children_start(buf, e)
                            if start is None or start > e.end:
                                continue
                            for c in iter_boxes(buf, start, e.end, e.path):
                                if c.type == "sinf":
                                    t = _parse_sinf(buf, c)
                                    if t is not None:
                                        entries.append(t)
                                        protected[-1] = t.is_protected
    facts.tracks[track_id] = entries
    facts.handlers[track_id] = handler
    facts.entries[track_id] = protected
    facts.init_seig[track_id] = seig


def _find(buf: bytes, box: Box, names: tuple[str, ...]) -> Iterator[Box]:
    if not names:
        yield box
        return
    for b in iter_boxes(buf, box.body, box.end, box.path):
        if b.type == names[0]:
            yield from _find(buf, b, names[1:])


def _walk_sgpd(buf: bytes, box: Box, facts: Mp4Facts) -> list[bool]:
    """Record the KIDs of an sgpd 'seig'; returns each entry's isProtected (empty if no seig)."""
    v, _ = _full(buf, box)
    p = box.body + 4
    if bytes(buf[p : p + 4]) != b"seig":
        return []
    prot: list[bool] = []
    p += 4
    default_length = 0
    if v == 1:
        (default_length,) = struct.unpack_from(">I", buf, p)
        p += 4
    elif v >= 2:
        p += 4
    (count,) = struct.unpack_from(">I", buf, p)
    p += 4
    for _ in range(count):
        length = default_length
        if v == 1 and default_length == 0:
            (length,) = struct.unpack_from(">I", buf, p)
            p += 4
        if p + 20 > box.end:
            raise Mp4FormatError("seig entry truncated", box_path=box.path)
        facts.seig_kids.append(UUID(bytes=bytes(buf[p + 4 : p + 20])))
        prot.append(bool(buf[p + 2]))
        if not length:
            length = 20 + ((1 + buf[p + 20]) if buf[p + 2] and buf[p + 3] == 0 else 0)
        p += length
    return prot


def _walk_sbgp(buf: bytes, box: Box) -> tuple[tuple[int, int], ...] | None:
    """The (group_description_index, sample_count) runs of an sbgp 'seig', else None."""
    v, _ = _full(buf, box)
    p = box.body + 4
    if bytes(buf[p : p + 4]) != b"seig":
        return None
    p += 8 if v == 1 else 4  # grouping_type_parameter
    if p + 4 > box.end:
        raise Mp4FormatError("sbgp truncated", box_path=box.path)
    (count,) = struct.unpack_from(">I", buf, p)
    if p + 4 + 8 * count > box.end:
        raise Mp4FormatError("sbgp entries truncated", box_path=box.path)
    runs = struct.unpack_from(f">{2 * count}I", buf, p + 4)
    return tuple((runs[2 * i + 1], runs[2 * i]) for i in range(count))


def _walk_traf(buf: bytes, traf: Box, facts: Mp4Facts) -> TrafFacts:
    track_id = sdi = samples = 0
    has_senc = False
    runs: tuple[tuple[int, int], ...] = ()
    local: list[bool] = []
    for t in iter_boxes(buf, traf.body, traf.end, traf.path):
        if t.type == "tfhd":
            _, flags = _full(buf, t)
            if t.body + 8 > t.end:
                raise Mp4FormatError("tfhd too short", box_path=t.path)
            (track_id,) = struct.unpack_from(">I", buf, t.body + 4)
            if flags & 0x000002:
                off = t.body + 8 + (8 if flags & 0x000001 else 0)
                if off + 4 > t.end:
                    raise Mp4FormatError("tfhd lacks its sample_description_index",
                                         box_path=t.path)
                (sdi,) = struct.unpack_from(">I", buf, off)
        elif t.type == "trun":
            if t.body + 8 > t.end:
                raise Mp4FormatError("trun too short", box_path=t.path)
            samples += struct.unpack_from(">I", buf, t.body + 4)[0]
        elif t.type == "sgpd":
            local.extend(_walk_sgpd(buf, t, facts))
        elif t.type == "sbgp":
            found = _walk_sbgp(buf, t)
            if found is not None:
                runs = found
        elif t.type == "senc" or (
            t.type == "uuid" and bytes(buf[t.start + 8 : t.start + 24]).hex()
            == "a2394f525a9b4f14a2446c427c648df4"
        ):
            has_senc = True
    return TrafFacts(track_id, sdi, has_senc, samples, runs, tuple(local))


def read_mp4_facts(buf: bytes, source: str = "") -> Mp4Facts:
    """Walk the top level of init + segments and collect the encryption signaling.
    ``source`` names the file in the fragments' messages."""
    facts = Mp4Facts()
    for top in iter_boxes(buf):
        if top.type == "moov":
            for b in iter_boxes(buf, top.body, top.end, top.path):
                if b.type == "trak":
                    _walk_trak(buf, b, facts)
                elif b.type == "pssh":
                    facts.pssh.append(_pssh(buf, b))
                elif b.type == "mvex":
                    for x in iter_boxes(buf, b.body, b.end, b.path):
                        if x.type == "trex" and x.body + 12 <= x.end:
                            tid, default_sdi = struct.unpack_from(">II", buf, x.body + 4)
                            facts.trex_sdi[tid] = default_sdi
        elif top.type == "moof":
            trafs: list[TrafFacts] = []
            for b in iter_boxes(buf, top.body, top.end, top.path):
                if b.type == "pssh":
                    facts.pssh.append(_pssh(buf, b))
                elif b.type == "traf":
                    trafs.append(_walk_traf(buf, b, facts))
            facts.fragment_list.append(FragmentFacts(tuple(trafs), source))
    return facts


def _pssh(buf: bytes, box: Box) -> Pssh:
    from ..drm.pssh import PsshError

    try:
        return parse_pssh(bytes(buf[box.start : box.end]))
    except PsshError as exc:
        raise Mp4FormatError(f"pssh does not parse: {exc}", box_path=box.path) from exc
