"""Clear lead, key rotation, multi-track inits, stream mode with sidx, parallel determinism."""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from speke_packager.constants import W3C_COMMON, Scheme
from speke_packager.drm.pssh import build_pssh, parse_pssh
from speke_packager.errors import UsageError
from speke_packager.media.mp4 import Mp4Decryptor, Mp4Encryptor, probe_init
from speke_packager.media.mp4.boxes import iter_boxes, parse_tree
from speke_packager.media.mp4.init import parse_init
from speke_packager.model import ContentKey, TrackKind
from tests.mp4.conftest import Asset
from tests.mp4.helpers import (
    KEY,
    KEY2,
    KID,
    KID2,
    WRONG,
    child_types,
    frames,
    senc_samples,
    shaka,
    split,
)

K1 = ContentKey(KID, KEY)
K2 = ContentKey(KID2, KEY2)
SCHEMES = [Scheme.CENC, Scheme.CBCS]


def _enc(a: Asset, scheme: Scheme, **kw: object) -> Mp4Encryptor:
    keys = {t: K1 for t in parse_init(a.init).tracks}
    return Mp4Encryptor(a.init, scheme, keys, iv_seed=b"features", **kw)  # type: ignore[arg-type]


@pytest.mark.interop
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.value)
def test_clear_lead(scheme: Scheme, asset: Callable[[str], Asset], tmp_path: Path) -> None:
    a = asset("h264-aac-fmp4")
    enc = _enc(a, scheme, clear_lead=True)
    init = enc.encrypted_init()
    assert child_types(init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"]) == [
        b"encv", b"avc1"]
    segs = [enc.encrypt_segment(s, segment_index=i, clear=i == 0)
            for i, s in enumerate(a.segments)]
    assert segs[0] == a.segments[0][:0] + segs[0]  # bytes
    out = tmp_path / "cl.mp4"
    out.write_bytes(init + b"".join(segs))
    for stream in ("v:0", "a:0"):
        ref = frames(a.path, stream)
        assert frames(out, stream, key=KEY) == ref
    # the clear-lead fragment holds the clear samples; later ones do not
    clear0 = senc_samples(a.init + a.segments[0], 1, 0)
    lead = senc_samples(init + segs[0], 1, 0)
    assert [s.data for s in lead] == [s.data for s in clear0]
    later = senc_samples(init + segs[1], 1, 8 if scheme is Scheme.CENC else 0)
    orig1 = senc_samples(a.init + a.segments[1], 1, 0)
    assert all(x.data != y.data for x, y in zip(later, orig1, strict=True))
    # a wrong key still fails on the encrypted part
    bad = frames(out, "v:0", key=WRONG)
    assert bad != frames(a.path, "v:0")
    dec = Mp4Decryptor(init, {KID: KEY})
    assert dec.clear_init() == a.init
    assert [dec.decrypt_segment(s) for s in segs] == a.segments


def test_clear_needs_clear_entry(asset: Callable[[str], Asset]) -> None:
    a = asset("aac-fmp4")
    with pytest.raises(UsageError, match="clear_lead"):
        _enc(a, Scheme.CENC).encrypt_segment(a.segments[0], segment_index=0, clear=True)


