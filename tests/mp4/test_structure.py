"""Box-level checks of what we write (media-encryption.md §4): sample entries, tenc, senc,
saiz, saio, trun data_offset, pssh."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from speke_packager.constants import W3C_COMMON, Scheme
from speke_packager.drm.pssh import build_pssh
from speke_packager.media.mp4 import Mp4Encryptor, probe_init
from speke_packager.media.mp4.boxes import Node, iter_boxes, parse_tree
from speke_packager.media.mp4.init import parse_init
from speke_packager.model import ContentKey
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, KID

K1 = ContentKey(KID, KEY)
STBL = [b"moov", b"trak", b"mdia", b"minf", b"stbl"]


def _walk(node: Node, path: list[bytes]) -> Node:
    for t in path:
        node = node.need(t)
    return node


def _moov(data: bytes) -> Node:
    box = next(b for b in iter_boxes(data) if b.type == b"moov")
    return parse_tree(data, box)


@pytest.mark.parametrize(("name", "entry", "orig"), [
    ("h264-fmp4", b"encv", b"avc1"), ("hevc-fmp4", b"encv", b"hvc1"),
    ("aac-fmp4", b"enca", b"mp4a"), ("ac3-fmp4-dm", b"enca", b"ac-3"),
    ("eac3-fmp4-dm", b"enca", b"ec-3")])
@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
def test_init_sample_entry(name: str, entry: bytes, orig: bytes, scheme: Scheme,
                           asset: Callable[[str], Asset]) -> None:
    a = asset(name)
    pssh = build_pssh(W3C_COMMON, kids=[KID])
    enc = Mp4Encryptor(a.init, scheme, {1: K1}, pssh=[pssh], iv_seed=b"st",
                       constant_iv=bytes(range(16)))
    init = enc.encrypted_init()
    moov = _moov(init)
    stsd = _walk(moov, [*STBL[1:], b"stsd"])
    assert struct.unpack_from(">I", stsd.prefix, 4)[0] == 1
    (e,) = stsd.children or []
    assert e.type == entry
    clear_entry = _walk(_moov(a.init), [*STBL[1:], b"stsd"]).children[0]  # type: ignore[index]
    assert e.prefix == clear_entry.prefix
    assert [c.type for c in e.children or []] == [
        *[c.type for c in clear_entry.children or []], b"sinf"]
    sinf = e.need(b"sinf")
    assert [c.type for c in sinf.children or []] == [b"frma", b"schm", b"schi"]
    assert sinf.need(b"frma").payload == orig
    assert sinf.need(b"schm").payload == b"\x00\x00\x00\x00" + scheme.value.encode() + \
        b"\x00\x01\x00\x00"
    tenc = sinf.need(b"schi").need(b"tenc").to_bytes()
    if scheme is Scheme.CENC:
        assert tenc == bytes.fromhex("00000020 74656e63 00000000 0000 01 08") + KID.bytes
    else:
        pattern = b"\x19" if entry == b"encv" else b"\x00"
        assert tenc == (bytes.fromhex("00000031 74656e63 01000000 00") + pattern +
                        b"\x01\x00" + KID.bytes + b"\x10" + bytes(range(16)))
    assert moov.find_all(b"pssh")[0].to_bytes() == pssh
    # everything else in the moov is unchanged
    assert [c.type for c in moov.children or []] == [
        *[c.type for c in _moov(a.init).children or []], b"pssh"]


def _check_fragment(seg: bytes, scheme: Scheme, audio_tracks: set[int]) -> None:
    boxes = list(iter_boxes(seg))
    moof = next(b for b in boxes if b.type == b"moof")
    mdat = next(b for b in boxes if b.type == b"mdat")
    tree = parse_tree(seg, moof)
    for traf in tree.find_all(b"traf"):
        types = [c.type for c in traf.children or []]
        tfhd = traf.need(b"tfhd").payload
        audio = struct.unpack_from(">I", tfhd, 4)[0] in audio_tracks
        assert int.from_bytes(tfhd[1:4], "big") & 0x020000  # default-base-is-moof
        trun = traf.need(b"trun").payload
        (count,) = struct.unpack_from(">I", trun, 4)
        (offset,) = struct.unpack_from(">i", trun, 8)
        assert moof.start + offset >= mdat.payload_start
        senc = traf.need(b"senc")
        assert struct.unpack_from(">I", senc.payload, 4)[0] == count
        if scheme is Scheme.CBCS and audio:
            assert types[-1] == b"senc" and b"saiz" not in types and b"saio" not in types
            assert len(senc.payload) == 8 and senc.payload[1:4] == b"\x00\x00\x00"
            continue
        assert types[-3:] == [b"saiz", b"saio", b"senc"]
        # saio points at the first per-sample byte of senc, relative to the moof start
        saio = traf.need(b"saio").payload
        (aux,) = struct.unpack_from(">I", saio, 8)
        raw = seg[moof.start:moof.end]
        senc_bytes = senc.to_bytes()
        senc_at = raw.find(senc_bytes)
        assert senc_at > 0 and raw.count(senc_bytes) == 1
        assert aux == senc_at + 16
        saiz = traf.need(b"saiz").payload
        default, n = struct.unpack_from(">BI", saiz, 4)
        assert n == count
        sizes = [default] * n if default else list(saiz[9:9 + n])
        assert sum(sizes) == len(senc.payload) - 8
        if scheme is Scheme.CENC and audio:
            assert default == 8 and senc.payload[1:4] == b"\x00\x00\x00"
        else:
            assert senc.payload[1:4] == b"\x00\x00\x02"


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
@pytest.mark.parametrize(("name", "audio"), [("h264-fmp4", False), ("aac-fmp4", True)])
def test_fragment_boxes(name: str, audio: bool, scheme: Scheme,
                        asset: Callable[[str], Asset]) -> None:
    a = asset(name)
    enc = Mp4Encryptor(a.init, scheme, {1: K1}, iv_seed=b"st")
    for i, s in enumerate(a.segments):
        out = enc.encrypt_segment(s, segment_index=i)
        # CENC keeps lengths: only the moof grows
        mdat_in = next(b for b in iter_boxes(s) if b.type == b"mdat")
        mdat_out = next(b for b in iter_boxes(out) if b.type == b"mdat")
        assert mdat_in.size == mdat_out.size
        _check_fragment(out, scheme, {1} if audio else set())


def test_muxed_moof_offsets(asset: Callable[[str], Asset]) -> None:
    """A moof with video and audio trafs: every traf's data_offset and saio are shifted."""
    a = asset("h264-aac-fmp4")
    tracks = list(parse_init(a.init).tracks)
    enc = Mp4Encryptor(a.init, Scheme.CENC, {t: K1 for t in tracks}, iv_seed=b"mx")
    seg = a.segments[1]
    moof = next(b for b in iter_boxes(seg) if b.type == b"moof")
    assert len(parse_tree(seg, moof).find_all(b"traf")) == 2
    out = enc.encrypt_segment(seg, segment_index=1)
    _check_fragment(out, Scheme.CENC, {2})
    new_moof = next(b for b in iter_boxes(out) if b.type == b"moof")
    delta = new_moof.size - moof.size
    old_trafs = parse_tree(seg, moof).find_all(b"traf")
    new_trafs = parse_tree(out, new_moof).find_all(b"traf")
    for o, n in zip(old_trafs, new_trafs, strict=True):
        old_off = struct.unpack_from(">i", o.need(b"trun").payload, 8)[0]
        new_off = struct.unpack_from(">i", n.need(b"trun").payload, 8)[0]
        assert new_off == old_off + delta


@pytest.mark.parametrize(("name", "hdr"), [("h264-pq-fmp4", True), ("vp9-pq-fmp4", True),
                                           ("h264-fmp4", False), ("vp9-opus-fmp4", False)])
def test_probe_hdr(name: str, hdr: bool, media: Callable[[str], object]) -> None:
    from pathlib import Path

    from tests.mp4.helpers import split

    path = media(name)
    assert isinstance(path, Path)
    init, _ = split(path.read_bytes())
    video = [t for t in probe_init(init) if t.kind.value == "video"]
    assert len(video) == 1 and video[0].hdr is hdr
