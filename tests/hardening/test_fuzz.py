"""Fuzzing: hostile bytes never hang a parser and never raise anything but our typed errors.

Targets: the CPIX parser, the TS demuxer (probe + SAMPLE-AES), the MP4 box parser (probe_init,
Mp4Encryptor init + segments), the H.264/HEVC parameter-set and slice-header parsers, the HLS
and DASH readers, the pipeline's URI resolver and SegmentBase reader, deeply nested box trees, and
the decrypt side that ``verify`` runs. Each target: hypothesis mutations of real seeds (small
budget) + replay of the committed corpus in ``corpus/<target>/``.

Reproducible: examples are derandomized (derived from each test's name; see ``FUZZ`` in
conftest). ``SPEKE_FUZZ_EXAMPLES=2000`` runs a longer pass; ``SPEKE_FUZZ_EXPLORE=1`` with
``pytest --hypothesis-seed=N`` draws fresh examples from seed N. Every case must end within
``CASE_SECONDS`` and runs under an address-space limit (``memory_bound``).
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speke_packager.constants import Scheme
from speke_packager.errors import SpekePackagerError
from speke_packager.keys.cpix import parse_cpix
from speke_packager.manifests.dash import parse_mpd, representation_segments
from speke_packager.manifests.hls import (
    is_multivariant,
    parse_key_lines,
    parse_media_playlist,
    parse_multivariant_playlist,
)
from speke_packager.media.codecs import h264, hevc
from speke_packager.media.codecs.nal import iter_annexb, iter_length_prefixed, unescape_emulation
from speke_packager.media.mp4 import Mp4Encryptor, probe_init
from speke_packager.media.ts import encrypt_sample_aes, probe_ts
from speke_packager.model import ContentKey, TrackKind
from tests.conftest import shared_folder
from tests.cpix_seeds import cpix_seeds

from .conftest import (
    FUZZ,
    KEY,
    Mutation,
    apply,
    avcc_of,
    corpus,
    fmp4_seeds,
    memory_bound,
    mutations,
    text_mutations,
    ts_seeds,
    typed_only,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _bounded_memory() -> Iterator[None]:
    """Every case runs under an address-space limit 1 GiB above the process's size."""
    with memory_bound():
        yield

CK = ContentKey(UUID(int=0x5A1C), KEY)
IV = bytes(range(16))

# ---- seeds -------------------------------------------------------------------------------------
HLS_MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init.mp4",BYTERANGE="812@0"
#EXT-X-KEY:METHOD=NONE
#EXTINF:6.000,
#EXT-X-BYTERANGE:10000@812
media.mp4
#EXTINF:6.000,title
#EXT-X-BYTERANGE:9000
media.mp4
#EXT-X-DISCONTINUITY
#EXTINF:4.5,
seg-3.m4s
#EXT-X-ENDLIST
"""
HLS_TS = """#EXTM3U
#EXT-X-TARGETDURATION:2
#EXTINF:2.0,
a.ts
#EXT-X-KEY:METHOD=AES-128,URI="https://k.example/k?x=1",IV=0x000102030405060708090a0b0c0d0e0f
#EXTINF:2.0,
b.ts
#EXT-X-ENDLIST
"""
HLS_MULTI = """#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="en",LANGUAGE="en",DEFAULT=YES,URI="a/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2",AUDIO="aac"
v360/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="v360/iframes.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,FRAME-RATE=25.000
v720/index.m3u8
"""
KEY_LINES = """#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://5a1c9e3b7d2f4a6880aabbccddeeff01",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"
#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="data:text/plain;base64,AAAAAA==",KEYFORMAT="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",KEYID=0x5a1c9e3b7d2f4a6880aabbccddeeff01
#EXT-X-SESSION-KEY:METHOD=AES-128,URI="k.bin",IV=0X0102
"""
MPD_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT8.5S"
     minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <BaseURL>media/</BaseURL>
  <Period id="p0" start="PT0S">
    <AdaptationSet contentType="video" mimeType="video/mp4" segmentAlignment="true">
      <SegmentTemplate timescale="12800" initialization="init-$RepresentationID$.m4s"
                       media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"
                       duration="25600"/>
      <Representation id="v0" bandwidth="500000" codecs="avc1.64001e" width="640" height="360"/>
    </AdaptationSet>
    <AdaptationSet contentType="audio" mimeType="audio/mp4" lang="en">
      <Representation id="a0" bandwidth="96000" codecs="mp4a.40.2">
        <SegmentTemplate timescale="48000" initialization="a-init.m4s" media="a-$Time$.m4s">
          <SegmentTimeline><S t="0" d="96000" r="3"/><S d="24000"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""
MPD_LIST = """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S"
     minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:full:2011">
  <Period duration="PT4S">
    <AdaptationSet mimeType="video/mp4">
      <Representation id="1" bandwidth="100">
        <BaseURL>v.mp4</BaseURL>
        <SegmentList timescale="1000" duration="2000">
          <Initialization range="0-811"/>
          <SegmentURL mediaRange="812-20000" indexRange="812-900"/>
          <SegmentURL mediaRange="20001-40000"/>
        </SegmentList>
      </Representation>
      <Representation id="2" bandwidth="200">
        <BaseURL>w.mp4</BaseURL>
        <SegmentBase indexRange="700-799" timescale="90000"><Initialization range="0-699"/></SegmentBase>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""


