"""The fast engines (one reused context per segment) against the per-sample reference ciphers.

``sample_crypto.cenc_sample`` / ``cbcs_sample`` build a fresh context per sample or subsample
and are themselves checked against openssl in test_units.py; the engines must give the same
bytes on real media maps and on random sample sequences (the cbcs chain fix-up only shows on
the second and later ranges of one engine)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speke_packager.constants import Scheme
from speke_packager.media.mp4 import Mp4Encryptor
from speke_packager.media.mp4.boxes import iter_boxes
from speke_packager.media.mp4.engine import CbcsEngine, CencEngine, Patches
from speke_packager.media.mp4.fragment import parse_moof
from speke_packager.media.mp4.init import parse_init
from speke_packager.media.mp4.sample_crypto import cbcs_sample, cenc_sample, counter_block
from speke_packager.media.mp4.segment import SegmentRewriter, patch_mfra
from speke_packager.model import ContentKey
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, KID, WRONG

IV16 = bytes(range(16))

_subs = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2000)), max_size=6)
_samples = st.lists(st.one_of(st.none(), _subs), min_size=1, max_size=6)


def _apply(data: bytes, patches: Patches) -> bytearray:
    out = bytearray(data)
    for pos, chunk in patches:
        out[pos:pos + len(chunk)] = chunk
    return out


def _layout(samples: list[list[tuple[int, int]] | None], tails: list[int]
            ) -> list[tuple[int, int, list[tuple[int, int]] | None]]:
    """(start, size, subsamples) laid end to end; whole-sample entries get ``tails`` sizes."""
    out = []
    pos = 0
    for subs, tail in zip(samples, tails, strict=True):
        size = sum(c + p for c, p in subs) if subs is not None else tail
        out.append((pos, size, subs))
        pos += size
    return out


@settings(max_examples=60, deadline=None)
@given(samples=_samples, tails=st.lists(st.integers(0, 3000), min_size=6, max_size=6),
       iv16=st.booleans())
def test_cenc_engine_equals_reference(samples: list[list[tuple[int, int]] | None],
                                      tails: list[int], iv16: bool) -> None:
    layout = _layout(samples, tails[:len(samples)])
    data = os.urandom(sum(s for _, s, _ in layout))
    ref = bytearray(data)
    eng = CencEngine(KEY)
    out = bytearray(len(data) + 16)
    eng_out = CencEngine(KEY, out=memoryview(out))
    patches: Patches = []
    views: Patches = []
    for i, (start, size, subs) in enumerate(layout):
        iv = (IV16 if iv16 else IV16[:8])[:-1] + bytes([i])
        cenc_sample(ref, start, size, key=KEY, iv=iv, subsamples=subs)
        eng.sample(memoryview(data), start, size, counter_block(iv), subsamples=subs,
                   patches=patches)
        eng_out.sample(memoryview(data), start, size, counter_block(iv), subsamples=subs,
                       patches=views)
    assert _apply(data, patches) == ref
    assert _apply(data, views) == ref  # whole samples, written straight into ``out``
    assert all(memoryview(v).obj is out for _, v in views)


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(0, 700), min_size=1, max_size=40),
       gaps=st.booleans(), low=st.sampled_from([0, 5, (1 << 64) - 3, (1 << 62) - 1]),
       iv16=st.booleans())
def test_cenc_whole_samples_equal_reference(sizes: list[int], gaps: bool, low: int,
                                            iv16: bool) -> None:
    """The one-keystream batch (audio) against per-sample reference CTR, end to end or with
    gaps between samples (per-sample fallback), counters near a low-half carry too."""
    starts = []
    pos = 3
    for size in sizes:
        starts.append(pos)
        pos += size + (7 if gaps else 0)
    data = os.urandom(pos + 5)
    ref = bytearray(data)
    high0 = (1 << 64) - 2  # the high halves wrap inside the batch
    low = low if iv16 else 0
    for i, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        high = (high0 + i) & ((1 << 64) - 1)
        iv = high.to_bytes(8, "big") + (low.to_bytes(8, "big") if iv16 else b"")
        cenc_sample(ref, start, size, key=KEY, iv=iv, subsamples=None)
    patches: Patches = []
    CencEngine(KEY).whole_samples(memoryview(data), starts, sizes, high0, low, patches=patches)
    assert _apply(data, patches) == ref
    views: Patches = []
    out = bytearray(len(data) + 16)
    CencEngine(KEY, out=memoryview(out)).whole_samples(memoryview(data), starts, sizes, high0,
                                                       low, patches=views)
    assert _apply(data, views) == ref
    wrong: Patches = []
    CencEngine(WRONG).whole_samples(memoryview(data), starts, sizes, high0, low,
                                    patches=wrong)
    assert sum(sizes) == 0 or _apply(data, wrong) != ref


@settings(max_examples=60, deadline=None)
@given(samples=_samples, tails=st.lists(st.integers(0, 3000), min_size=6, max_size=6),
       pattern=st.sampled_from([(1, 9), (0, 0), (2, 8), (5, 5), (1, 0)]),
       iv16=st.booleans())
def test_cbcs_engine_equals_reference(samples: list[list[tuple[int, int]] | None],
                                      tails: list[int], pattern: tuple[int, int],
                                      iv16: bool) -> None:
    layout = _layout(samples, tails[:len(samples)])
    data = os.urandom(sum(s for _, s, _ in layout))
    ref = bytearray(data)
    iv = IV16 if iv16 else IV16[:8]
    crypt, skip = pattern
    eng = CbcsEngine(KEY, iv, crypt, skip)
    eng_in_place = CbcsEngine(KEY, iv, crypt, skip, in_place=True)
    own = bytearray(data)
    patches: Patches = []
    src = memoryview(data)
    for start, size, subs in layout:
        cbcs_sample(ref, start, size, key=KEY, iv=iv, subsamples=subs, crypt=crypt, skip=skip)
        eng.sample(src, start, size, subsamples=subs, patches=patches)
        eng_in_place.sample(memoryview(own), start, size, subsamples=subs, patches=patches)
    assert _apply(data, patches) == ref
    assert own == ref


def _segment_jobs(a: Asset, scheme: Scheme
                  ) -> list[tuple[bytes, list[tuple[int, int, list[tuple[int, int]] | None]],
                                  tuple[int, int]]]:
    """Per traf of every segment: (segment bytes, [(start, size, map)], pattern)."""
    init = parse_init(a.init)
    mappers = {tid: t.mapper(scheme) for tid, t in init.tracks.items()}
    sizes = {t.track_id: t.default_sample_size for t in init.tracks.values()}
    jobs = []
    for seg in a.segments:
        rw = SegmentRewriter(seg)
        sessions = {tid: m.session() for tid, m in mappers.items()}
        for box in rw.boxes:
            if box.type != b"moof":
                continue
            _, trafs = parse_moof(rw.buf, box, sizes)
            for traf in trafs:
                s = sessions[traf.track_id]
                video = s.m.family.value != "audio"
                pattern = (1, 9) if video and scheme is Scheme.CBCS else (0, 0)
                samples = [(box.start + o, n, s.map(rw.buf[box.start + o:box.start + o + n]))
                           for o, n in zip(traf.offsets, traf.sizes, strict=True)]
                jobs.append((seg, samples, pattern))
    return jobs


@pytest.mark.parametrize("name", ["h264-aac-fmp4", "hevc-fmp4", "vp9-opus-fmp4",
                                  "h264-slices-fmp4"])
@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS])
def test_engines_equal_reference_on_media(asset: Callable[[str], Asset], name: str,
                                          scheme: Scheme) -> None:
    jobs = _segment_jobs(asset(name), scheme)
    assert len(jobs) >= 3
    for seg, samples, (crypt, skip) in jobs:
        ref, wrong = bytearray(seg), bytearray(seg)
        src = memoryview(seg)
        patches: Patches = []
        if scheme is Scheme.CENC:
            eng_c = CencEngine(KEY)
            for i, (start, size, subs) in enumerate(samples):
                iv = i.to_bytes(8, "big")
                cenc_sample(ref, start, size, key=KEY, iv=iv, subsamples=subs)
                cenc_sample(wrong, start, size, key=WRONG, iv=iv, subsamples=subs)
                eng_c.sample(src, start, size, counter_block(iv), subsamples=subs,
                             patches=patches)
        else:
            eng_b = CbcsEngine(KEY, IV16, crypt, skip)
            for start, size, subs in samples:
                cbcs_sample(ref, start, size, key=KEY, iv=IV16, subsamples=subs, crypt=crypt,
                            skip=skip)
                cbcs_sample(wrong, start, size, key=WRONG, iv=IV16, subsamples=subs,
                            crypt=crypt, skip=skip)
                eng_b.sample(src, start, size, subsamples=subs, patches=patches)
        new = _apply(seg, patches)
        assert new != seg  # something was encrypted
        assert new == ref
        assert new != wrong  # negative control: another key gives other bytes


def _ue_reference(bits: str, pos: int) -> tuple[int, int] | None:
    """Exp-Golomb read from a '0'/'1' string: (value, new position), None when it fails."""
    one = bits.find("1", pos)
    if one < 0 or one - pos > 31 or 2 * (one - pos) + 1 > len(bits) - pos:
        return None
    end = one + (one - pos) + 1
    return int(bits[one:end], 2) - 1, end


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=40), zeros=st.integers(0, 300), skip=st.integers(0, 40))
def test_bitreader_ue_equals_reference(data: bytes, zeros: int, skip: int) -> None:
    from speke_packager.errors import CodecError
    from speke_packager.media.codecs.bits import BitReader

    raw = bytes(zeros // 8) + data  # long zero runs: codes too long or truncated
    bits = "".join(f"{b:08b}" for b in raw)
    r = BitReader(raw)
    pos = min(skip, len(bits))
    r.skip(pos)
    while True:
        want = _ue_reference(bits, pos)
        if want is None:
            with pytest.raises(CodecError):
                r.ue()
            return
        assert r.ue() == want[0]
        pos = want[1]
        assert r.pos == pos


class _Trickle(io.RawIOBase):
    """A readable stream that returns at most 1000 bytes per read (short reads)."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._src.read(min(len(b), 1000))
        b[:len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS])
