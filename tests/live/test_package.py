"""LivePackager on FFmpeg's live-style HLS output with keys from the local SPEKE server, rotating
every 4 s (three key periods of two 2 s segments): cenc and cbcs publish HLS fMP4 and DASH from
the same files, AES-128 and SAMPLE-AES publish HLS MPEG-TS.

Each period's files are decrypted by FFmpeg 8 (fMP4: that period's init + its segments with
``-decryption_key``; TS: openssl per segment, FFmpeg's HLS reader on a one-period copy of our
playlist) and the decoded frames compared with the clear source's; another period's key must not
give them. The playlists and the MPD are parsed to show each key change, the key server's
request count shows one SPEKE request per period made before its boundary, and close() ends
both manifests."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from lxml import etree

from fixtures.media import framemd5, packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.constants import (
    KEYFORMAT_CLEARKEY,
    KEYFORMAT_IDENTITY,
    KEYFORMAT_PLAYREADY,
    KEYFORMAT_WIDEVINE,
    NS_CENC,
    NS_MPD,
    DrmSystem,
    Scheme,
)
from speke_packager.errors import KeyRotationError, ManifestError, UsageError
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer, parse_faults
from speke_packager.media.mp4.boxes import iter_boxes, parse_tree
from speke_packager.pipeline.live import (
    FolderWriter,
    LivePackager,
    LiveRendition,
    LiveWriter,
    SpekeKeySource,
)
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import SEGMENT, Rendition
from .helpers import contract, hls_frames, keys_per_segment, openssl_decrypt

pytestmark = pytest.mark.interop

INTERVAL = 4.0  # periods 0, 1, 2: two segments each
LEAD = 2.0  # the next period is fetched one segment before its boundary
M = f"{{{NS_MPD}}}"
FMP4_DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY, DrmSystem.AES128)


def _source(ks: KeyServer, cid: str, scheme: Scheme, drms: tuple[DrmSystem, ...],
            *, shared: bool = False) -> SpekeKeySource:
    return SpekeKeySource(SpekeClient(ks.speke_url, retries=0),
                          contract(cid, scheme, drms, shared=shared))


def _schedule() -> RotationSchedule:
    return RotationSchedule(interval=INTERVAL, lead=LEAD)


def _frames(path: Path, stream: str, key: bytes | None = None) -> list[str]:
    try:
        return framemd5(path, stream, keys=key)
    except RuntimeError:
        return []


def _uris(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def _maps(text: str) -> dict[str, str]:
    """segment URI -> the EXT-X-MAP URI in effect."""
    cur, out = "", {}
    for ln in text.splitlines():
        if ln.startswith("#EXT-X-MAP:"):
            cur = ln.split('URI="', 1)[1].split('"', 1)[0]
        elif ln and not ln.startswith("#"):
            out[ln] = cur
    return out


def _tenc_kid(init: bytes) -> UUID:
    moov = next(b for b in iter_boxes(init) if b.type == b"moov")
    node = parse_tree(init, moov)
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == b"tenc":
            return UUID(bytes=bytes(n.payload[8:24]))
        stack.extend(n.children or ())
    raise AssertionError("no tenc")


def _decrypt_periods(out: Path, tmp: Path, name: str, stream: str, segs: list[Any],
                     keys: list[bytes], r: Rendition) -> None:
    """Each period's init names its KID, and init + its two segments decrypt (FFmpeg 8) to the
    clear frames with that period's key only."""
    inits = [(out / f"{name}/init-{p}.mp4").read_bytes() for p in range(3)]
    assert [_tenc_kid(i) for i in inits] == [segs[2 * p].kid for p in range(3)]
    clear_init = r.init.read_bytes()  # type: ignore[union-attr]
    for p in range(3):
        body = [(out / segs[i].uri).read_bytes() for i in (2 * p, 2 * p + 1)]
        assert all(r.data(i) not in b for i, b in zip((2 * p, 2 * p + 1), body, strict=True))
        enc = tmp / f"{name}-p{p}.mp4"
        enc.write_bytes(inits[p] + b"".join(body))
        clear = tmp / f"{name}-p{p}-clear.mp4"
        clear.write_bytes(clear_init + r.data(2 * p) + r.data(2 * p + 1))
        ref = _frames(clear, stream)
        assert len(ref) > 50
        assert _frames(enc, stream, keys[p]) == ref
        assert _frames(enc, stream, keys[(p + 1) % 3]) != ref  # another period's key