def _cpix_seeds() -> list[bytes]:
    """Generated documents, plus the public vectors when ../shared/cpix-samples is present."""
    shared = shared_folder("cpix-samples")
    public = [p.read_bytes() for p in sorted(shared.glob("*.xml"))] if shared else []
    return [*cpix_seeds(), *public]


# ---- CPIX --------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_cpix(data: st.DataObject) -> None:
    seeds = _cpix_seeds()
    doc = apply(data.draw(st.sampled_from(seeds)), data.draw(mutations))
    typed_only(lambda: parse_cpix(doc))


@pytest.mark.parametrize("path", corpus("cpix"), ids=lambda p: p.name)
def test_corpus_cpix(path: Path) -> None:
    typed_only(lambda: parse_cpix(path.read_bytes()))


def test_cpix_seeds_parse() -> None:
    """Control: the fuzzer starts from documents the parser accepts (else it fuzzes nothing)."""
    for doc in cpix_seeds():
        parse_cpix(doc)


def test_public_cpix_seeds_parse(cpix_samples: Path) -> None:
    ok = 0
    for p in sorted(cpix_samples.glob("*.xml")):
        try:
            parse_cpix(p.read_bytes())
            ok += 1
        except SpekePackagerError:
            pass
    assert ok >= 20


# ---- MPEG-TS -----------------------------------------------------------------------------------
def _ts_target(data: bytes) -> None:
    typed_only(lambda: probe_ts(data))
    typed_only(lambda: encrypt_sample_aes(data, KEY, IV))


@FUZZ
@given(data=st.data())
def test_fuzz_ts(data: st.DataObject) -> None:
    _ts_target(apply(data.draw(st.sampled_from(ts_seeds())), data.draw(mutations)))


@FUZZ
@given(packets=st.lists(st.binary(min_size=187, max_size=187), min_size=1, max_size=40))
def test_fuzz_ts_random_packets(packets: list[bytes]) -> None:
    """Random payloads behind valid sync bytes reach the PSI/PES parsers, not just the sync."""
    _ts_target(b"".join(b"\x47" + p for p in packets))


@pytest.mark.parametrize("path", corpus("ts"), ids=lambda p: p.name)
def test_corpus_ts(path: Path) -> None:
    _ts_target(path.read_bytes())


def test_ts_seeds_are_valid() -> None:
    for seed in ts_seeds():
        assert {t.kind for t in probe_ts(seed)} >= {TrackKind.VIDEO}
    h264_aac, _hevc, h264_ac3 = ts_seeds()  # HEVC has no SAMPLE-AES definition in TS
    for seed in (h264_aac, h264_ac3):
        assert encrypt_sample_aes(seed, KEY, IV) != seed