@pytest.mark.interop
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.value)
def test_key_rotation(scheme: Scheme, asset: Callable[[str], Asset], tmp_path: Path) -> None:
    """Fragment 1 uses KID2 via sbgp/sgpd seig with its pssh in the moof.

    FFmpeg 8 and Shaka Packager 3.8 decrypt with the tenc KID only (observed), so the rotated
    fragment is checked by FFmpeg against an init whose default KID is KID2, and the whole
    stream by our decryptor."""
    a = asset("h264-fmp4")
    enc = _enc(a, scheme)
    moof_pssh = build_pssh(W3C_COMMON, kids=[KID2])
    segs = [enc.encrypt_segment(s, segment_index=i,
                                keys={1: K2} if i == 1 else None,
                                pssh=[moof_pssh] if i == 1 else ())
            for i, s in enumerate(a.segments)]
    rotated = segs[1]
    moof = next(b for b in iter_boxes(rotated) if b.type == b"moof")
    tree = parse_tree(rotated, moof)
    traf = tree.need(b"traf")
    kinds = [c.type for c in traf.children or []]
    assert kinds[-5:] == [b"sbgp", b"sgpd", b"saiz", b"saio", b"senc"]
    sgpd = traf.need(b"sgpd").payload
    assert sgpd[4:8] == b"seig"
    entry = sgpd[16:]
    assert entry[2] == 1 and entry[4:20] == KID2.bytes
    if scheme is Scheme.CBCS:
        assert entry[1] == 0x19 and entry[3] == 0 and entry[20] == 16
    else:
        assert entry[3] == 8
    sbgp = traf.need(b"sbgp").payload
    assert struct.unpack_from(">4sIII", sbgp, 4) == (b"seig", 1, 50, 0x10001)
    assert parse_pssh(tree.need(b"pssh").to_bytes()).kids == (KID2,)
    assert b"sgpd" not in [c.type for c in parse_tree(segs[0], next(
        b for b in iter_boxes(segs[0]) if b.type == b"moof")).need(b"traf").children or []]
    # independent check of the rotated fragment: FFmpeg with KID2 as the init's default
    alt = Mp4Encryptor(a.init, scheme, {1: K2}, iv_seed=b"features")  # same cbcs IV
    f = tmp_path / "rot1.mp4"
    f.write_bytes(alt.encrypted_init() + rotated)
    clear1 = tmp_path / "clear1.mp4"
    clear1.write_bytes(a.init + a.segments[1])
    ref1 = frames(clear1, "v:0")
    assert frames(f, "v:0", key=KEY2) == ref1
    assert frames(f, "v:0", key=KEY) != ref1
    # whole stream with both keys through our decryptor; one key is not enough
    dec = Mp4Decryptor(enc.encrypted_init(), {KID: KEY, KID2: KEY2})
    assert [dec.decrypt_segment(s) for s in segs] == a.segments
    with pytest.raises(UsageError):
        Mp4Decryptor(enc.encrypted_init(), {KID: KEY}).decrypt_segment(rotated)


@pytest.mark.interop
def test_multi_track_keys_and_clear_track(asset: Callable[[str], Asset], tmp_path: Path
                                          ) -> None:
    """Video and audio with their own keys; a track without a key stays clear."""
    a = asset("vp9-opus-fmp4")
    info = {t.track_id: t for t in probe_init(a.init)}
    assert info[1].kind is TrackKind.VIDEO and info[1].codec == "vp09"
    assert (info[1].width, info[1].height) == (320, 180)
    assert info[2].kind is TrackKind.AUDIO and info[2].codec == "Opus" and info[2].channels == 2
    enc = Mp4Encryptor(a.init, Scheme.CENC, {1: K1, 2: K2}, iv_seed=b"m")
    init = enc.encrypted_init()
    stsd = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"]
    assert child_types(init, stsd) == [b"encv"]
    out = tmp_path / "mt.mp4"
    out.write_bytes(init + b"".join(enc.encrypt_segment(s, segment_index=i)
                                    for i, s in enumerate(a.segments)))
    keys = {KID: KEY, KID2: KEY2}
    for st in ("v:0", "a:0"):
        assert frames(out, st, keys=keys) == frames(a.path, st)
    assert frames(out, "a:0", keys={KID: KEY, KID2: WRONG}) != frames(a.path, "a:0")
    # video only: audio passes through untouched
    enc_v = Mp4Encryptor(a.init, Scheme.CBCS, {1: K1}, iv_seed=b"m")
    segs = [enc_v.encrypt_segment(s, segment_index=i) for i, s in enumerate(a.segments)]
    whole = enc_v.encrypted_init() + b"".join(segs)
    assert [s.data for s in senc_samples(whole, 2, 0)] == [
        s.data for s in senc_samples(a.init + b"".join(a.segments), 2, 0)]
    tracks = parse_init(enc_v.encrypted_init()).tracks
    assert tracks[1].protection is not None and tracks[2].protection is None


