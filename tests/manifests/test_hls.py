"""HLS playlist reader/writer: round trips keep foreign tags; key lines are written by us."""

from __future__ import annotations

import base64
from uuid import UUID

import pytest

from speke_packager._hls_attrs import Quoted, format_attribute_list, parse_attribute_list
from speke_packager.constants import (
    KEYFORMAT_FAIRPLAY,
    KEYFORMAT_PLAYREADY,
    KEYFORMAT_WIDEVINE,
    PLAYREADY,
    WIDEVINE,
    DrmSystem,
    Scheme,
)
from speke_packager.drm.pssh import build_pssh
from speke_packager.errors import ManifestError
from speke_packager.manifests.hls import (
    ByteRange,
    HlsKey,
    parse_media_playlist,
    parse_multivariant_playlist,
    render_media_playlist,
    render_multivariant_playlist,
    retarget,
)
from speke_packager.manifests.hls_signaling import hls_keys, hls_session_keys
from speke_packager.model import ContentKey, DrmSignal, KeyEntry

MEDIA = """#EXTM3U
#EXT-X-VERSION:4
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PLAYLIST-TYPE:VOD
#X-UNKNOWN-HEADER:abc
#EXT-X-MAP:URI="init.mp4",BYTERANGE="700@0"
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z
#EXTINF:2.000,
#EXT-X-BYTERANGE:1000@700
all.mp4
#EXTINF:2.000,
#EXT-X-BYTERANGE:900
all.mp4
#EXT-X-DISCONTINUITY
#X-CUSTOM:1
#EXTINF:1.5,title
#EXT-X-BYTERANGE:500@1600
all.mp4
#EXT-X-ENDLIST
"""

KID1 = UUID("00112233-4455-6677-8899-aabbccddeeff")
KID2 = UUID("10112233-4455-6677-8899-aabbccddeeff")


def _entry(kid: UUID, *signals: DrmSignal) -> KeyEntry:
    return KeyEntry(key=ContentKey(kid=kid, key=bytes(range(16))), drm=signals)


def test_attribute_writer_quotes_by_type() -> None:
    text = format_attribute_list([("METHOD", "SAMPLE-AES"), ("URI", Quoted("skd://a,b")),
                                  ("IV", b"\x00" * 15 + b"\x01"), ("BANDWIDTH", 5)])
    assert text == 'METHOD=SAMPLE-AES,URI="skd://a,b",IV=0x00000000000000000000000000000001,' \
                   "BANDWIDTH=5"
    assert parse_attribute_list(text)["URI"] == "skd://a,b"
    with pytest.raises(ManifestError):
        format_attribute_list([("URI", Quoted('a"b'))])
    with pytest.raises(ManifestError):
        format_attribute_list([("METHOD", "A B")])
    with pytest.raises(ManifestError):
        parse_attribute_list('URI="x",URI="y"')


def test_media_playlist_round_trip_keeps_everything() -> None:
    pl = parse_media_playlist(MEDIA)
    assert [s.sequence for s in pl.segments] == [7, 8, 9]
    assert [s.byterange for s in pl.segments] == [ByteRange(1000, 700), ByteRange(900, 1700),
                                                   ByteRange(500, 1600)]
    assert pl.segments[2].discontinuity and not pl.segments[0].discontinuity
    text = render_media_playlist(pl, [[], [], []])
    lines = text.splitlines()
    for keep in ("#X-UNKNOWN-HEADER:abc", "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z",
                 "#EXT-X-DISCONTINUITY", "#X-CUSTOM:1", "#EXTINF:1.5,title", "#EXT-X-ENDLIST",
                 "#EXT-X-PLAYLIST-TYPE:VOD"):
        assert keep in lines
    assert "#EXT-X-VERSION:6" in lines  # EXT-X-MAP needs 6
    assert lines.count("#EXT-X-KEY:METHOD=NONE") == 0
    again = parse_media_playlist(text)
    assert [(s.uri, s.byterange, s.duration) for s in again.segments] == \
        [(s.uri, s.byterange, s.duration) for s in pl.segments]