# ---- MP4 ---------------------------------------------------------------------------------------
def _encryptable(init: bytes) -> dict[int, ContentKey]:
    return {t.track_id: CK for t in probe_init(init)
            if t.kind in (TrackKind.VIDEO, TrackKind.AUDIO)}


def _init_target(init: bytes) -> None:
    def go() -> None:
        keys = _encryptable(init)
        for scheme in (Scheme.CENC, Scheme.CBCS):
            Mp4Encryptor(init, scheme, keys, iv_seed=b"f").encrypted_init()
    typed_only(go)


@FUZZ
@given(data=st.data())
def test_fuzz_mp4_init(data: st.DataObject) -> None:
    init = data.draw(st.sampled_from([i for i, _ in fmp4_seeds().values()]))
    _init_target(apply(init, data.draw(mutations)))


@FUZZ
@given(data=st.data())
def test_fuzz_mp4_segment(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(fmp4_seeds())))
    init, segs = fmp4_seeds()[name]
    scheme = data.draw(st.sampled_from([Scheme.CENC, Scheme.CBCS]))
    enc = Mp4Encryptor(init, scheme, _encryptable(init), iv_seed=b"f")
    seg = apply(segs[0], data.draw(mutations))
    typed_only(lambda: enc.encrypt_segment(seg, segment_index=0))


@pytest.mark.parametrize("path", corpus("mp4-init"), ids=lambda p: p.name)
def test_corpus_mp4_init(path: Path) -> None:
    _init_target(path.read_bytes())


@pytest.mark.parametrize("path", corpus("mp4-segment"), ids=lambda p: p.name)
def test_corpus_mp4_segment(path: Path) -> None:
    seg = path.read_bytes()
    for init, _ in fmp4_seeds().values():
        for scheme in (Scheme.CENC, Scheme.CBCS):
            enc = Mp4Encryptor(init, scheme, _encryptable(init), iv_seed=b"f")
            typed_only(lambda enc=enc: enc.encrypt_segment(seg, segment_index=0))


# ---- H.264 / HEVC NAL parsers ------------------------------------------------------------------
def _h264_target(blob: bytes) -> None:
    typed_only(lambda: h264.parse_avcc(blob))
    typed_only(lambda: h264.parse_sps(blob))
    typed_only(lambda: h264.parse_pps(blob))


def _hevc_target(blob: bytes) -> None:
    typed_only(lambda: hevc.parse_hvcc(blob))
    typed_only(lambda: hevc.parse_sps(blob))
    typed_only(lambda: hevc.parse_pps(blob))


def _param_sets() -> tuple[h264.AvcConfig, hevc.HevcConfig]:
    avc = h264.parse_avcc(avcc_of(fmp4_seeds()["h264-fmp4"][0], b"avcC"))
    hvc = hevc.parse_hvcc(avcc_of(fmp4_seeds()["hevc-fmp4"][0], b"hvcC"))
    return avc, hvc


def _slice_nals(seg: bytes, length_size: int) -> list[bytes]:
    """The first NAL units of the first samples of a segment's mdat (length-prefixed)."""
    mdat = seg.find(b"mdat") + 4
    out = []
    for off, size in iter_length_prefixed(seg[mdat:], length_size):
        out.append(seg[mdat + off + length_size:mdat + off + length_size + size])
        if len(out) > 6:
            break
    return out


@FUZZ
@given(data=st.data())
def test_fuzz_h264(data: st.DataObject) -> None:
    avc, _ = _param_sets()
    seeds = [avcc_of(fmp4_seeds()["h264-fmp4"][0], b"avcC"), *avc.sps, *avc.pps]
    nals = _slice_nals(fmp4_seeds()["h264-fmp4"][1][0], avc.nal_length_size)
    blob = apply(data.draw(st.sampled_from(seeds)), data.draw(mutations))
    nal = apply(data.draw(st.sampled_from(nals)), data.draw(mutations))
    _h264_target(blob)
    ps = avc.param_sets()
    typed_only(lambda: h264.slice_header_size(nal, ps))
    typed_only(lambda: ps.copy().add(blob))