@pytest.mark.interop
@pytest.mark.parametrize("seekable", [True, False])
def test_stream_with_sidx(seekable: bool, asset: Callable[[str], Asset], tmp_path: Path
                          ) -> None:
    """A SegmentBase file (ftyp moov sidx (moof mdat)*) from Shaka Packager, encrypted as a
    stream: sidx referenced sizes must match the grown fragments."""
    a = asset("h264-fmp4")
    src = tmp_path / "sb.mp4"
    shaka(f"in={a.path},stream=video,output={src}", "--segment_duration", "2",
          "--fragment_duration", "2")
    data = src.read_bytes()
    init, segs = split(data)
    assert len(segs) >= 3
    enc = Mp4Encryptor(init, Scheme.CENC, {1: K1}, iv_seed=b"s", pssh=[
        build_pssh(W3C_COMMON, kids=[KID])])

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def write(self, b: object) -> int:
            mv = memoryview(b)  # type: ignore[arg-type]
            self.buf += mv
            return len(mv)

    with src.open("rb") as f:
        if seekable:
            sink = io.BytesIO()
            enc.encrypt_stream(f, sink)
            result = sink.getvalue()
        else:
            pipe = Pipe()
            enc.encrypt_stream(f, pipe)  # type: ignore[arg-type]
            result = bytes(pipe.buf)
    boxes = list(iter_boxes(result))
    sidx = next(b for b in boxes if b.type == b"sidx")
    p = result[sidx.payload_start:sidx.end]
    version = p[0]
    first_offset = struct.unpack_from(">I" if version == 0 else ">Q", p,
                                      16 if version == 0 else 20)[0]
    pos = 20 if version == 0 else 28
    count = struct.unpack_from(">H", p, pos + 2)[0]
    sizes = [struct.unpack_from(">I", p, pos + 4 + 12 * i)[0] & 0x7FFFFFFF for i in range(count)]
    start = sidx.end + first_offset
    moofs = [b for b in boxes if b.type == b"moof"]
    assert [m.start for m in moofs][:1] == [start]
    for m, size in zip(moofs, sizes, strict=True):
        assert m.start == start
        start += size
    assert start == len(result)
    out = tmp_path / "enc.mp4"
    out.write_bytes(result)
    assert frames(out, "v:0", key=KEY) == frames(src, "v:0")
    assert frames(out, "v:0", key=WRONG) != frames(src, "v:0")


def _encrypt_one(args: tuple[Mp4Encryptor, bytes, int]) -> bytes:
    enc, seg, i = args
    return enc.encrypt_segment(seg, segment_index=i)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.value)
def test_parallel_deterministic_unique_ivs(scheme: Scheme, asset: Callable[[str], Asset]
                                           ) -> None:
    a = asset("h264-aac-fmp4")
    enc = _enc(a, scheme)
    serial = [enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(a.segments)]
    clone = pickle.loads(pickle.dumps(enc))
    order = list(reversed(list(enumerate(a.segments))))
    with ProcessPoolExecutor(max_workers=2) as pool:
        par = list(pool.map(_encrypt_one, [(clone, s, i) for i, s in order]))
    assert list(reversed(par)) == serial
    assert clone.encrypted_init() == enc.encrypted_init()
    # another seed gives other bytes (cenc IVs / cbcs constant IV derive from it)
    other = Mp4Encryptor(a.init, scheme, {1: K1, 2: K1}, iv_seed=b"other")
    assert other.encrypt_segment(a.segments[0], segment_index=0) != serial[0]
    # no random seed -> differs per object
    r1 = Mp4Encryptor(a.init, scheme, {1: K1, 2: K1})
    r2 = Mp4Encryptor(a.init, scheme, {1: K1, 2: K1})
    assert r1.encrypt_segment(a.segments[0], segment_index=0) != r2.encrypt_segment(
        a.segments[0], segment_index=0)
    if scheme is Scheme.CENC:
        whole = enc.encrypted_init() + b"".join(serial)
        ivs = [s.iv for t in (1, 2) for s in senc_samples(whole, t, 8)]
        # audio and video share K1: no IV may repeat across tracks or segments
        assert len(ivs) == len(set(ivs)) > 400
        # the same segment under another index gets other IVs
        again = enc.encrypt_segment(a.segments[0], segment_index=7)
        ivs7 = {s.iv for s in senc_samples(enc.encrypted_init() + again, 1, 8)}
        assert not ivs7 & set(ivs)


def test_pickled_repr_hides_key(asset: Callable[[str], Asset]) -> None:
    a = asset("aac-fmp4")
    enc = _enc(a, Scheme.CBCS)
    assert KEY.hex() not in repr(enc)
    assert str(KID) in repr(enc)