def test_every_keyformat_written_at_each_key_change() -> None:
    pl = parse_media_playlist(MEDIA)
    iv = bytes(range(16))
    a = [HlsKey("SAMPLE-AES", "skd://one", keyformat=KEYFORMAT_FAIRPLAY, keyformatversions="1"),
         HlsKey("SAMPLE-AES", "https://k/1", iv=iv, keyformat="identity")]
    b = [HlsKey("SAMPLE-AES", "skd://two", keyformat=KEYFORMAT_FAIRPLAY, keyformatversions="1"),
         HlsKey("SAMPLE-AES", "https://k/2", iv=iv, keyformat="identity")]
    text = render_media_playlist(pl, [a, a, b])
    lines = text.splitlines()
    keys = [ln for ln in lines if ln.startswith("#EXT-X-KEY")]
    assert len(keys) == 4
    assert lines.index(keys[0]) > lines.index(next(ln for ln in lines
                                                    if ln.startswith("#EXT-X-MAP")))
    # the second set comes right before the third segment's EXTINF, after its other tags
    assert lines[lines.index(keys[3]) + 1] == "#EXTINF:1.5,title"
    assert 'URI="skd://two"' in keys[2] and "IV=0x000102030405060708090A0B0C0D0E0F" in keys[3]
    parsed = [HlsKey.parse(k) for k in keys]
    assert parsed[1].iv == iv and parsed[2].keyformat == KEYFORMAT_FAIRPLAY
    with pytest.raises(ManifestError, match="same KEYFORMAT"):
        render_media_playlist(pl, [a + a, a, a])


def test_clear_lead_then_key_and_aes128_map_stays_clear() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"i1.mp4\"\n#EXTINF:2,\ns1.m4s\n" \
           "#EXTINF:2,\ns2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"i2.mp4\"\n#EXTINF:2,\n" \
           "s3.m4s\n#EXT-X-ENDLIST\n"
    pl = parse_media_playlist(text)
    k = [HlsKey("AES-128", "key.bin", iv=b"\x01" * 16)]
    out = render_media_playlist(pl, [[], k, k]).splitlines()
    i_none = out.index("#EXT-X-KEY:METHOD=NONE")
    assert out[i_none + 1] == '#EXT-X-MAP:URI="i2.mp4"'
    assert sum(1 for ln in out if ln.startswith("#EXT-X-KEY:METHOD=AES-128")) == 2
    assert out.index('#EXT-X-MAP:URI="i1.mp4"') < out.index(
        next(ln for ln in out if ln.startswith("#EXT-X-KEY:METHOD=AES-128")))


def test_retarget_moves_byte_ranges() -> None:
    pl = parse_media_playlist(MEDIA)
    new = retarget(pl, {("init.mp4", ByteRange(700, 0)): ByteRange(800, 0),
                        ("all.mp4", ByteRange(1000, 700)): ByteRange(1100, 800)})
    text = render_media_playlist(new, [[], [], []])
    assert '#EXT-X-MAP:URI="init.mp4",BYTERANGE="800@0"' in text
    assert "#EXT-X-BYTERANGE:1100@800" in text and "#EXT-X-BYTERANGE:900@1700" in text


