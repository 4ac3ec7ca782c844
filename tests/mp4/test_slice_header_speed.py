"""The specialised H.264/HEVC slice-header parsers and the NAL subsample mapper against the frozen
first implementation (tests/mp4/reference_slice): the same size for every slice, the same
exception type for every malformed one, the same subsample maps.

Inputs: every slice of the test media (B-frames, several slices, weighted prediction, CAVLC,
MBAFF, in-band parameter sets, HEVC WPP), extra ffmpeg clips made here (4:0:0, POC type 2,
interlaced CAVLC with B-pyramid, HEVC without WPP), the benchmark asset when present, every
single-bit flip of the first bytes of sample slices, and hypothesis-mutated slices and
parameter sets.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.media import make_asset
from speke_packager._tools import find_tool
from speke_packager.errors import CodecError, SpekePackagerError
from speke_packager.media.codecs import h264, hevc
from speke_packager.media.codecs.bits import BitReader
from speke_packager.media.subsamples import CodecFamily, SubsampleMapper
from tests.conftest import MEDIA_DIR
from tests.hardening.conftest import apply, mutations
from tests.mp4.bench_slice_header import DEFAULT as BENCH_VIDEO
from tests.mp4.bench_slice_header import load, vcl_nals
from tests.mp4.reference_slice import h264 as ref_h264
from tests.mp4.reference_slice import hevc as ref_hevc
from tests.mp4.reference_slice import subsamples as ref_subsamples

FUZZ = settings(max_examples=300, deadline=None, database=None)

SUITE_MEDIA = ["h264-fmp4", "h264-aac-fmp4", "h264-slices-fmp4", "h264-cavlc-interlaced-fmp4",
               "h264-avc3-fmp4", "h264-pq-fmp4", "hevc-fmp4", "hevc-slices-fmp4",
               "hevc-hev1-fmp4"]

_V = ("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2")
_FRAG = ("-movflags", "+frag_keyframe+empty_moov+default_base_moof+cmaf",
         "-frag_duration", "1000000")
# more slice-header shapes than the suite's media, cheap to make
EXTRA_MEDIA: dict[str, tuple[str, ...]] = {
    # 4:0:0: ChromaArrayType 0 (no chroma weights); explicit weighted P prediction
    "oracle-h264-gray": (*_V, "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
                         "-pix_fmt", "gray", "-x264-params", "weightp=2:bframes=2:ref=3",
                         *_FRAG),
    # no B-frames: x264 signals POC type 2
    "oracle-h264-poc2": (*_V, "-c:v", "libx264", "-preset", "veryfast", "-bf", "0",
                         "-x264-params", "ref=3:slices=2", *_FRAG),
    # interlaced (MBAFF) CAVLC with B-pyramid, weighted bi-prediction, several slices
    "oracle-h264-mbaff": (*_V, "-c:v", "libx264", "-preset", "fast", "-flags", "+ildct",
                          "-x264-params", "interlaced=1:tff=1:cabac=0:bframes=3:b-pyramid=normal:"
                          "weightb=1:ref=4:slices=3", *_FRAG),
    # HEVC: no WPP (no entry points), B-pyramid, weighted P and B
    "oracle-hevc-nowpp": (*_V, "-c:v", "libx265", "-preset", "fast", "-tag:v", "hvc1",
                          "-x265-params", "keyint=25:bframes=4:b-pyramid=1:weightp=1:weightb=1:"
                          "wpp=0:ref=3:log-level=error", "-pix_fmt", "yuv420p",
                          *_FRAG),
    # HEVC 4:0:0 (no chroma SAO flag, no chroma weights), SAO off
    "oracle-hevc-gray": (*_V, "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                         "-x265-params", "keyint=25:bframes=2:weightp=1:no-sao=1:log-level=error",
                         "-pix_fmt", "gray", *_FRAG),
}


def _extra(name: str) -> Path:
    out = MEDIA_DIR / f"{name}.mp4"
    if out.exists() and out.stat().st_size:
        return out
    ffmpeg = find_tool("ffmpeg")
    if not ffmpeg:
        pytest.skip("no ffmpeg")
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.mp4")
    proc = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                           *EXTRA_MEDIA[name], str(tmp)], capture_output=True, check=False)
    if proc.returncode:
        pytest.skip(f"ffmpeg cannot make {name}: {proc.stderr.decode(errors='replace')[-200:]}")
    tmp.replace(out)
    return out


def _path(name: str) -> Path:
    return _extra(name) if name in EXTRA_MEDIA else make_asset(name, MEDIA_DIR)


@dataclass
class Stream:
    """One video track: mappers, samples, its slices (with the parameter sets in effect for
    each, new and reference) and its parameter-set NAL units."""

    cbcs: SubsampleMapper
    cenc: SubsampleMapper
    samples: list[memoryview]
    slices: list[tuple[bytes, object, object]]
    param_nals: list[bytes]

    @property
    def hevc(self) -> bool:
        return self.cbcs.family is CodecFamily.HEVC


def _stream(src: Path) -> Stream:
    cbcs, cenc, samples = load(src)
    is_hevc = cbcs.family is CodecFamily.HEVC
    new: h264.H264ParamSets | hevc.HevcParamSets = (
        hevc.HevcParamSets() if is_hevc else h264.H264ParamSets())
    ref: ref_h264.H264ParamSets | ref_hevc.HevcParamSets = (
        ref_hevc.HevcParamSets() if is_hevc else ref_h264.H264ParamSets())
    params = list(cbcs.param_nals)
    for n in params:
        new.add(n)
        ref.add(n)
    slices: list[tuple[bytes, object, object]] = []
    for _, nals in vcl_nals(cbcs, samples):
        for mv in nals:
            nal = bytes(mv)
            t = (nal[0] >> 1) & 0x3F if is_hevc else nal[0] & 0x1F
            if t in ((33, 34) if is_hevc else (7, 8)):
                new, ref = new.copy(), ref.copy()
                new.add(nal)
                ref.add(nal)
                params.append(nal)
            elif (t < 32) if is_hevc else (t in (1, 5)):
                slices.append((nal, new, ref))
    return Stream(cbcs, cenc, samples, slices, params)


_STREAMS: dict[str, Stream] = {}


def stream(name: str) -> Stream:
    if name not in _STREAMS:
        _STREAMS[name] = _stream(BENCH_VIDEO if name == "bench" else _path(name))
    return _STREAMS[name]


def outcome(fn: Callable[[], object]) -> object:
    """The value, or the type of the project error raised."""
    try:
        return fn()
    except SpekePackagerError as exc:
        assert str(exc), "an error without a message"
        return type(exc)


def same(nal: bytes, hevc_: bool, new: object, ref: object) -> None:
    if hevc_:
        got = outcome(lambda: hevc.slice_header_size(nal, new))  # type: ignore[arg-type]
        want = outcome(lambda: ref_hevc.slice_header_size(nal, ref))  # type: ignore[arg-type]
    else:
        got = outcome(lambda: h264.slice_header_size(nal, new))  # type: ignore[arg-type]
        want = outcome(lambda: ref_h264.slice_header_size(nal, ref))  # type: ignore[arg-type]
    assert got == want, f"NAL {nal[:24].hex()}: {got} != {want}"


def _maps(mapper: SubsampleMapper, samples: list[memoryview]) -> Iterator[tuple[object, object]]:
    ref_mapper = ref_subsamples.SubsampleMapper(
        ref_subsamples.CodecFamily(mapper.family.value), mapper.scheme, mapper.nal_length_size,
        mapper.param_nals)
    new_s, ref_s = mapper.session(), ref_mapper.session()
    for s in samples:
        yield (outcome(lambda s=s: new_s.map(s)),  # type: ignore[misc]
               outcome(lambda s=s: ref_s.map(s)))  # type: ignore[misc]


# ---- real streams ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*SUITE_MEDIA, *EXTRA_MEDIA])
def test_every_slice_of_the_media(name: str) -> None:
    st_ = stream(name)
    assert st_.slices
    for nal, new, ref in st_.slices:
        same(nal, st_.hevc, new, ref)
        for cut in (1, 2, 3, 5, 8, 13, 21):  # truncated inside the header
            same(nal[:cut], st_.hevc, new, ref)
    for mapper in (st_.cbcs, st_.cenc):
        for got, want in _maps(mapper, st_.samples):
            assert got == want


def test_the_extra_media_has_what_it_is_for() -> None:
    """The clips really have the properties that make them worth parsing."""
    gray = stream("oracle-h264-gray").slices[0][1]
    assert isinstance(gray, h264.H264ParamSets)
    assert all(s.chroma_array_type == 0 for s in gray.sps.values())
    assert all(p.weighted_pred for p in gray.pps.values())
    poc2 = stream("oracle-h264-poc2").slices[0][1]
    assert isinstance(poc2, h264.H264ParamSets)
    assert all(s.poc_type == 2 for s in poc2.sps.values())
    mbaff = stream("oracle-h264-mbaff").slices[0][1]
    assert isinstance(mbaff, h264.H264ParamSets)
    assert all(not s.frame_mbs_only for s in mbaff.sps.values())
    assert all(not p.entropy_coding_mode for p in mbaff.pps.values())
    nowpp = stream("oracle-hevc-nowpp").slices[0][1]
    assert isinstance(nowpp, hevc.HevcParamSets)
    assert all(not p.entropy_coding_sync for p in nowpp.pps.values())


@pytest.mark.skipif(not (BENCH_VIDEO / "init.mp4").exists(), reason="benchmark asset not made")
def test_every_slice_of_the_benchmark_asset() -> None:
    st_ = stream("bench")
    assert len(st_.slices) > 1000
    for nal, new, ref in st_.slices:
        same(nal, st_.hevc, new, ref)
    for got, want in _maps(st_.cbcs, st_.samples):
        assert got == want


def _seed_slices(per_stream: int = 12) -> list[tuple[str, int]]:
    """(stream, slice index): a spread of slices of every stream (first ones include IDR)."""
    out = []
    for name in [*SUITE_MEDIA, *EXTRA_MEDIA]:
        n = len(stream(name).slices)
        step = max(1, n // per_stream)
        out.extend((name, i) for i in range(0, n, step)[:per_stream])
    return out


@pytest.mark.parametrize("name", [*SUITE_MEDIA, *EXTRA_MEDIA])
def test_every_bit_flip_of_the_header_bytes(name: str) -> None:
    """Every single-bit flip of the first 12 bytes (NAL header included) of a spread of slices:
    other slice types, flags set that the encoder never sets, codes running long."""
    st_ = stream(name)
    n = len(st_.slices)
    for i in range(0, n, max(1, n // 6)):
        nal, new, ref = st_.slices[i]
        for bit in range(min(96, 8 * len(nal))):
            flipped = bytearray(nal)
            flipped[bit >> 3] ^= 0x80 >> (bit & 7)
            same(bytes(flipped), st_.hevc, new, ref)


def test_emulation_prevention_in_the_header() -> None:
    """``00 00 03`` inside the parsed prefix (at every offset) changes nothing but the count."""
    for name in ("h264-slices-fmp4", "hevc-slices-fmp4", "oracle-h264-mbaff"):
        st_ = stream(name)
        for nal, new, ref in st_.slices[:40]:
            for at in range(1, 24):
                for blob in (b"\x00\x00\x03", b"\x00\x00\x03\x00", b"\x00\x00"):
                    same(nal[:at] + blob + nal[at:], st_.hevc, new, ref)


def test_long_prefix_retry_and_errors() -> None:
    """Headers longer than the first parsed prefix, and NAL units that end inside them."""
    st_ = stream("h264-slices-fmp4")
    for nal, new, ref in st_.slices[:30]:
        # a long first_mb_in_slice code pushes the header past the first bytes
        for pad in (1, 8, 20, 40, 130):
            body = bytearray(nal)
            same(bytes(body[:1]) + b"\x00" * (pad // 8) + bytes(body[1:]), False, new, ref)
    hv = stream("hevc-slices-fmp4")
    for nal, new, ref in hv.slices[:30]:
        for cut in range(2, min(len(nal), 40)):
            same(nal[:cut], True, new, ref)
            same(nal[:cut] + b"\x00" * 70, True, new, ref)


def test_unknown_parameter_sets() -> None:
    for name in ("h264-fmp4", "hevc-fmp4"):
        st_ = stream(name)
        nal = st_.slices[3][0]
        empty_new = hevc.HevcParamSets() if st_.hevc else h264.H264ParamSets()
        empty_ref = ref_hevc.HevcParamSets() if st_.hevc else ref_h264.H264ParamSets()
        same(nal, st_.hevc, empty_new, empty_ref)
        fn = hevc.slice_header_size if st_.hevc else h264.slice_header_size
        with pytest.raises(CodecError, match="unknown PPS"):
            fn(nal, empty_new)  # type: ignore[arg-type]


def test_start_end_arguments() -> None:
    st_ = stream("h264-slices-fmp4")
    for nal, new, _ in st_.slices[:20]:
        buf = b"\xaa" * 7 + nal + b"\x55" * 5
        assert h264.slice_header_size(buf, new, 7, 7 + len(nal)) == \
            h264.slice_header_size(nal, new)  # type: ignore[arg-type]
    hv = stream("hevc-slices-fmp4")
    for nal, new, _ in hv.slices[:20]:
        buf = memoryview(b"\xaa" * 3 + nal)
        assert hevc.slice_header_size(buf, new, 3) == \
            hevc.slice_header_size(nal, new)  # type: ignore[arg-type]


def test_parameter_set_change_drops_plans() -> None:
    """A PPS replaced in band (same id, other content) is used by the next slice."""
    st_ = stream("h264-fmp4")
    nal, new, _ = st_.slices[5]
    assert isinstance(new, h264.H264ParamSets)
    ps = new.copy()
    h264.slice_header_size(nal, ps)
    assert ps.plans
    pps_nal = next(n for n in st_.param_nals if n[0] & 0x1F == 8)
    other = ref_h264.H264ParamSets()
    for n in st_.cbcs.param_nals:
        other.add(n)
    # the same PPS with entropy_coding_mode_flag flipped (bit 2 after pps_id=0, sps_id=0 "11")
    changed = bytearray(pps_nal)
    changed[1] ^= 0x20
    ps.add(bytes(changed))
    other.add(bytes(changed))
    assert not ps.plans
    same(nal, False, ps, other)


# ---- hypothesis --------------------------------------------------------------------------------
def _all_seeds() -> list[tuple[str, int]]:
    return _seed_slices()


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_slices(data: st.DataObject) -> None:
    name, i = data.draw(st.sampled_from(_all_seeds()))
    st_ = stream(name)
    nal, new, ref = st_.slices[i]
    head = data.draw(st.integers(1, 40))
    mutated = apply(nal[:head], data.draw(mutations)) + nal[head:head + 64]
    if mutated:
        same(mutated, st_.hevc, new, ref)


@FUZZ
@given(data=st.data())
def test_fuzz_random_headers(data: st.DataObject) -> None:
    """A valid NAL header of a slice type, then random bits, with the stream's parameter sets."""
    name, i = data.draw(st.sampled_from(_all_seeds()))
    st_ = stream(name)
    nal, new, ref = st_.slices[i]
    hdr = 2 if st_.hevc else 1
    if st_.hevc:
        t = data.draw(st.sampled_from([0, 1, 2, 8, 9, 16, 19, 20, 21]))
        first = bytes([t << 1 | (nal[0] & 0x81), nal[1]])
    else:
        first = bytes([data.draw(st.sampled_from([0x01, 0x21, 0x41, 0x61, 0x25, 0x45, 0x65]))])
    body = data.draw(st.binary(min_size=0, max_size=48))
    same(first + body, st_.hevc, new, ref)
    assert len(first) == hdr


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_parameter_sets(data: st.DataObject) -> None:
    """Mutated SPS/PPS (other widths, flags, RPS, tiles, extensions) with real slices."""
    name, i = data.draw(st.sampled_from(_all_seeds()))
    st_ = stream(name)
    nal, new, ref = st_.slices[i]
    seed = data.draw(st.sampled_from(st_.param_nals))
    blob = apply(seed, data.draw(mutations))
    new, ref = new.copy(), ref.copy()  # type: ignore[attr-defined]
    got = outcome(lambda: new.add(blob))  # type: ignore[attr-defined]
    want = outcome(lambda: ref.add(blob))  # type: ignore[attr-defined]
    assert got == want
    same(nal, st_.hevc, new, ref)
    flip = data.draw(st.integers(0, 8 * min(len(nal), 16) - 1))
    flipped = bytearray(nal)
    flipped[flip >> 3] ^= 0x80 >> (flip & 7)
    same(bytes(flipped), st_.hevc, new, ref)


