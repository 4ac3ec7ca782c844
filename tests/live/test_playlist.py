"""LivePlaylist: a sliding window that keeps the key tags covering its first segment, the full
KEYFORMAT set at every key change, atomic rewrites; FFmpeg reads a slid window."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from speke_packager.constants import KEYFORMAT_FAIRPLAY, KEYFORMAT_IDENTITY, DrmSystem, Scheme
from speke_packager.errors import ManifestError, UsageError
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.manifests.hls import HlsKey
from speke_packager.pipeline.live import LivePlaylist, LiveSegment, LiveSession, SpekeKeySource
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import SEGMENT, Rendition
from .helpers import contract, hls_frames, keys_per_segment

WINDOW = 3


def _session(ks: KeyServer, cid: str, drm: tuple[DrmSystem, ...]) -> LiveSession:
    src = SpekeKeySource(SpekeClient(ks.speke_url, retries=0),
                         contract(cid, Scheme.SAMPLE_AES, drm, shared=True))
    return LiveSession(src, RotationSchedule(interval=4.0), Scheme.SAMPLE_AES)


def test_window_slides_and_keeps_key_tags(ks: KeyServer, live_media: dict[str, Rendition],
                                          tmp_path: Path) -> None:
    r = live_media["ts"]
    path = tmp_path / "live.m3u8"
    pl = LivePlaylist(path, window=WINDOW)
    kids = []
    with _session(ks, "win", (DrmSystem.AES128, DrmSystem.FAIRPLAY)) as session:
        for i in range(6):
            seg = session.encrypt_segment("main", r.data(i), start_time=i * SEGMENT,
                                          sequence=i)
            kids.append(seg.kid)
            pl.add(f"main{i}.ts", SEGMENT, seg)
            text = path.read_text()
            assert [p.name for p in tmp_path.iterdir()] == ["live.m3u8"]  # no temp file left
            first = max(0, i - WINDOW + 1)
            assert f"#EXT-X-MEDIA-SEQUENCE:{first}\n" in text and pl.media_sequence == first
            uris = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
            assert uris == [f"main{j}.ts" for j in range(first, i + 1)]
            per_seg = keys_per_segment(text)
            for j in range(first, i + 1):
                tags = per_seg[f"main{j}.ts"]
                assert set(tags) == {KEYFORMAT_IDENTITY, KEYFORMAT_FAIRPLAY}
                assert tags[KEYFORMAT_IDENTITY].uri == ks.key_url(kids[j])
                assert tags[KEYFORMAT_FAIRPLAY].uri == f"skd://{kids[j]}"
            # the full set is written once per period present in the window, never more
            periods = {j // 2 for j in range(first, i + 1)}
            assert text.count("#EXT-X-KEY:") == 2 * len(periods)
            assert text.index("#EXT-X-KEY:") < text.index(f"main{first}.ts")
            assert "#EXT-X-ENDLIST" not in text
    pl.end()
    assert path.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert len(set(kids)) == 3


def test_ffmpeg_reads_a_slid_window(ks: KeyServer, live_media: dict[str, Rendition],
                                    tmp_path: Path,
                                    clear_frames: Callable[..., list[str]]) -> None:
    """After six segments the window holds segments 3-5 (period 1's second segment, period 2):
    FFmpeg gets period 1's key from the tag kept at the top and period 2's from the change."""
    r = live_media["ts"]
    pl = LivePlaylist(tmp_path / "live.m3u8", window=WINDOW)
    with _session(ks, "slid", (DrmSystem.AES128,)) as session:
        for i in range(6):
            seg = session.encrypt_segment("main", r.data(i), start_time=i * SEGMENT,
                                          sequence=i)
            (tmp_path / f"main{i}.ts").write_bytes(seg.data)
            pl.add(f"main{i}.ts", SEGMENT, seg)
    text = (tmp_path / "live.m3u8").read_text()
    assert "#EXT-X-MEDIA-SEQUENCE:3" in text and text.count("#EXT-X-KEY:") == 2
    pl.end()  # FFmpeg would otherwise wait for the live playlist to grow
    clear_v = clear_frames(r.playlist, "v:0", decode=False)
    got = hls_frames(tmp_path / "live.m3u8", "v:0", decode=False)
    assert got is not None and len(got) == 150
    # all but the last two packets before the key change and at the end (FFmpeg's SAMPLE-AES
    # quirk, see test_ts.py) equal the clear packets of segments 3-5
    bad = [i for i, (x, y) in enumerate(zip(clear_v[150:], got, strict=True)) if x != y]
    assert set(bad) <= {48, 49, 148, 149}, bad
    audio = hls_frames(tmp_path / "live.m3u8", "a:0", decode=False)
    clear_a = clear_frames(r.playlist, "a:0", decode=False)
    assert audio is not None and len(audio) > 250 and audio == clear_a[-len(audio):]


def test_playlist_errors(ks: KeyServer, live_media: dict[str, Rendition],
                         tmp_path: Path) -> None:
    r = live_media["ts"]
    with _session(ks, "err", (DrmSystem.AES128,)) as session:
        s0 = session.encrypt_segment("main", r.data(0), start_time=0.0, sequence=7)
        s2 = session.encrypt_segment("main", r.data(2), start_time=4.0, sequence=9)
    with pytest.raises(UsageError):
        LivePlaylist(tmp_path / "x.m3u8", window=0)
    pl = LivePlaylist(tmp_path / "x.m3u8", window=4, target_duration=2)
    with pytest.raises(ManifestError):
        pl.render()  # nothing yet
    with pytest.raises(ManifestError, match="over the target duration"):
        pl.add("a.ts", 3.0, s0)
    with pytest.raises(ManifestError, match="bad segment URI"):
        pl.add("a.ts\n#EXT-X-ENDLIST", 2.0, s0)
    pl.add("a.ts", 2.0, s0)
    with pytest.raises(UsageError, match="consecutive"):
        pl.add("c.ts", 2.0, s2)
    assert "#EXT-X-MEDIA-SEQUENCE:7" in pl.render()
    pl.end()
    with pytest.raises(UsageError, match="ended"):
        pl.add("b.ts", 2.0, s0)


def _seg(i: int, period: int) -> LiveSegment:
    key = HlsKey(method="AES-128", uri=f"https://k.example/{period}", iv=bytes(16),
                 keyformat=KEYFORMAT_IDENTITY, keyformatversions="1")
    return LiveSegment(data=b"", rendition="r", sequence=i, start_time=2.0 * i, period=period,
                       kid=UUID(int=period + 1), keys=(key,), key_lines=())


def test_render_only_discontinuities_maps_and_dates() -> None:
    """path=None renders without writing; a per-segment EXT-X-MAP is written at the top of the
    window and where it changes; PROGRAM-DATE-TIME per segment; a discontinuity that slid out
    counts in EXT-X-DISCONTINUITY-SEQUENCE; window=None is an EVENT playlist."""
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pl = LivePlaylist(None, window=3)
    gone_all = []
    for i in range(6):
        gone_all += pl.add(f"s{i}.m4s", 2.0, _seg(i, i // 2), init_uri=f"init-{i // 2}.mp4",
                           program_date_time=t0 + timedelta(seconds=2 * i),
                           discontinuity=i in (2, 4))
    assert gone_all == ["s0.m4s", "s1.m4s", "s2.m4s"] and pl.uris == ["s3.m4s", "s4.m4s", "s5.m4s"]
    text = pl.render()
    lines = text.splitlines()
    assert "#EXT-X-MEDIA-SEQUENCE:3" in lines and "#EXT-X-DISCONTINUITY-SEQUENCE:1" in lines
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" not in text
    assert [ln for ln in lines if ln.startswith("#EXT-X-MAP")] == [
        '#EXT-X-MAP:URI="init-1.mp4"', '#EXT-X-MAP:URI="init-2.mp4"']
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    assert lines.index("#EXT-X-DISCONTINUITY") < lines.index('#EXT-X-MAP:URI="init-2.mp4"')
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:11.000Z" in lines
    assert keys_per_segment(text)["s3.m4s"][KEYFORMAT_IDENTITY].uri == "https://k.example/1"
    assert keys_per_segment(text)["s4.m4s"][KEYFORMAT_IDENTITY].uri == "https://k.example/2"
    pl.end()
    assert pl.render().rstrip().endswith("#EXT-X-ENDLIST")
    event = LivePlaylist(None, window=None)
    for i in range(4):
        assert event.add(f"s{i}.ts", 2.0, _seg(i, 0)) == []
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in event.render() and len(event.uris) == 4
    with pytest.raises(UsageError):
        event.add("x.ts", 2.0, _seg(4, 0), program_date_time=datetime(2026, 1, 1))  # naive