@pytest.mark.parametrize("bad, why", [
    ("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:2,\na.ts\n", "already encrypted"),
    ("#EXTM3U\n#EXTINF:x,\na.ts\n", "EXTINF"),
    ("EXTM3U\n", "EXTM3U"),
    ("#EXTM3U\n#EXTINF:2,\n", "ends inside"),
    ("#EXTM3U\n#EXTINF:2,\n#EXT-X-BYTERANGE:100\na.ts\n", "without offset"),
])
def test_bad_media_playlists(bad: str, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        parse_media_playlist(bad)


MASTER = """#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",DEFAULT=YES,URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=320x180,CODECS="avc1.64000c,mp4a.40.2",AUDIO="aud"
video/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=50000,URI="video/iframes.m3u8"
"""


def test_multivariant_session_keys_and_refs() -> None:
    mv = parse_multivariant_playlist(MASTER)
    assert [(r.uri, r.kind) for r in mv.refs] == [("audio/index.m3u8", "rendition"),
                                                   ("video/index.m3u8", "variant"),
                                                   ("video/iframes.m3u8", "iframe")]
    k = HlsKey("SAMPLE-AES", "skd://x", keyformat=KEYFORMAT_FAIRPLAY, keyformatversions="1")
    text = render_multivariant_playlist(mv, [k, k])
    lines = text.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-VERSION:5"]
    sk = [ln for ln in lines if ln.startswith("#EXT-X-SESSION-KEY")]
    assert len(sk) == 1 and lines.index(sk[0]) < lines.index(MASTER.splitlines()[2])
    for ln in MASTER.splitlines()[1:]:
        assert ln in lines
    with pytest.raises(ManifestError):
        render_multivariant_playlist(mv, [HlsKey("NONE")])


def test_signaling_built_per_drm() -> None:
    wv_pssh = build_pssh(WIDEVINE, b"\x12\x10" + KID1.bytes)
    pro = "<WRMHEADER/>".encode("utf-16-le")
    pr_pssh = build_pssh(PLAYREADY, pro)
    e = _entry(KID1, DrmSignal(DrmSystem.WIDEVINE, WIDEVINE, pssh=wv_pssh),
               DrmSignal(DrmSystem.PLAYREADY, PLAYREADY, pssh=pr_pssh))
    iv = b"\x07" * 16
    keys = hls_keys(e, Scheme.CBCS, iv=iv)
    assert [k.keyformat for k in keys] == [KEYFORMAT_WIDEVINE, KEYFORMAT_PLAYREADY]
    assert keys[0].uri == "data:text/plain;base64," + base64.b64encode(wv_pssh).decode()
    assert keys[1].uri == "data:text/plain;charset=UTF-16;base64," + base64.b64encode(pro).decode()
    assert all(k.iv == iv and k.keyid == KID1.bytes and k.method == "SAMPLE-AES" for k in keys)
    ctr = hls_keys(e, Scheme.CENC, iv=iv)
    assert all(k.iv is None and k.method == "SAMPLE-AES-CTR" for k in ctr)
    with pytest.raises(ManifestError):
        hls_keys(e, Scheme.SAMPLE_AES, iv=iv)  # Widevine on TS cannot be signalled


def test_signaling_v2_verbatim_and_v1_built() -> None:
    line = '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://kid",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"'
    master = line.replace("EXT-X-KEY", "EXT-X-SESSION-KEY")
    e = _entry(KID1, DrmSignal(DrmSystem.FAIRPLAY, UUID(int=1), hls_media=line,
                               hls_master=master))
    keys = hls_keys(e, Scheme.CBCS, iv=b"\x00" * 16)
    assert [k.render() for k in keys] == [line]
    assert hls_session_keys(e, Scheme.CBCS, iv=None)[0].render("#EXT-X-SESSION-KEY") == master
    with pytest.raises(ManifestError, match="METHOD=SAMPLE-AES"):
        hls_keys(e, Scheme.CENC, iv=None)
    v1 = _entry(KID2, DrmSignal(DrmSystem.AES128, UUID(int=2), uri_ext_x_key="https://k/2",
                                key_format="identity", key_format_versions="1"))
    (k,) = hls_keys(v1, Scheme.AES_128, iv=b"\x01" * 16)
    assert k.render() == ('#EXT-X-KEY:METHOD=AES-128,URI="https://k/2",'
                          'IV=0x01010101010101010101010101010101,KEYFORMAT="identity",'
                          'KEYFORMATVERSIONS="1"')
    raw = _entry(KID2)
    with pytest.raises(ManifestError, match="--key-uri"):
        hls_keys(raw, Scheme.AES_128, iv=b"\x01" * 16)
    assert hls_keys(raw, Scheme.AES_128, iv=b"\x01" * 16, key_uri="k.bin")[0].uri == "k.bin"


def test_aes128_map_after_extinf_keeps_the_segment_encrypted() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"i1.mp4\"\n#EXTINF:2,\ns1.m4s\n" \
           "#EXTINF:2,\n#EXT-X-MAP:URI=\"i2.mp4\"\ns2.m4s\n"
    pl = parse_media_playlist(text)
    k = [HlsKey("AES-128", "key.bin", iv=b"\x01" * 16)]
    out = render_media_playlist(pl, [k, k]).splitlines()
    i_map2 = out.index('#EXT-X-MAP:URI="i2.mp4"')
    assert out[i_map2 - 1] == "#EXT-X-KEY:METHOD=NONE"
    assert out[i_map2 + 1].startswith("#EXT-X-KEY:METHOD=AES-128")
    assert out[-1] == "s2.m4s"