def _sidx_total(seg: bytes) -> int:
    sidx = next(b for b in iter_boxes(seg) if b.type == b"sidx")
    p = seg[sidx.payload_start:sidx.end]
    pos = 20 if p[0] == 0 else 28
    count = struct.unpack_from(">H", p, pos + 2)[0]
    return sum(struct.unpack_from(">I", p, pos + 4 + 12 * i)[0] & 0x7FFFFFFF
               for i in range(count))


def _emsg() -> bytes:
    body = b"urn:speke-packager:test\x00" + b"1\x00" + struct.pack(">IIII", 1000, 0, 500, 7)
    return full_box_bytes(b"emsg", body + b"event payload")


def full_box_bytes(fourcc: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4sI", 12 + len(payload), fourcc, 0) + payload


@pytest.mark.interop
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.value)
def test_dash_segments_styp_sidx_emsg(scheme: Scheme, asset: Callable[[str], Asset],
                                      tmp_path: Path) -> None:
    """Segments from FFmpeg's DASH muxer (styp sidx moof mdat), one with an emsg inserted:
    unknown boxes pass byte for byte, the segment sidx covers the grown moof."""
    from fixtures.media import find_tool

    a = asset("h264-aac-fmp4")
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg
    import subprocess

    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(a.path), "-map",
                    "0:v", "-c", "copy", "-f", "dash", "-seg_duration", "2",
                    "-init_seg_name", "init.mp4", "-media_seg_name", "seg-$Number$.m4s",
                    str(tmp_path / "out.mpd")], check=True)
    init = (tmp_path / "init.mp4").read_bytes()
    segs = [(tmp_path / f"seg-{i}.m4s").read_bytes() for i in range(1, 4)]
    emsg = _emsg()
    first = segs[1]
    moof_at = first.find(b"moof") - 4
    segs[1] = first[:moof_at] + emsg + first[moof_at:]
    enc = Mp4Encryptor(init, scheme, {1: K1}, iv_seed=b"dash")
    out = [enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(segs)]
    assert emsg in out[1]
    for seg, orig in zip(out, segs, strict=True):
        boxes = list(iter_boxes(seg))
        assert boxes[0].type == b"styp" and seg[:boxes[0].end] == orig[:boxes[0].end]
        assert _sidx_total(seg) - _sidx_total(orig) == len(seg) - len(orig) > 0
        # the referenced range starts at the first moof and ends at the segment end
        sidx = next(b for b in boxes if b.type == b"sidx")
        assert sidx.end + _sidx_total(seg) + (len(emsg) if emsg in seg else 0) == len(seg)
    clear = tmp_path / "clear.mp4"
    clear.write_bytes(init + b"".join(segs))
    f = tmp_path / "enc.mp4"
    f.write_bytes(enc.encrypted_init() + b"".join(out))
    ref = frames(clear, "v:0")
    assert len(ref) >= 100
    assert frames(f, "v:0", key=KEY) == ref
    assert frames(f, "v:0", key=WRONG) != ref
    dec = Mp4Decryptor(enc.encrypted_init(), {KID: KEY})
    assert [dec.decrypt_segment(s) for s in out] == segs


@pytest.mark.interop
def test_stream_patches_mfra(asset: Callable[[str], Asset], tmp_path: Path) -> None:
    """FFmpeg's fragmented files end in mfra/tfra: its moof offsets follow the grown moofs."""
    a = asset("h264-aac-fmp4")
    enc = Mp4Encryptor(a.init, Scheme.CBCS, {1: K1, 2: K2}, iv_seed=b"mfra")
    sink = io.BytesIO()
    with a.path.open("rb") as f:
        enc.encrypt_stream(f, sink, first_segment_index=3)
    out = sink.getvalue()
    boxes = list(iter_boxes(out))
    moofs = [b.start for b in boxes if b.type == b"moof"]
    mfra = next(b for b in boxes if b.type == b"mfra")
    tree = parse_tree(out, mfra)
    tfras = tree.find_all(b"tfra")
    assert tfras
    for tfra in tfras:
        p = tfra.payload
        n = struct.unpack_from(">I", p, 12)[0]
        lens = struct.unpack_from(">I", p, 8)[0]
        w = 8 if p[0] == 1 else 4
        entry = 2 * w + ((lens >> 4) & 3) + ((lens >> 2) & 3) + (lens & 3) + 3
        offsets = [int.from_bytes(p[16 + i * entry + w:16 + i * entry + 2 * w], "big")
                   for i in range(n)]
        assert offsets and set(offsets) <= set(moofs)
    # same bytes as segment-by-segment encryption with the same indexes
    segs = [enc.encrypt_segment(s, segment_index=3 + i) for i, s in enumerate(a.segments)]
    assert b"".join(segs) in out
    f2 = tmp_path / "s.mp4"
    f2.write_bytes(out)
    for st in ("v:0", "a:0"):
        assert frames(f2, st, keys={KID: KEY, KID2: KEY2}) == frames(a.path, st)