@FUZZ
@given(data=st.data())
def test_fuzz_hevc(data: st.DataObject) -> None:
    _, hvc = _param_sets()
    seeds = [avcc_of(fmp4_seeds()["hevc-fmp4"][0], b"hvcC"), *hvc.nals]
    nals = _slice_nals(fmp4_seeds()["hevc-fmp4"][1][0], hvc.nal_length_size)
    blob = apply(data.draw(st.sampled_from(seeds)), data.draw(mutations))
    nal = apply(data.draw(st.sampled_from(nals)), data.draw(mutations))
    _hevc_target(blob)
    ps = hvc.param_sets()
    typed_only(lambda: hevc.slice_header_size(nal, ps))
    typed_only(lambda: ps.copy().add(blob))


@pytest.mark.parametrize("call", ["h264-slice", "h264-add", "hevc-slice", "hevc-add"])
def test_empty_nal(call: str) -> None:
    avc, hvc = _param_sets()
    fn = {"h264-slice": lambda: h264.slice_header_size(b"", avc.param_sets()),
          "h264-add": lambda: avc.param_sets().add(b""),
          "hevc-slice": lambda: hevc.slice_header_size(b"", hvc.param_sets()),
          "hevc-add": lambda: hvc.param_sets().add(b"")}[call]
    with pytest.raises(SpekePackagerError):
        fn()


@FUZZ
@given(blob=st.binary(max_size=2048), size=st.sampled_from([1, 2, 3, 4]))
def test_fuzz_nal_iterators(blob: bytes, size: int) -> None:
    def walk() -> None:
        for off, n in iter_annexb(blob):
            assert 0 <= off <= off + n <= len(blob)
    typed_only(walk)
    typed_only(lambda: list(iter_length_prefixed(blob, size)))
    typed_only(lambda: unescape_emulation(blob))


@pytest.mark.parametrize("path", corpus("nal"), ids=lambda p: p.name)
def test_corpus_nal(path: Path) -> None:
    blob = path.read_bytes()
    avc, hvc = _param_sets()
    _h264_target(blob)
    _hevc_target(blob)
    if blob:
        typed_only(lambda: h264.slice_header_size(blob, avc.param_sets()))
        typed_only(lambda: hevc.slice_header_size(blob, hvc.param_sets()))


# ---- HLS / DASH --------------------------------------------------------------------------------
def _hls_target(text: str) -> None:
    typed_only(lambda: is_multivariant(text))
    typed_only(lambda: parse_media_playlist(text, path="fuzz.m3u8"))
    typed_only(lambda: parse_multivariant_playlist(text, path="fuzz.m3u8"))
    typed_only(lambda: parse_key_lines(text))


def _mpd_target(data: bytes) -> None:
    typed_only(lambda: representation_segments(parse_mpd(data, path="fuzz.mpd"),
                                               path="fuzz.mpd"))


@FUZZ
@given(text=text_mutations([HLS_MEDIA, HLS_TS, HLS_MULTI, KEY_LINES]))
def test_fuzz_hls(text: str) -> None:
    _hls_target(text)


@FUZZ
@given(lines=st.lists(st.sampled_from(
    [*HLS_MEDIA.splitlines(), *HLS_MULTI.splitlines(), *KEY_LINES.splitlines(), "", "#",
     "#EXTINF:", "#EXT-X-BYTERANGE:99999999999999999999@0", "#EXT-X-MEDIA-SEQUENCE:-1",
     "#EXTINF:nan,", "#EXTINF:1e308,", '#EXT-X-MAP:URI="', "#EXT-X-KEY:METHOD=AES-128,IV=0x"]),
    max_size=40))
def test_fuzz_hls_line_soup(lines: list[str]) -> None:
    _hls_target("\n".join(lines))


@FUZZ
@given(doc=st.builds(apply, st.sampled_from([MPD_TEMPLATE.encode(), MPD_LIST.encode()]),
                     mutations))
def test_fuzz_mpd(doc: bytes) -> None:
    _mpd_target(doc)


