"""The batched cbcs paths (``CbcsEngine.whole_samples`` / ``ranges``: lane-parallel CBC and the
serial one-gather path) against the per-sample reference cipher ``sample_crypto.cbcs_sample``.

Each case runs three times: with the engine's own choice, with the lane-parallel path forced and
with the serial path forced, in patch mode and in place."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speke_packager.constants import Scheme
from speke_packager.media.mp4 import Mp4Decryptor, Mp4Encryptor, probe_init
from speke_packager.media.mp4 import engine as engine_mod
from speke_packager.media.mp4.boxes import iter_boxes
from speke_packager.media.mp4.engine import CbcsEngine, Patches
from speke_packager.media.mp4.fragment import parse_moof
from speke_packager.media.mp4.init import parse_init
from speke_packager.media.mp4.sample_crypto import cbcs_sample
from speke_packager.model import ContentKey
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, KID, WRONG

IV16 = bytes(range(16))
PATTERNS = [(0, 0), (1, 0), (1, 9), (2, 8), (5, 5)]


def _apply(data: bytes, patches: Patches) -> bytearray:
    out = bytearray(data)
    for pos, chunk in patches:
        out[pos:pos + len(chunk)] = chunk
    return out


def _check_patches(patches: Patches) -> None:
    """Patches never overlap (SegmentRewriter refuses that)."""
    last = -1
    for pos, chunk in sorted(patches, key=lambda p: p[0]):
        assert pos >= last
        last = pos + len(chunk)


@pytest.fixture(params=["auto", "lanes", "serial"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "lanes":
        monkeypatch.setattr(engine_mod, "_LANES_MIN", 1)
        monkeypatch.setattr(engine_mod, "_COLUMN_COST", -10**12)
        monkeypatch.setattr(engine_mod, "_LANES_FIXED", 0)
        monkeypatch.setattr(engine_mod, "_LANE_TABLE", 10**12)
    elif request.param == "serial":
        monkeypatch.setattr(engine_mod, "_LANES_MIN", 10**9)
    yield str(request.param)


def _layout(sizes: list[int], gap: int) -> tuple[list[int], int]:
    starts = []
    pos = 5
    for size in sizes:
        starts.append(pos)
        pos += size + gap
    return starts, pos + 3


_sizes = st.lists(st.one_of(st.integers(0, 40), st.sampled_from([15, 16, 17, 32, 160, 161]),
                            st.integers(0, 900)), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=_sizes, gap=st.sampled_from([0, 0, 7]), pattern=st.sampled_from(PATTERNS),
       iv16=st.booleans(), warm=st.booleans())
def test_whole_samples_equal_reference(path: str, sizes: list[int], gap: int,
                                       pattern: tuple[int, int], iv16: bool, warm: bool) -> None:
    """Many independent CBC messages from the constant IV (audio), end to end or with gaps;
    ``warm``: the engine already chained through a sample (its CBC context is mid-chain)."""
    starts, total = _layout(sizes, gap)
    data = os.urandom(total)
    iv = IV16 if iv16 else IV16[:8]
    crypt, skip = pattern
    ref = bytearray(data)
    if warm:
        cbcs_sample(ref, 0, 5, key=KEY, iv=iv, subsamples=None, crypt=crypt, skip=skip)
    for start, size in zip(starts, sizes, strict=True):
        cbcs_sample(ref, start, size, key=KEY, iv=iv, subsamples=None, crypt=crypt, skip=skip)
    for in_place in (False, True):
        eng = CbcsEngine(KEY, iv, crypt, skip, in_place=in_place)
        own = bytearray(data)
        src = memoryview(own) if in_place else memoryview(data)
        patches: Patches = []
        if warm:
            eng.sample(src, 0, 5, subsamples=None, patches=patches)
        eng.whole_samples(src, starts, sizes, patches=patches)
        if in_place:
            assert not patches
            assert own == ref
        else:
            _check_patches(patches)
            assert _apply(data, patches) == ref
            if gap == 0 and any(s >= 16 * max(crypt, 1) for s in sizes):
                assert len(patches) == 1  # samples end to end: one patch for all


def test_whole_samples_one_sample_and_tiny(path: str) -> None:
    for sizes in ([0], [15], [16], [17], [16 * 40 + 3], [3, 0, 15], [16] * 50):
        starts, total = _layout(sizes, 0)
        data = os.urandom(total)
        ref, wrong = bytearray(data), bytearray(data)
        for start, size in zip(starts, sizes, strict=True):
            cbcs_sample(ref, start, size, key=KEY, iv=IV16, subsamples=None, crypt=0, skip=0)
            cbcs_sample(wrong, start, size, key=WRONG, iv=IV16, subsamples=None, crypt=0,
                        skip=0)
        patches: Patches = []
        CbcsEngine(KEY, IV16, 0, 0).whole_samples(memoryview(data), starts, sizes,
                                                  patches=patches)
        assert _apply(data, patches) == ref
        own = bytearray(data)
        CbcsEngine(KEY, IV16, 0, 0, in_place=True).whole_samples(memoryview(own), starts, sizes,
                                                                 patches=patches)
        assert own == ref
        assert own == data or own != wrong


_subs = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2000)), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=st.lists(_subs, min_size=1, max_size=12), pattern=st.sampled_from(PATTERNS),
       iv16=st.booleans(), contiguous=st.booleans())
def test_ranges_equal_reference(path: str, samples: list[list[tuple[int, int]]],
                                pattern: tuple[int, int], iv16: bool, contiguous: bool) -> None:
    """Every protected range of a traf at once (video) = ``sample`` on each sample."""
    iv = IV16 if iv16 else IV16[:8]
    crypt, skip = pattern
    sizes = [sum(c + p for c, p in subs) for subs in samples]
    starts, total = _layout(sizes, 0 if contiguous else 11)
    data = os.urandom(total)
    ref = bytearray(data)
    positions, lengths = [], []
    for start, size, subs in zip(starts, sizes, samples, strict=True):
        cbcs_sample(ref, start, size, key=KEY, iv=iv, subsamples=subs, crypt=crypt, skip=skip)
        pos = start
        for clear, prot in subs:
            pos += clear
            if prot:
                positions.append(pos)
                lengths.append(prot)
                pos += prot
    span = (starts[0], starts[-1] + sizes[-1]) if contiguous else None
    patches: Patches = []
    eng = CbcsEngine(KEY, iv, crypt, skip)
    eng.ranges(memoryview(data), positions, lengths, span=span, patches=patches)
    _check_patches(patches)
    assert _apply(data, patches) == ref
    own = bytearray(data)
    CbcsEngine(KEY, iv, crypt, skip, in_place=True).ranges(memoryview(own), positions, lengths,
                                                           span=span, patches=patches)
    assert own == ref
    # the engine keeps chaining right after a batch: a later sample still starts from the IV
    more = os.urandom(700)
    ref2 = bytearray(more)
    cbcs_sample(ref2, 0, 700, key=KEY, iv=iv, subsamples=[(3, 697)], crypt=crypt, skip=skip)
    later: Patches = []
    eng.sample(memoryview(more), 0, 700, subsamples=[(3, 697)], patches=later)
    assert _apply(more, later) == ref2


def test_out_of_order_and_overlapping_ranges_fall_back(path: str) -> None:
    """Ranges out of order are encrypted one after the other like ``sample`` (in place, even
    overlapping ones give what the one-at-a-time engine gives)."""
    data = os.urandom(4000)
    positions, lengths = [2000, 100, 1000, 1010], [500, 300, 400, 400]
    for in_place in (False, True):
        old = CbcsEngine(KEY, IV16, 1, 9, in_place=True)
        expect = bytearray(data)
        if not in_place:
            expect = bytearray(data)
            for p, n in zip(positions[:3], lengths[:3], strict=True):
                cbcs_sample(expect, p, n, key=KEY, iv=IV16, subsamples=None, crypt=1, skip=9)
            patches: Patches = []
            CbcsEngine(KEY, IV16, 1, 9).ranges(memoryview(data), positions[:3], lengths[:3],
                                               span=None, patches=patches)
            assert _apply(data, patches) == expect
            continue
        for p, n in zip(positions, lengths, strict=True):
            old.sample(memoryview(expect), p, n, subsamples=None, patches=[])
        own = bytearray(data)
        CbcsEngine(KEY, IV16, 1, 9, in_place=True).ranges(memoryview(own), positions, lengths,
                                                          span=None, patches=[])
        assert own == expect


# -- whole segments: the batched paths chosen per traf layout --------------------------------

def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, flags: int, payload: bytes) -> bytes:
    return _box(kind, flags.to_bytes(4, "big") + payload)


def _segment(tid: int, groups: list[list[bytes]], order: list[int], gap: int) -> bytes:
    """moof (one traf, one trun per group, default-base-is-moof) + mdat holding the groups'
    samples in ``order`` with ``gap`` filler bytes between groups."""
    filler = bytes(range(gap))
    at: dict[int, int] = {}
    payload = b""
    for g in order:
        if payload:
            payload += filler
        at[g] = len(payload)
        payload += b"".join(groups[g])

    def moof(offset: int) -> bytes:
        truns = b"".join(_full(b"trun", 0x201, struct.pack(
            ">Ii", len(samples), offset + at[g]) + b"".join(struct.pack(">I", len(s))
                                                           for s in samples))
            for g, samples in enumerate(groups))
        traf = _box(b"traf", _full(b"tfhd", 0x020000, struct.pack(">I", tid)) + truns)
        return _box(b"moof", _full(b"mfhd", 0, struct.pack(">I", 1)) + traf)

    size = len(moof(0))
    return moof(size + 8) + _box(b"mdat", payload)


def _samples(data: bytes, init: bytes) -> dict[int, list[bytes]]:
    sizes = {t.track_id: t.default_sample_size for t in parse_init(init).tracks.values()}
    out: dict[int, list[bytes]] = {}
    for box in iter_boxes(data):
        if box.type == b"moof":
            for traf in parse_moof(data, box, sizes)[1]:
                out.setdefault(traf.track_id, []).extend(
                    data[box.start + o:box.start + o + n]
                    for o, n in zip(traf.offsets, traf.sizes, strict=True))
    return out


@pytest.mark.parametrize("layout", ["one trun", "end to end", "gap", "out of order"])
def test_trun_layouts_encrypt_the_same_samples(asset: Callable[[str], Asset], path: str,
                                               layout: str) -> None:
    """A traf's samples split over two truns, end to end, with a gap or in reverse order in
    the mdat (the serial / lane / one-at-a-time paths): each sample is encrypted exactly as in
    the original segment (cbcs with a constant IV does not depend on where a sample sits),
    patched and in place alike, and the decryptor gives the input back."""
    a = asset("h264-aac-fmp4")
    tracks = [t.track_id for t in probe_init(a.init)]
    keys = {t: ContentKey(KID, KEY) for t in tracks}
    enc = Mp4Encryptor(a.init, Scheme.CBCS, keys)
    dec = Mp4Decryptor(enc.encrypted_init(), {KID: KEY})
    seg = a.segments[1]
    clear = _samples(seg, a.init)
    want = _samples(enc.encrypt_segment(seg, segment_index=1), a.init)
    for tid in tracks:
        samples = clear[tid]
        k = len(samples) // 3
        groups = [samples] if layout == "one trun" else [samples[:k], samples[k:]]
        order = [1, 0] if layout == "out of order" else list(range(len(groups)))
        data = _segment(tid, groups, order, 13 if layout == "gap" else 0)
        out = enc.encrypt_segment(data, segment_index=1)
        buf = bytearray(data)
        parts = enc.encrypt_segment_parts(buf, segment_index=1, in_place=True)
        assert b"".join(parts) == out
        assert _samples(out, a.init)[tid] == want[tid]
        back = _samples(dec.decrypt_segment(out), a.init)[tid]
        assert back == samples