def test_stream_equals_segments(asset: Callable[[str], Asset], scheme: Scheme) -> None:
    """encrypt_stream (in place in its read buffer, written as pieces) writes exactly the
    encrypted moov followed by encrypt_segment (patches joined) of each moof+mdat."""
    a = asset("h264-aac-fmp4")
    data = a.path.read_bytes()
    enc = Mp4Encryptor(a.init, scheme, {1: ContentKey(KID, KEY), 2: ContentKey(KID, KEY)},
                       iv_seed=b"stream")
    sink = io.BytesIO()
    enc.encrypt_stream(io.BufferedReader(_Trickle(data), 64), sink, first_segment_index=2)
    init = enc.encrypted_init()
    moov = next(b for b in iter_boxes(init) if b.type == b"moov")
    boxes = list(iter_boxes(data))
    expected: list[bytes] = []
    moved: dict[int, int] = {}  # old moof offset -> new (for the mfra's tfra entries)
    index = 2
    for b in boxes:
        if b.type == b"moov":
            expected.append(init[moov.start:moov.end])
        elif b.type == b"moof":
            nxt = boxes[boxes.index(b) + 1]
            moved[b.start] = sum(map(len, expected))
            expected.append(enc.encrypt_segment(data[b.start:nxt.end], segment_index=index))
            index += 1
        elif b.type == b"mfra":
            expected.append(patch_mfra(data[b.start:b.end], moved))
        elif b.type != b"mdat":
            assert b.type != b"sidx"  # (sidx patching is checked in test_features)
            expected.append(data[b.start:b.end])
    assert index - 2 >= 3
    out = sink.getvalue()
    assert out == b"".join(expected)
    assert out != data