# ---- synthetic parameter sets: every branch, whatever the encoders use -------------------------
_bits_byte = st.one_of(st.sampled_from([0x00, 0x40, 0x80, 0xA0, 0xC0, 0xE0, 0xFF, 0x10, 0x88]),
                       st.integers(0, 255))
_header_bytes = st.lists(_bits_byte, min_size=0, max_size=40).map(bytes)

_h264_sps = st.builds(
    lambda chroma, sep, fbits, poc, lsb, zero, mbs, units: h264.Sps(
        0, 0 if sep else chroma, sep, fbits, poc, lsb, zero, mbs, units),
    st.integers(0, 3), st.booleans(), st.integers(4, 16), st.integers(0, 2), st.integers(4, 16),
    st.booleans(), st.booleans(), st.integers(1, 9000))
_h264_pps = st.builds(
    h264.Pps, st.just(0), st.just(0), st.booleans(), st.booleans(), st.integers(1, 8),
    st.integers(0, 6), st.integers(1, 100), st.integers(1, 32), st.integers(1, 32),
    st.booleans(), st.integers(0, 2), st.booleans(), st.booleans())


@FUZZ
@given(sps=_h264_sps, pps=_h264_pps, b0=st.sampled_from([0x01, 0x21, 0x41, 0x61, 0x25, 0x65]),
       body=_header_bytes)