@pytest.mark.parametrize("path", corpus("hls"), ids=lambda p: p.name)
def test_corpus_hls(path: Path) -> None:
    _hls_target(path.read_text("utf-8", "replace"))


@pytest.mark.parametrize("path", corpus("mpd"), ids=lambda p: p.name)
def test_corpus_mpd(path: Path) -> None:
    _mpd_target(path.read_bytes())


def test_manifest_seeds_parse() -> None:
    """Controls: the seeds are valid, so mutations start from inputs that reach deep code."""
    assert len(parse_media_playlist(HLS_MEDIA).segments) == 3
    assert len(parse_multivariant_playlist(HLS_MULTI).refs) >= 3
    assert len(parse_key_lines(KEY_LINES)) == 3
    reps = representation_segments(parse_mpd(MPD_TEMPLATE.encode()))
    assert [len(r.media) for r in reps] == [5, 5]
    assert len(representation_segments(parse_mpd(MPD_LIST.encode()))) == 2


# ---- known DASH reader bugs (manifests/dash.py), deterministic repros --------------------------
_MPD_T = ('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="{dur}">'
          '<Period><AdaptationSet mimeType="video/mp4"><Representation id="v" bandwidth="1">'
          '<SegmentTemplate timescale="{ts}" media="$Number$.m4s" initialization="i.mp4" {rest}'
          '</Representation></AdaptationSet></Period></MPD>')
_TIMELINE = '><SegmentTimeline><S t="0" d="1" r="{r}"/></SegmentTimeline></SegmentTemplate>'
DASH_BUGS = {
    "non-integer-duration": _MPD_T.format(dur="PT4S", ts="1", rest='duration="r5600"/>'),
    "zero-timescale": _MPD_T.format(dur="PT4S", ts="0", rest='duration="2"/>'),
    "zero-duration": _MPD_T.format(dur="PT4S", ts="1", rest='duration="0"/>'),
    "timeline-r-1e8": _MPD_T.format(dur="PT4S", ts="1", rest=_TIMELINE.format(r="100000000")),
    "timeline-r-minus1-huge-period": _MPD_T.format(dur="PT1000000000S", ts="1",
                                                   rest=_TIMELINE.format(r="-1")),
    "1e11-template-segments": _MPD_T.format(dur="PT100000000S", ts="1000", rest='duration="1"/>'),
}

_DASH_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from speke_packager.errors import SpekePackagerError
from speke_packager.manifests.dash import parse_mpd, representation_segments
try:
    reps = representation_segments(parse_mpd(sys.stdin.buffer.read()))
    print("ok", sum(len(r.media) for r in reps))
except SpekePackagerError as exc:
    print("typed", type(exc).__name__)