def _shaka_decrypts(enc: Path, kid: UUID, key: bytes, wrong: bytes, clear: Path,
                    tmp: Path) -> None:
    """Shaka Packager's raw-key decryption of ``enc`` gives the clear frames with ``key`` and
    not with ``wrong`` (it exits 0 with a wrong key: frames decide)."""
    packager = find_tool("packager", PACKAGER)
    assert packager is not None
    ref = _frames(clear, "v:0")
    for k, good in ((key, True), (wrong, False)):
        dec = tmp / f"shaka-{'good' if good else 'bad'}.mp4"
        res = subprocess.run([packager, f"in={enc},stream=video,output={dec}",
                              "--enable_raw_key_decryption",
                              packager_key_flags(f"--keys=label=a:key_id={kid.hex}:key={k.hex()}")],
                             capture_output=True, check=False)
        if good:
            assert res.returncode == 0, res.stderr[-1500:]
            assert _frames(dec, "v:0") == ref
        else:
            assert res.returncode != 0 or _frames(dec, "v:0") != ref


def _package_fmp4(ks: KeyServer, media: dict[str, Rendition], out: Path, scheme: Scheme,
                  cid: str, **kw: Any) -> tuple[LivePackager, dict[str, list[Any]]]:
    """Both fMP4 renditions, segment by segment (video then audio), checking before the first
    segment of each period that its keys were already fetched (one request per period)."""
    rends = [LiveRendition("video", media["video"].init.read_bytes()),  # type: ignore[union-attr]
             LiveRendition("audio", media["audio"].init.read_bytes(), language="en")]  # type: ignore[union-attr]
    drms = FMP4_DRMS if scheme is Scheme.CBCS else FMP4_DRMS[:3]  # identity keys: not cenc
    pk = LivePackager(_source(ks, cid, scheme, drms), _schedule(), scheme, out, rends,
                      clearkey_license_url=ks.clearkey_license_url, iv_seed=b"live-package",
                      **kw)
    published: dict[str, list[Any]] = {"video": [], "audio": []}
    for i in range(6):
        period = int(i * SEGMENT // INTERVAL)
        if i and i * SEGMENT % INTERVAL == 0:  # the first segment of a new period
            assert pk.session.ready(period, timeout=10)  # prefetched, not fetched now
            assert ks.request_count("/speke") == period + 1
        for name in ("video", "audio"):
            published[name].append(pk.add_segment(name, media[name].data(i),
                                                  start_time=i * SEGMENT, duration=SEGMENT))
    return pk, published


@pytest.mark.parametrize(("scheme", "addressing"), [(Scheme.CBCS, "number"),
                                                    (Scheme.CENC, "time")])
def test_fmp4_three_periods_hls_and_dash(scheme: Scheme, addressing: str, ks: KeyServer,
                                         live_media: dict[str, Rendition], tmp_path: Path,
                                         check_mpd: Callable[[Any], None]) -> None:
    cid = f"pkg-{scheme.value}"
    out = tmp_path / "out"
    pk, pub = _package_fmp4(ks, live_media, out, scheme, cid, window=100,
                            dash_addressing=addressing)
    live_mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
    check_mpd(live_mpd)
    assert live_mpd.get("type") == "dynamic"
    for attr in ("availabilityStartTime", "publishTime", "timeShiftBufferDepth",
                 "minimumUpdatePeriod"):
        assert live_mpd.get(attr), attr
    utc = live_mpd.find(f"{M}UTCTiming")
    assert utc is not None and utc.get("value") == live_mpd.get("publishTime")
    pk.close()
    # one SPEKE request per key period (0, 1, 2 and the prefetch of 3), whatever the number of
    # renditions and formats
    assert ks.request_count("/speke") == 4 and pk.fetches == 4
    for name, stream in (("video", "v:0"), ("audio", "a:0")):
        segs = pub[name]
        r = live_media[name]
        assert [s.period for s in segs] == [0, 0, 1, 1, 2, 2]
        kids = [segs[i].kid for i in (0, 2, 4)]
        keys = [ks.key_for(cid, k) for k in kids]
        assert len(set(kids)) == 3 and len(set(keys)) == 3
        assert [s.key_changed for s in segs] == [True, False] * 3
        _decrypt_periods(out, tmp_path, name, stream, segs, keys, r)
        if name == "video":  # a second decryptor on a rotated period: Shaka Packager
            _shaka_decrypts(tmp_path / "video-p1.mp4", segs[2].kid, keys[1], keys[0],
                            tmp_path / "video-p1-clear.mp4", tmp_path)
        # HLS: the new EXT-X-MAP and the full key set at each period's first segment
        text = (out / f"{name}.m3u8").read_text()
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
        assert _uris(text) == [s.uri for s in segs]
        maps = _maps(text)
        assert [maps[s.uri] for s in segs] == [f"{name}/init-{s.period}.mp4" for s in segs]
        per_seg = keys_per_segment(text)
        method = "SAMPLE-AES" if scheme is Scheme.CBCS else "SAMPLE-AES-CTR"
        for s in segs:
            tags = per_seg[s.uri]
            assert {KEYFORMAT_WIDEVINE, KEYFORMAT_CLEARKEY, KEYFORMAT_PLAYREADY} <= set(tags)
            assert all(t.method == method for t in tags.values())
            assert tags[KEYFORMAT_CLEARKEY].keyid == s.kid.bytes
            if scheme is Scheme.CBCS:
                assert tags[KEYFORMAT_IDENTITY].uri == ks.key_url(s.kid)
        assert text.count("#EXT-X-KEY:") == 3 * len(per_seg[segs[0].uri])  # once per period
        # DASH: one Period per key period, its default_KID that period's, the same files
        mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
        periods = mpd.findall(f"{M}Period")
        assert [p.get("start") for p in periods] == ["PT0S", "PT4S", "PT8S"]
        for p, period in enumerate(periods):
            rep = period.find(f".//{M}Representation[@id='{name}']")
            assert rep is not None
            aset = rep.getparent()
            cps = aset.findall(f"{M}ContentProtection")
            assert cps[0].get(f"{{{NS_CENC}}}default_KID") == str(kids[p])
            assert cps[0].get("value") == scheme.value
            st = rep.find(f"{M}SegmentTemplate")
            assert st.get("initialization") == f"{name}/init-{p}.mp4"
            s_el = st.findall(f"{M}SegmentTimeline/{M}S")
            times = []
            for s in s_el:
                t = int(s.get("t"))
                for _ in range(int(s.get("r", "0")) + 1):
                    times.append(t)
                    t += int(s.get("d"))
            assert len(times) == 2
            assert int(st.get("presentationTimeOffset")) == times[0]
            if addressing == "number":
                assert st.get("media") == f"{name}/$Number$.m4s"
                assert int(st.get("startNumber")) == 2 * p
                files = [f"{name}/{n}.m4s" for n in (2 * p, 2 * p + 1)]
            else:
                assert st.get("media") == f"{name}/t$Time$.m4s"
                files = [f"{name}/t{t}.m4s" for t in times]
            assert files == [segs[i].uri for i in (2 * p, 2 * p + 1)]
    # close(): a static MPD
    assert mpd.get("type") == "static" and mpd.get("mediaPresentationDuration")
    assert mpd.get("minimumUpdatePeriod") is None and mpd.get("timeShiftBufferDepth") is None
    assert mpd.find(f"{M}UTCTiming") is None
    check_mpd(mpd)
    master = (out / "master.m3u8").read_text()
    assert "#EXT-X-STREAM-INF:" in master and 'TYPE=AUDIO' in master
    assert _uris(master) == ["video.m3u8"] and 'URI="audio.m3u8"' in master


def _package_ts(ks: KeyServer, media: dict[str, Rendition], out: Path, scheme: Scheme,
                cid: str) -> list[Any]:
    with LivePackager(_source(ks, cid, scheme, (DrmSystem.AES128,), shared=True), _schedule(),
                      scheme, out, [LiveRendition("main")], window=100) as pk:
        segs = [pk.add_segment("main", media["ts"].data(i), start_time=i * SEGMENT,
                               duration=SEGMENT) for i in range(6)]
        assert pk.dash is False
    assert ks.request_count("/speke") == 4
    assert not (out / "manifest.mpd").exists()
    return segs


def _check_ts_playlist(ks: KeyServer, cid: str, text: str, segs: list[Any]) -> None:
    assert [s.period for s in segs] == [0, 0, 1, 1, 2, 2]
    assert text.rstrip().endswith("#EXT-X-ENDLIST") and text.count("#EXT-X-KEY:") == 3
    per_seg = keys_per_segment(text)
    for s in segs:
        assert per_seg[s.uri][KEYFORMAT_IDENTITY].uri == ks.key_url(s.kid)
    assert len({s.kid for s in segs}) == 3


def test_aes128_ts_three_periods(ks: KeyServer, live_media: dict[str, Rendition],
                                 clear_frames: Callable[..., list[str]], tmp_path: Path) -> None:
    out = tmp_path / "out"
    segs = _package_ts(ks, live_media, out, Scheme.AES_128, "pkg-aes")
    text = (out / "main.m3u8").read_text()
    _check_ts_playlist(ks, "pkg-aes", text, segs)
    per_seg = keys_per_segment(text)
    r = live_media["ts"]
    for i, s in enumerate(segs):
        iv = per_seg[s.uri][KEYFORMAT_IDENTITY].iv
        assert iv is not None
        data = (out / s.uri).read_bytes()
        assert openssl_decrypt(data, ks.key_for("pkg-aes", s.kid), iv) == r.data(i)
        other = segs[(i + 2) % 6].kid  # another period's key
        assert openssl_decrypt(data, ks.key_for("pkg-aes", other), iv) != r.data(i)
    assert hls_frames(out / "main.m3u8", "v:0") == clear_frames(r.playlist, "v:0")


def test_sample_aes_ts_three_periods(ks: KeyServer, live_media: dict[str, Rendition],
                                     clear_frames: Callable[..., list[str]],
                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    segs = _package_ts(ks, live_media, out, Scheme.SAMPLE_AES, "pkg-sa")
    text = (out / "main.m3u8").read_text()
    _check_ts_playlist(ks, "pkg-sa", text, segs)
    r = live_media["ts"]
    clear_v = clear_frames(r.playlist, "v:0")
    head = [ln for ln in text.splitlines()[:4] if not ln.startswith(("#EXT-X-KEY",
                                                                   "#EXT-X-PROGRAM"))]
    tags = [ln for ln in text.splitlines() if ln.startswith("#EXT-X-KEY")]
    # each period alone, through FFmpeg's HLS reader, with its own tag and with the next
    # period's (the last segment repeated after a discontinuity: FFmpeg leaves the last video
    # PES before a key change encrypted, media-encryption.md §9)
    for p in range(3):
        a_, b_ = segs[2 * p].uri, segs[2 * p + 1].uri
        for tag, good in ((tags[p], True), (tags[(p + 1) % 3], False)):
            copy = out / f"period{p}.m3u8"
            copy.write_text("\n".join([*head, tag, "#EXTINF:2.000,", a_, "#EXTINF:2.000,", b_,
                                       "#EXT-X-DISCONTINUITY", "#EXTINF:2.000,", b_,
                                       "#EXT-X-ENDLIST"]) + "\n")
            got = hls_frames(copy, "v:0")
            want = clear_v[100 * p:100 * p + 100]
            if good:
                assert got is not None and got[:100] == want
            else:
                assert got is None or sum(x == y for x, y in zip(got[:100], want,
                                                                 strict=False)) < 10


def test_window_slides_and_old_files_go(ks: KeyServer, live_media: dict[str, Rendition],
                                        tmp_path: Path, check_mpd: Callable[[Any], None]
                                        ) -> None:
    out = tmp_path / "out"
    pk, pub = _package_fmp4(ks, live_media, out, Scheme.CBCS, "pkg-win", window=2, retain=1)
    text = (out / "video.m3u8").read_text()
    assert "#EXT-X-MEDIA-SEQUENCE:4" in text and _uris(text) == ["video/4.m4s", "video/5.m4s"]
    assert '#EXT-X-MAP:URI="video/init-2.mp4"' in text and text.count("#EXT-X-KEY:") == 4
    mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
    check_mpd(mpd)
    assert [p.get("id") for p in mpd.findall(f"{M}Period")] == ["p2"]
    # segments 0..2 left every manifest more than one segment ago: deleted; 3 is retained
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for name in ("video", "audio"):
        assert {f"{name}/{i}.m4s" for i in range(3)}.isdisjoint(names)
        assert {f"{name}/{i}.m4s" for i in range(3, 6)} <= names
        assert f"{name}/init-0.mp4" not in names and f"{name}/init-2.mp4" in names
    assert not [n for n in names if "/." in n or n.startswith(".")]  # no temp file left
    pk.close()
    assert pub["video"][-1].uri == "video/5.m4s"


def test_threads_publish_a_valid_package(ks: KeyServer, live_media: dict[str, Rendition],
                                         tmp_path: Path, check_mpd: Callable[[Any], None]
                                         ) -> None:
    """Video and audio handed over from two threads at once: the same files, playlists and
    Periods as one thread gives, each period decrypting with its key; one request per period."""
    out = tmp_path / "out"
    rends = [LiveRendition(n, live_media[n].init.read_bytes())  # type: ignore[union-attr]
             for n in ("video", "audio")]
    errors: list[BaseException] = []
    pub: dict[str, list[Any]] = {"video": [], "audio": []}
    with LivePackager(_source(ks, "pkg-thr", Scheme.CBCS, FMP4_DRMS), _schedule(), Scheme.CBCS,
                      out, rends, clearkey_license_url=ks.clearkey_license_url,
                      window=100) as pk:
        def feed(name: str) -> None:
            try:
                for i in range(6):
                    pub[name].append(pk.add_segment(name, live_media[name].data(i),
                                                    start_time=i * SEGMENT, duration=SEGMENT))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=feed, args=(n,)) for n in ("video", "audio")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert ks.request_count("/speke") == 4
    mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
    check_mpd(mpd)
    assert [p.get("id") for p in mpd.findall(f"{M}Period")] == ["p0", "p1", "p2"]
    for name, stream in (("video", "v:0"), ("audio", "a:0")):
        segs = pub[name]
        assert [s.uri for s in segs] == [f"{name}/{i}.m4s" for i in range(6)]
        assert _uris((out / f"{name}.m3u8").read_text()) == [s.uri for s in segs]
        keys = [ks.key_for("pkg-thr", segs[2 * p].kid) for p in range(3)]
        _decrypt_periods(out, tmp_path, name, stream, segs, keys, live_media[name])


class _Recorder:
    """A LiveWriter that records the order of writes (on top of a folder)."""

    def __init__(self, root: Path) -> None:
        self.inner = FolderWriter(root)
        self.log: list[str] = []

    def write(self, rel_path: str, data: bytes) -> None:
        self.inner.write(rel_path, data)
        self.log.append(rel_path)

    def delete(self, rel_path: str) -> None:
        self.inner.delete(rel_path)
        self.log.append(f"-{rel_path}")


def test_publication_order_and_failed_key_fetch(ks: KeyServer,
                                                live_media: dict[str, Rendition],
                                                tmp_path: Path) -> None:
    """Init, then segment, then manifests; when the next period's keys cannot be had the
    segment raises KeyRotationError and nothing of it is published (no clear segment, no
    segment under a key the manifests do not announce)."""
    rec = _Recorder(tmp_path / "out")
    assert isinstance(rec, LiveWriter)
    rends = [LiveRendition("video", live_media["video"].init.read_bytes())]  # type: ignore[union-attr]
    pk = LivePackager(_source(ks, "pkg-fail", Scheme.CENC, FMP4_DRMS[:3]),
                      RotationSchedule(interval=INTERVAL, lead=0.0), Scheme.CENC, rec, rends,
                      prefetch=False)
    for i in range(2):
        pk.add_segment("video", live_media["video"].data(i), start_time=i * SEGMENT,
                       duration=SEGMENT)
    assert rec.log[:5] == ["video/init-0.mp4", "video/0.m4s", "video.m3u8", "master.m3u8",
                           "manifest.mpd"]
    assert rec.log[5] == "video/1.m4s"  # then the manifests (the multivariant when it changed)
    assert set(rec.log[6:]) <= {"video.m3u8", "master.m3u8", "manifest.mpd"}
    assert rec.log[-1] == "manifest.mpd"
    before = list(rec.log)
    ks.faults = parse_faults(["status=500"])
    with pytest.raises(KeyRotationError):
        pk.add_segment("video", live_media["video"].data(2), start_time=2 * SEGMENT,
                       duration=SEGMENT)
    assert rec.log == before
    assert not (tmp_path / "out/video/2.m4s").exists()
    text = (tmp_path / "out/video.m3u8").read_text()
    assert _uris(text) == ["video/0.m4s", "video/1.m4s"]
    with pytest.raises(UsageError):  # sequence numbers stay consecutive
        pk.add_segment("video", live_media["video"].data(3), start_time=3 * SEGMENT,
                       duration=SEGMENT, sequence=3)
    pk.close()
    assert (tmp_path / "out/video.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")


def test_bad_configurations(ks: KeyServer, live_media: dict[str, Rendition],
                            tmp_path: Path) -> None:
    src = _source(ks, "pkg-bad", Scheme.CBCS, FMP4_DRMS)
    init = live_media["video"].init.read_bytes()  # type: ignore[union-attr]
    bad: list[tuple[Scheme, list[LiveRendition], dict[str, Any]]] = [
        (Scheme.CBCS, [], {}),
        (Scheme.CBCS, [LiveRendition("v", init), LiveRendition("v", init)], {}),
        (Scheme.CBCS, [LiveRendition("../v", init)], {}),
        (Scheme.CBCS, [LiveRendition("main")], {}),  # cbcs over TS
        (Scheme.SAMPLE_AES, [LiveRendition("v", init)], {}),
        (Scheme.AES_128, [LiveRendition("main")], {"dash": True}),
        (Scheme.CBCS, [LiveRendition("v", init)], {"window": 0}),
        (Scheme.CBCS, [LiveRendition("v", init)], {"dash_addressing": "index"}),
        (Scheme.CBCS, [LiveRendition("master", init)], {}),  # master.m3u8 is taken
        (Scheme.CBCS, [LiveRendition("v", init)], {"mpd_name": "dash/live.mpd"}),
        (Scheme.CBCS, [LiveRendition("v", init)], {"utc_timing": "ntp://x"}),
    ]
    for scheme, rends, kw in bad:
        with pytest.raises(UsageError):
            LivePackager(src, _schedule(), scheme, tmp_path / "x", rends, **kw)


def test_aes128_fmp4_three_periods(ks: KeyServer, live_media: dict[str, Rendition],
                                   tmp_path: Path) -> None:
    """Whole-segment AES-128 over fMP4: one clear init (EXT-X-MAP before any key tag), each
    segment decrypts (openssl) with its period's key and IV only; FFmpeg's HLS reader gives the
    clear frames across the key changes."""
    out = tmp_path / "out"
    r = live_media["video"]
    with LivePackager(_source(ks, "pkg-aes-f", Scheme.AES_128, (DrmSystem.AES128,), shared=True),
                      _schedule(), Scheme.AES_128, out,
                      [LiveRendition("video", r.init.read_bytes())]) as pk:  # type: ignore[union-attr]
        assert pk.dash is False
        segs = [pk.add_segment("video", r.data(i), start_time=i * SEGMENT, duration=SEGMENT)
                for i in range(6)]
    assert ks.request_count("/speke") == 4
    text = (out / "video.m3u8").read_text()
    assert [s.period for s in segs] == [0, 0, 1, 1, 2, 2] and len({s.kid for s in segs}) == 3
    assert (out / "video/init.mp4").read_bytes() == r.init.read_bytes()  # type: ignore[union-attr]
    assert text.count("#EXT-X-MAP:") == 1
    assert text.index("#EXT-X-MAP:") < text.index("#EXT-X-KEY:")
    assert text.count("#EXT-X-KEY:") == 3
    per_seg = keys_per_segment(text)
    for i, s in enumerate(segs):
        tag = per_seg[s.uri][KEYFORMAT_IDENTITY]
        assert tag.method == "AES-128" and tag.uri == ks.key_url(s.kid) and tag.iv is not None
        data = (out / s.uri).read_bytes()
        assert openssl_decrypt(data, ks.key_for("pkg-aes-f", s.kid), tag.iv) == r.data(i)
        other = ks.key_for("pkg-aes-f", segs[(i + 2) % 6].kid)
        assert openssl_decrypt(data, other, tag.iv) != r.data(i)
    assert hls_frames(out / "video.m3u8", "v:0") == framemd5(r.playlist, "v:0")


def test_segment_over_the_target_duration_is_refused_before_publishing(
        ks: KeyServer, live_media: dict[str, Rendition], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = live_media["video"]
    with LivePackager(_source(ks, "pkg-td", Scheme.CBCS, FMP4_DRMS), _schedule(), Scheme.CBCS,
                      out, [LiveRendition("video", r.init.read_bytes())],  # type: ignore[union-attr]
                      target_duration=2) as pk:
        pk.add_segment("video", r.data(0), start_time=0.0, duration=SEGMENT)
        with pytest.raises(ManifestError, match="target duration"):
            pk.add_segment("video", r.data(1), start_time=SEGMENT, duration=2.6)
        assert not (out / "video/1.m4s").exists()
        pk.add_segment("video", r.data(1), start_time=SEGMENT, duration=SEGMENT)
    assert _uris((out / "video.m3u8").read_text()) == ["video/0.m4s", "video/1.m4s"]


def test_a_period_is_announced_once_every_rendition_reached_it(
        ks: KeyServer, live_media: dict[str, Rendition], tmp_path: Path) -> None:
    """No MPD names video alone at the start, and Period 1 appears only once audio has a
    segment in it too (an AdaptationSet must not appear later in a live Period)."""
    out = tmp_path / "out"
    rends = [LiveRendition(n, live_media[n].init.read_bytes())  # type: ignore[union-attr]
             for n in ("video", "audio")]
    with LivePackager(_source(ks, "pkg-ann", Scheme.CBCS, FMP4_DRMS), _schedule(), Scheme.CBCS,
                      out, rends) as pk:
        def add(name: str, i: int) -> None:
            pk.add_segment(name, live_media[name].data(i), start_time=i * SEGMENT,
                           duration=SEGMENT)

        def periods() -> list[str]:
            mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
            return [p.get("id") for p in mpd.findall(f"{M}Period")]

        add("video", 0)
        assert (out / "video.m3u8").exists() and not (out / "manifest.mpd").exists()
        assert not (out / "master.m3u8").exists()  # not before every media playlist exists
        add("audio", 0)
        assert periods() == ["p0"] and (out / "master.m3u8").exists()
        add("video", 1)
        add("video", 2)  # video enters period 1
        assert periods() == ["p0"]
        add("audio", 1)
        add("audio", 2)
        assert periods() == ["p0", "p1"]


def test_encoder_discontinuity(ks: KeyServer, live_media: dict[str, Rendition], tmp_path: Path,
                               check_mpd: Callable[[Any], None]) -> None:
    """An encoder restart mid key period (decode times start again at 0): HLS writes
    EXT-X-DISCONTINUITY, DASH starts a new Period there (a timeline cannot go back), and the
    next key period is a Period of the new run; with $Time$ names a restart that would reuse a
    published name is refused before anything is written."""
    out = tmp_path / "out"
    rends = [LiveRendition(n, live_media[n].init.read_bytes())  # type: ignore[union-attr]
             for n in ("video", "audio")]
    order = [0, 1, 2, 0, 1]  # media segments: the encoder restarts after its third
    with LivePackager(_source(ks, "pkg-disc", Scheme.CBCS, FMP4_DRMS), _schedule(), Scheme.CBCS,
                      out, rends) as pk:
        for n, src in enumerate(order):
            for name in ("video", "audio"):
                pk.add_segment(name, live_media[name].data(src), start_time=n * SEGMENT,
                               duration=SEGMENT, discontinuity=n == 3)
        live = etree.fromstring((out / "manifest.mpd").read_bytes())
        check_mpd(live)
    text = (out / "video.m3u8").read_text().splitlines()
    assert text.count("#EXT-X-DISCONTINUITY") == 1
    assert text.index("#EXT-X-DISCONTINUITY") < text.index("video/3.m4s") and \
        text.index("#EXT-X-DISCONTINUITY") > text.index("video/2.m4s")
    mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
    check_mpd(mpd)
    periods = mpd.findall(f"{M}Period")
    assert [(p.get("id"), p.get("start")) for p in periods] == [
        ("p0", "PT0S"), ("p1", "PT4S"), ("p1d1", "PT6S"), ("p2d1", "PT8S")]
    for period, first, count in zip(periods, (0, 2, 3, 4), (2, 1, 1, 1), strict=True):
        st = period.find(f".//{M}Representation[@id='video']/{M}SegmentTemplate")
        s_el = st.findall(f"{M}SegmentTimeline/{M}S")
        assert int(st.get("startNumber")) == first
        assert sum(int(s.get("r", "0")) + 1 for s in s_el) == count
        assert int(st.get("presentationTimeOffset")) == int(s_el[0].get("t"))
    restart = periods[2].find(f".//{M}Representation[@id='video']/{M}SegmentTemplate")
    assert restart.find(f"{M}SegmentTimeline/{M}S").get("t") == "0"  # decode time restarted
    # $Time$ names: the restarted decode time would overwrite t0.m4s, still published
    out2 = tmp_path / "time"
    with LivePackager(_source(ks, "pkg-disc2", Scheme.CBCS, FMP4_DRMS), _schedule(),
                      Scheme.CBCS, out2, rends[:1], dash_addressing="time") as pk:
        for n, src in enumerate(order[:3]):
            pk.add_segment("video", live_media["video"].data(src), start_time=n * SEGMENT,
                           duration=SEGMENT)
        before = (out2 / "video" / "t0.m4s").read_bytes()
        with pytest.raises(ManifestError, match="dash_addressing='number'"):
            pk.add_segment("video", live_media["video"].data(0), start_time=3 * SEGMENT,
                           duration=SEGMENT, discontinuity=True)
        assert (out2 / "video" / "t0.m4s").read_bytes() == before


def test_close_ends_a_period_not_every_rendition_reached(
        ks: KeyServer, live_media: dict[str, Rendition], tmp_path: Path,
        check_mpd: Callable[[Any], None]) -> None:
    """close() while only video has entered period 1: the static MPD still lists it (the
    presentation is over, nothing more will come)."""
    out = tmp_path / "out"
    rends = [LiveRendition(n, live_media[n].init.read_bytes())  # type: ignore[union-attr]
             for n in ("video", "audio")]
    with LivePackager(_source(ks, "pkg-end", Scheme.CENC, FMP4_DRMS[:3]), _schedule(),
                      Scheme.CENC, out, rends) as pk:
        for i, name in ((0, "video"), (0, "audio"), (1, "video"), (1, "audio"), (2, "video")):
            pk.add_segment(name, live_media[name].data(i), start_time=i * SEGMENT,
                           duration=SEGMENT)
        live = etree.fromstring((out / "manifest.mpd").read_bytes())
        assert [p.get("id") for p in live.findall(f"{M}Period")] == ["p0"]
    mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
    check_mpd(mpd)
    assert mpd.get("type") == "static"
    assert [p.get("id") for p in mpd.findall(f"{M}Period")] == ["p0", "p1"]
    assert mpd.find(f"{M}Period[@id='p1']//{M}Representation[@id='audio']") is None
    for name in ("video", "audio"):
        assert (out / f"{name}.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
