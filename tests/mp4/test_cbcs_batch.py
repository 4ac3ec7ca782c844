"""The batched cbcs paths (``CbcsEngine.whole_samples`` / ``ranges``: lane-parallel CBC and the
serial one-gather path) against the per-sample reference cipher ``sample_crypto.cbcs_sample``.

Each case runs three times: with the engine's own choice, with the lane-parallel path forced and
with the serial path forced, in patch mode and in place."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speke_packager.media.mp4 import engine as engine_mod
from speke_packager.media.mp4.engine import CbcsEngine, Patches
from speke_packager.media.mp4.sample_crypto import cbcs_sample
from tests.mp4.helpers import KEY, WRONG

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