def test_threads_share_one_encryptor(asset: Callable[[str], Asset]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    a = asset("hevc-fmp4")
    enc = Mp4Encryptor(a.init, Scheme.CBCS, {1: K1}, iv_seed=b"t")
    serial = [enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(a.segments)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        par = list(pool.map(lambda t: enc.encrypt_segment(t[1], segment_index=t[0]),
                            list(enumerate(a.segments)) * 3))
    assert par == serial * 3


def test_renditions_sharing_key_and_seed_get_other_ivs(asset: Callable[[str], Asset]) -> None:
    a, b = asset("h264-fmp4"), asset("h264-avc3-fmp4")
    ivs = []
    for x in (a, b):
        enc = Mp4Encryptor(x.init, Scheme.CENC, {1: K1}, iv_seed=b"same")
        whole = enc.encrypted_init() + b"".join(
            enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(x.segments))
        ivs.append({s.iv for s in senc_samples(whole, 1, 8)})
    assert ivs[0] and not ivs[0] & ivs[1]
    enc_b = Mp4Encryptor(a.init, Scheme.CBCS, {1: K1}, iv_seed=b"same")
    enc_c = Mp4Encryptor(b.init, Scheme.CBCS, {1: K1}, iv_seed=b"same")
    assert enc_b.constant_iv(K1) == enc_c.constant_iv(K1)
    assert len(enc_b.constant_iv(K1) or b"") == 16
    assert Mp4Encryptor(a.init, Scheme.CBCS, {1: ContentKey(KID, KEY, iv=b"\x01" * 16)}
                        ).constant_iv(ContentKey(KID, KEY, iv=b"\x01" * 16)) == b"\x01" * 16


@pytest.mark.interop
def test_traf_base_after_previous_traf(asset: Callable[[str], Asset], tmp_path: Path) -> None:
    """A second traf without default-base-is-moof counts its data offset from the end of the
    previous traf's data; the output is normalised to default-base-is-moof."""
    from speke_packager.media.mp4.fragment import parse_moof

    a = asset("h264-aac-fmp4")
    defaults = {t.track_id: t.default_sample_size for t in parse_init(a.init).tracks.values()}
    rewritten = []
    for seg in a.segments:
        moof = next(b for b in iter_boxes(seg) if b.type == b"moof")
        _, trafs = parse_moof(seg, moof, defaults)
        if len(trafs) != 2:
            rewritten.append(seg)
            continue
        end_first = max(o + s for o, s in zip(trafs[0].offsets, trafs[0].sizes, strict=True))
        b = bytearray(seg)
        second = seg.find(b"traf", seg.find(b"traf") + 4) - 4
        tfhd = seg.find(b"tfhd", second) + 4
        flags = int.from_bytes(b[tfhd + 1:tfhd + 4], "big")
        b[tfhd + 1:tfhd + 4] = (flags & ~0x020000).to_bytes(3, "big")
        trun = seg.find(b"trun", second) + 4
        (off,) = struct.unpack_from(">i", b, trun + 8)
        struct.pack_into(">i", b, trun + 8, off - end_first)
        rewritten.append(bytes(b))
    enc = Mp4Encryptor(a.init, Scheme.CENC, {1: K1, 2: K2}, iv_seed=b"base")
    assert sum(x != y for x, y in zip(rewritten, a.segments, strict=True)) >= 2
    out = [enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(rewritten)]
    ref = [enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(a.segments)]
    assert out == ref  # same samples found, same normalised output
    f = tmp_path / "e.mp4"
    f.write_bytes(enc.encrypted_init() + b"".join(out))
    assert frames(f, "a:0", keys={KID: KEY, KID2: KEY2}) == frames(a.path, "a:0")