def test_fuzz_h264_synthetic_parameter_sets(sps: h264.Sps, pps: h264.Pps, b0: int,
                                            body: bytes) -> None:
    new, ref = h264.H264ParamSets(), ref_h264.H264ParamSets()
    for ps in (new, ref):  # fresh tables, nothing derived yet: set directly
        ps.sps[0] = sps  # type: ignore[assignment]
        ps.pps[0] = pps  # type: ignore[assignment]
    same(bytes([b0]) + body, False, new, ref)


_deltas = st.lists(st.tuples(st.integers(-40, 40), st.booleans()), max_size=4).map(tuple)
_st_rps = st.builds(hevc.StRps, _deltas, _deltas)


@st.composite
def _hevc_sps(draw: st.DrawFn) -> hevc.HevcSps:
    lt_used = tuple(draw(st.lists(st.booleans(), max_size=4)))
    sep = draw(st.booleans())
    return hevc.HevcSps(0, 0 if sep else draw(st.integers(0, 3)), sep, draw(st.integers(4, 16)),
                        draw(st.integers(1, 10000)), draw(st.booleans()),
                        tuple(draw(st.lists(_st_rps, max_size=5))), draw(st.booleans()),
                        len(lt_used), lt_used, draw(st.booleans()))


_hevc_pps = st.builds(
    hevc.HevcPps, st.just(0), st.just(0), st.booleans(), st.booleans(), st.integers(0, 7),
    st.booleans(), st.integers(1, 16), st.integers(1, 16), st.booleans(), st.booleans(),
    st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    st.booleans(), st.booleans(), st.booleans())