"""


@pytest.mark.parametrize("name", sorted(DASH_BUGS))
def test_dash_known_bugs(name: str) -> None:
    """A hostile MPD: a typed ManifestError within seconds and 1 GiB, or a small segment list."""
    import subprocess
    import sys

    from .conftest import ROOT
    try:
        proc = subprocess.run([sys.executable, "-c", _DASH_CHILD], input=DASH_BUGS[name].encode(),
                              capture_output=True, timeout=5, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("hang: no answer within 5 s")
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-400:]
    assert out.startswith("typed") or (out.startswith("ok") and int(out.split()[1]) < 100_000)


# ---- issue 16: the pipeline's own readers, URIs, nesting, the verify side ------------------------
_URI_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


def _uris_target(text: str) -> None:
    """Parse a media playlist, then resolve every URI the way encrypt-vod opens them."""
    from speke_packager.pipeline.hls_job import resolve

    def go() -> None:
        pl = parse_media_playlist(text, path="fuzz.m3u8")
        for seg in pl.segments:
            resolve("a/fuzz.m3u8", seg.uri, what="segment")
            if seg.init is not None:
                resolve("a/fuzz.m3u8", seg.init.uri, what="init section")
    typed_only(go)


@FUZZ
@given(uris=st.lists(_URI_TEXT, min_size=1, max_size=4), init=_URI_TEXT)
def test_fuzz_hls_uris(uris: list[str], init: str) -> None:
    """Any text as segment and EXT-X-MAP URIs (NUL, control characters, '..', schemes): a
    typed error or a package-relative path, never a traceback."""
    body = "".join(f"#EXTINF:2.0,\n{u}\n" for u in uris)
    text = f'#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="{init}"\n{body}#EXT-X-ENDLIST\n'
    _uris_target(text)


def test_resolved_uris_stay_inside() -> None:
    """Control for the target above: what resolve accepts is relative and has no '..'."""
    from speke_packager.errors import ManifestError
    from speke_packager.pipeline.hls_job import resolve

    for uri in ("../../x.ts", "/etc/passwd", "b/../../../x.ts", "http://h/x.ts", "x\x00.ts"):
        with pytest.raises(ManifestError):
            resolve("a/index.m3u8", uri, what="segment")
    assert resolve("a/index.m3u8", "b/../c.ts", what="segment") == "a/c.ts"


def _single_file_target(data: bytes) -> None:
    """The DASH SegmentBase reader (top-level boxes through a descriptor, sidx rewrite)."""
    from speke_packager.media.mp4.boxes import iter_boxes
    from speke_packager.media.mp4.layout import split_single_file
    from speke_packager.media.mp4.sidx import rewrite_sidx

    with tempfile.TemporaryFile() as fh:
        fh.write(data)
        fh.flush()
        fd = fh.fileno()

        def go() -> None:
            init, sidx, frags = split_single_file(fd, "fuzz.mp4")
            assert 0 < init.size <= len(data)
            for off, n in frags:
                assert 0 <= off and off + n <= len(data)
            if sidx is not None:
                body = data[sidx.offset:sidx.offset + sidx.size]
                spans = {off: (off, n) for off, n in frags}
                rewrite_sidx(body, sidx.offset, sidx.offset, spans)
        typed_only(go)
    typed_only(lambda: list(iter_boxes(data)))


def _with_sidx(init: bytes, segs: list[bytes]) -> bytes:
    refs = b"".join(struct.pack(">III", len(s) & 0x7FFFFFFF, 0, 0x90000000) for s in segs)
    sidx = struct.pack(">I4sIIIII", 32 + len(refs), b"sidx", 0, 1, 1000, 0, 0)
    sidx += struct.pack(">HH", 0, len(segs)) + refs
    return init + sidx + b"".join(segs)


@FUZZ
@given(data=st.data())
def test_fuzz_single_file(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(fmp4_seeds())))
    init, segs = fmp4_seeds()[name]
    _single_file_target(apply(_with_sidx(init, segs[:3]), data.draw(mutations)))


def test_single_file_seed_parses() -> None:
    """Control: the unmutated seed is split into its fragments and its sidx rewritten."""
    from speke_packager.media.mp4.layout import split_single_file

    init, segs = fmp4_seeds()["h264-fmp4"]
    with tempfile.TemporaryFile() as fh:
        fh.write(_with_sidx(init, segs[:3]))
        fh.flush()
        _, sidx, frags = split_single_file(fh.fileno(), "seed.mp4")
    assert sidx is not None and len(frags) == len(segs[:3])


_CONTAINERS = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"udta", b"edts",
               b"dinf", b"mvex", b"sinf", b"schi", b"stsd", b"avc1", b"free"]
_trees = st.recursive(
    st.builds(lambda t, p: struct.pack(">I4s", 8 + len(p), t) + p,
              st.sampled_from([b"mvhd", b"tkhd", b"mdhd", b"hdlr", b"tfhd", b"trun", b"senc",
                               b"free"]), st.binary(max_size=40)),
    lambda kids: st.builds(lambda t, cs: struct.pack(">I4s", 8 + sum(map(len, cs)), t)
                           + b"".join(cs), st.sampled_from(_CONTAINERS),
                           st.lists(kids, max_size=3)),
    max_leaves=60)


@FUZZ
@given(tree=_trees, depth=st.integers(0, 2000))
def test_fuzz_nested_boxes(tree: bytes, depth: int) -> None:
    """Random box trees, optionally wrapped in thousands of container levels: the init and
    fragment readers, the encryptor and the verify-side walker end in typed errors."""
    from speke_packager.verify.boxes import read_mp4_facts

    for _ in range(depth):
        tree = struct.pack(">I4s", 8 + len(tree), b"trak") + tree
    init = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0) + \
        struct.pack(">I4s", 8 + len(tree), b"moov") + tree
    _init_target(init)
    typed_only(lambda: read_mp4_facts(init))
    base = fmp4_seeds()["h264-fmp4"][0]
    enc = Mp4Encryptor(base, Scheme.CBCS, _encryptable(base), iv_seed=b"f")
    seg = struct.pack(">I4s", 8 + len(tree), b"moof") + tree + struct.pack(">I4s", 16, b"mdat") \
        + bytes(8)
    typed_only(lambda: enc.encrypt_segment(seg, segment_index=0))


@FUZZ
@given(data=st.data())
def test_fuzz_decrypt_side(data: st.DataObject) -> None:
    """verify reads packages it did not make: the decryptor and the facts reader on mutated
    encrypted fMP4."""
    from speke_packager.media.mp4.decryptor import Mp4Decryptor
    from speke_packager.verify.boxes import read_mp4_facts

    name = data.draw(st.sampled_from(["h264-fmp4", "h264-aac-fmp4"]))
    init, segs = fmp4_seeds()[name]
    enc = Mp4Encryptor(init, Scheme.CBCS, _encryptable(init), iv_seed=b"f")
    e_init = enc.encrypted_init()
    e_seg = enc.encrypt_segment(segs[0], segment_index=0)
    m_init = apply(e_init, data.draw(mutations))
    m_seg = apply(e_seg, data.draw(mutations))
    typed_only(lambda: read_mp4_facts(m_init + m_seg))
    typed_only(lambda: Mp4Decryptor(m_init, {CK.kid: KEY}).decrypt_segment(m_seg))
    typed_only(lambda: Mp4Decryptor(e_init, {CK.kid: KEY}).decrypt_segment(m_seg))


@FUZZ
@given(doc=st.builds(apply, st.sampled_from([MPD_TEMPLATE.encode(), MPD_LIST.encode()]),
                     mutations))
def test_fuzz_mpd_urls(doc: bytes) -> None:
    """Every URL an MPD yields goes through the shared resolver (typed errors only)."""
    from speke_packager.pipeline.hls_job import resolve

    def go() -> None:
        for rep in representation_segments(parse_mpd(doc, path="f.mpd"), path="f.mpd"):
            for seg in [rep.init, rep.index, *rep.media[:50]]:
                if seg is not None:
                    resolve("f.mpd", seg.url, what="segment")
    typed_only(go)


def test_memory_bound_catches_a_huge_allocation() -> None:
    """Control: the limit the fuzz cases run under is real."""
    with pytest.raises(MemoryError):
        bytearray(3 << 30)
    assert os.environ.get("SPEKE_FUZZ_EXPLORE") or FUZZ.derandomize


def test_decrypt_side_truncated_senc() -> None:
    """Found by the 2,000-example pass (derandomized): a flipped byte in the encrypted segment
    made the decryptor read subsample entries past the end of senc (struct.error)."""
    from speke_packager.media.mp4.decryptor import Mp4Decryptor

    init, segs = fmp4_seeds()["h264-fmp4"]
    enc = Mp4Encryptor(init, Scheme.CBCS, _encryptable(init), iv_seed=b"f")
    e_init = enc.encrypted_init()
    seg = enc.encrypt_segment(segs[0], segment_index=0)
    for at in [761]:
        bad = apply(seg, [Mutation(0, at, b"")])
        typed_only(lambda bad=bad: Mp4Decryptor(e_init, {CK.kid: KEY}).decrypt_segment(bad))
    # every single-byte flip of the moof (senc included) is a typed error or a result
    moof_end = seg.find(b"mdat") - 4
    for at in range(moof_end):
        bad = apply(seg, [Mutation(0, at, b"")])
        typed_only(lambda bad=bad: Mp4Decryptor(e_init, {CK.kid: KEY}).decrypt_segment(bad))