@FUZZ
@given(sps=_hevc_sps(), pps=_hevc_pps, t=st.sampled_from([0, 1, 8, 9, 16, 19, 20, 21]),
       body=_header_bytes)
def test_fuzz_hevc_synthetic_parameter_sets(sps: hevc.HevcSps, pps: hevc.HevcPps, t: int,
                                            body: bytes) -> None:
    new, ref = hevc.HevcParamSets(), ref_hevc.HevcParamSets()
    for ps in (new, ref):  # fresh tables, nothing derived yet: set directly
        ps.sps[0] = sps  # type: ignore[assignment]
        ps.pps[0] = pps  # type: ignore[assignment]
    # first_slice_segment_in_pic_flag and slice_pic_parameter_set_id 0 most of the time
    lead = body[:1] or b"\x00"
    same(bytes([t << 1, 1]) + lead + body[1:], True, new, ref)


def _random_body(rng: random.Random) -> bytes:
    """Header-like bits: mostly short codes (runs of 1 bits, 010, 011), some random bytes."""
    bits = []
    while len(bits) < 8 * rng.randint(1, 40):
        k = rng.random()
        if k < 0.45:
            bits.append(1)  # ue 0 / flag 1
        elif k < 0.6:
            bits.append(0)  # flag 0
        elif k < 0.8:
            bits.extend((0, 1, rng.randint(0, 1)))  # ue 1 / 2
        elif k < 0.9:
            bits.extend((0, 0, 1, rng.randint(0, 1), rng.randint(0, 1)))  # ue 3..6
        else:
            bits.extend(rng.randint(0, 1) for _ in range(8))
    n = len(bits) // 8 * 8
    return int("".join(map(str, bits[:n])), 2).to_bytes(n // 8, "big")


def test_random_headers_with_random_h264_parameter_sets() -> None:
    rng = random.Random(264)
    for _ in range(1500):
        sep = rng.random() < 0.2
        sps = h264.Sps(0, 0 if sep else rng.randint(0, 3), sep, rng.randint(4, 16),
                       rng.randint(0, 2), rng.randint(4, 16), rng.random() < 0.5,
                       rng.random() < 0.5, rng.randint(1, 9000))
        pps = h264.Pps(0, 0, rng.random() < 0.5, rng.random() < 0.5, rng.choice([1, 1, 2, 8]),
                       rng.randint(0, 6), rng.randint(1, 100), rng.randint(1, 4),
                       rng.randint(1, 4), rng.random() < 0.5, rng.randint(0, 2),
                       rng.random() < 0.5, rng.random() < 0.3)
        new, ref = h264.H264ParamSets(), ref_h264.H264ParamSets()
        for ps in (new, ref):  # fresh tables, nothing derived yet: set directly
            ps.sps[0] = sps  # type: ignore[assignment]
            ps.pps[0] = pps  # type: ignore[assignment]
        for _ in range(8):
            b0 = rng.choice([0x01, 0x21, 0x41, 0x61, 0x25, 0x45, 0x65])
            # first_mb_in_slice 0, then slice_type 0..9 (ue), pps_id 0
            st_bits = format(rng.randint(0, 9) + 1, "b")
            lead = "1" + "0" * (len(st_bits) - 1) + st_bits + "1"
            body = _random_body(rng)
            rest = int.from_bytes(body, "big") if body else 0
            nbits = len(lead) + 8 * len(body)
            nbytes = -(-nbits // 8)
            value = (int(lead, 2) << (8 * len(body)) | rest) << (8 * nbytes - nbits)
            same(bytes([b0]) + value.to_bytes(nbytes, "big"), False, new, ref)


def _random_rps(rng: random.Random) -> hevc.StRps:
    def side(sign: int) -> tuple[tuple[int, bool], ...]:
        poc, out = 0, []
        for _ in range(rng.randint(0, 4)):
            poc += sign * rng.randint(1, 4)
            out.append((poc, rng.random() < 0.6))
        return tuple(out)
    return hevc.StRps(side(-1), side(1))


def test_random_headers_with_random_hevc_parameter_sets() -> None:
    rng = random.Random(265)
    for _ in range(1500):
        sep = rng.random() < 0.2
        lt_used = tuple(rng.random() < 0.5 for _ in range(rng.choice([0, 0, 1, 3])))
        sps = hevc.HevcSps(0, 0 if sep else rng.randint(0, 3), sep, rng.randint(4, 10),
                           rng.randint(1, 2000), rng.random() < 0.5,
                           tuple(_random_rps(rng) for _ in range(rng.choice([0, 1, 2, 5]))),
                           rng.random() < 0.3, len(lt_used), lt_used, rng.random() < 0.5)
        pps = hevc.HevcPps(0, 0, rng.random() < 0.3, rng.random() < 0.3, rng.choice([0, 0, 2]),
                           rng.random() < 0.5, rng.randint(1, 4), rng.randint(1, 4),
                           *(rng.random() < 0.4 for _ in range(11)))
        new, ref = hevc.HevcParamSets(), ref_hevc.HevcParamSets()
        for ps in (new, ref):  # fresh tables, nothing derived yet: set directly
            ps.sps[0] = sps  # type: ignore[assignment]
            ps.pps[0] = pps  # type: ignore[assignment]
        for _ in range(8):
            t = rng.choice([0, 1, 8, 9, 16, 19, 20, 21])
            same(bytes([t << 1, 1]) + _random_body(rng), True, new, ref)


def _bits(s: str) -> bytes:
    s = s.replace(" ", "")
    s += "1" + "0" * (-(len(s) + 1) % 8)  # a stop bit, then to a byte
    return int(s, 2).to_bytes(len(s) // 8, "big")


def _ue(v: int) -> str:
    b = format(v + 1, "b")
    return "0" * (len(b) - 1) + b


def test_long_loops_unknown_sps_and_many_pps() -> None:
    """Loops that do not end (1000 entries: the header is parsed again from longer prefixes),
    a PPS naming a missing SPS, more PPS ids than the plan cache holds."""
    sps = h264.Sps(0, 1, False, 4, 0, 4, False, True, 100)
    pps = h264.Pps(0, 0, False, False, 1, 0, 1, 1, 1, False, 0, False, False)
    new, ref = h264.H264ParamSets(), ref_h264.H264ParamSets()
    for ps in (new, ref):
        ps.sps[0] = sps  # type: ignore[assignment]
        for i in range(300):
            ps.pps[i] = dataclasses.replace(pps, pps_id=i)  # type: ignore[assignment]
        ps.pps[300] = dataclasses.replace(pps, pps_id=300, sps_id=7)  # type: ignore[assignment]
    head = "1 1 1 0000 0000 0"  # first_mb 0, P, PPS 0, frame_num, POC lsb, no override
    for n in (10, 999, 1000, 1001):
        mods = "1" + "1 1" * n + _ue(3)  # ref_pic_list_modification: n x (idc 0, abs_diff 0)
        same(bytes([0x01]) + _bits(head + mods + "0 1"), False, new, ref)
        mmco = "0 1" + (_ue(1) + "1") * n + _ue(0)  # n x (op 1, difference 0), then op 0
        same(bytes([0x41]) + _bits(head + mmco + "1"), False, new, ref)
    for i in (0, 5, 255, 256, 299, 300, 301):
        hdr = bytes([0x01]) + _bits("1 1" + _ue(i) + "0000 0000 0 0 1")
        same(hdr, False, new, ref)
    assert len(new.plans) <= 256


def test_map_edges_against_the_reference() -> None:
    """Subsample maps and errors of odd samples: empty and 1-byte NAL units, truncated length
    fields, NAL units past the end, in-band SPS/PPS, data partitioning, long clear runs."""
    for name in ("h264-fmp4", "hevc-fmp4"):
        st_ = stream(name)
        sample = bytes(st_.samples[1])
        params = b"".join(len(n).to_bytes(4, "big") + n for n in st_.cbcs.param_nals)
        sei = (b"\x00\x01\x11\x72\x06" if not st_.hevc else b"\x00\x01\x11\x72\x4e\x01")
        sei += b"\x05" * (70000 - len(sei) + 4)
        cases = [sample, params + sample, sample + b"\x00\x00\x00\x00", sample + b"\x00\x00",
                 sample[:-1], b"\x00\x00\x00\x01\x09" + sample, sei + sample, b"",
                 b"\x00\x00\x00\x05\x22abcd", b"\x00\x00\x00\x01", sample[:4]]
        for scheme_mapper in (st_.cbcs, st_.cenc):
            for ls in (4, 2, 3):
                m = dataclasses.replace(scheme_mapper, nal_length_size=ls)
                ref_m = ref_subsamples.SubsampleMapper(
                    ref_subsamples.CodecFamily(m.family.value), m.scheme, ls, m.param_nals)
                for case in cases:
                    got = outcome(lambda c=case, m=m: m.session().map(c))  # type: ignore[misc]
                    want = outcome(lambda c=case, r=ref_m: r.session().map(c))  # type: ignore[misc]
                    assert got == want, (name, m.scheme, ls, case[:16].hex())


def test_ue_tables_against_the_bit_reader() -> None:
    """Every 16-bit window: the look-up tables agree with the generic reader."""
    from speke_packager.media.codecs import bits

    for p in range(1 << 16):
        window = p.to_bytes(2, "big")
        r = BitReader(window)
        values = []
        ends = []
        for _ in range(3):
            try:
                values.append(r.ue())
            except CodecError:
                break
            ends.append(r.pos)
        assert bits.UE16_LEN[p] == (ends[0] if ends else 0)
        if ends:
            assert bits.UE16_VAL[p] == values[0]
        assert bits.UE16_LEN2[p] == (ends[1] if len(ends) > 1 else 0)
        three = len(ends) == 3 and values[2] < 256
        assert bits.H264_FIRST3_LEN[p] == (ends[2] if three else 0)
        if three:
            assert bits.H264_FIRST3_TYPE[p] == values[1] % 5
            assert bits.H264_FIRST3_PPS[p] == values[2]
        deblock = ends[0] if ends and values[0] == 1 else (ends[2] if len(ends) == 3 else 0)
        assert bits.H264_DEBLOCK_LEN[p] == deblock
