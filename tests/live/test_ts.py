"""Live MPEG-TS across three key periods with keys from the local SPEKE server: SAMPLE-AES and
AES-128 playlists with key changes mid-playlist, read by FFmpeg 8's HLS reader (identity key
URIs on the key server's /keys/<kid>) and, for AES-128, by openssl segment by segment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager.constants import DrmSystem, Scheme
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer, parse_faults
from speke_packager.media.aes128 import iv_from_sequence
from speke_packager.pipeline.live import LiveSession, SpekeKeySource
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import Rendition
from .helpers import contract, hls_frames, keys_per_segment, openssl_decrypt, run

pytestmark = pytest.mark.interop

INTERVAL = 4.0  # two 2 s segments per key period: periods 0, 1, 2


def _session(ks: KeyServer, scheme: Scheme, cid: str, **kw: object) -> LiveSession:
    client = SpekeClient(ks.speke_url, retries=0)
    src = SpekeKeySource(client, contract(cid, scheme, (DrmSystem.AES128,), shared=True))
    return LiveSession(src, RotationSchedule(interval=INTERVAL), scheme, **kw)  # type: ignore[arg-type]


def _check_periods(ks: KeyServer, cid: str, text: str, segs: list) -> None:  # type: ignore[type-arg]
    """Three periods, two segments each, a distinct KID and key per period, each period's key
    tag naming the key server's URL for its KID, written before the period's first segment."""
    assert [s.period for s in segs] == [0, 0, 1, 1, 2, 2]
    kids = [segs[i].kid for i in (0, 2, 4)]
    assert len(set(kids)) == 3
    assert [s.kid for s in segs] == [kids[0], kids[0], kids[1], kids[1], kids[2], kids[2]]
    assert len({ks.key_for(cid, k) for k in kids}) == 3
    assert [bool(s.key_lines) for s in segs] == [True, False, True, False, True, False]
    per_seg = keys_per_segment(text)
    for i, s in enumerate(segs):
        tag = per_seg[f"main{i}.ts"]["identity"]
        assert tag.uri == ks.key_url(s.kid)
    assert text.count("#EXT-X-KEY:") == 3


def test_sample_aes_three_periods_ffmpeg(ks: KeyServer, live_media: dict[str, Rendition],
                                          clear_frames: Callable[..., list[str]],
                                          tmp_path: Path) -> None:
    r = live_media["ts"]
    with _session(ks, Scheme.SAMPLE_AES, "live-sa") as session:
        segs, pl = run(session, "main", r, tmp_path)
    pl.end()
    text = (tmp_path / "main.m3u8").read_text()
    _check_periods(ks, "live-sa", text, segs)
    live = tmp_path / "main.m3u8"
    # audio: every packet and every decoded frame equals the clear one
    assert hls_frames(live, "a:0", decode=False) == clear_frames(r.playlist, "a:0", decode=False)
    assert hls_frames(live, "a:0") == clear_frames(r.playlist, "a:0")
    # video: every packet, except the last two of each key period: FFmpeg's SAMPLE-AES path
    # leaves the last video PES before a key change (or the end) encrypted
    # (media-encryption.md §9); the per-period copies below cover those packets
    clear_v = clear_frames(r.playlist, "v:0", decode=False)
    got_v = hls_frames(live, "v:0", decode=False)
    assert got_v is not None and len(got_v) == len(clear_v) == 300
    bad = [i for i, (x, y) in enumerate(zip(clear_v, got_v, strict=True)) if x != y]
    assert set(bad) <= {98, 99, 198, 199, 298, 299}, bad
    # each period alone (a test copy: its key tag, its two segments, the last one repeated after
    # a discontinuity): all 100 video packets and decoded frames of the period are the clear ones
    lines = text.splitlines()
    header = [ln for ln in lines[:4] if not ln.startswith("#EXT-X-KEY")]
    tags = [ln for ln in lines if ln.startswith("#EXT-X-KEY")]
    clear_d = clear_frames(r.playlist, "v:0")
    for p in range(3):
        a_, b_ = f"main{2 * p}.ts", f"main{2 * p + 1}.ts"
        copy = tmp_path / f"period{p}.m3u8"
        copy.write_text("\n".join([*header, tags[p], "#EXTINF:2.000,", a_, "#EXTINF:2.000,", b_,
                                   "#EXT-X-DISCONTINUITY", "#EXTINF:2.000,", b_,
                                   "#EXT-X-ENDLIST"]) + "\n")
        got = hls_frames(copy, "v:0", decode=False)
        assert got is not None and got[:100] == clear_v[100 * p:100 * p + 100]
        dec = hls_frames(copy, "v:0")
        assert dec is not None and dec[:100] == clear_d[100 * p:100 * p + 100]
        # negative control: the same copy with the next period's key tag does not decrypt
        copy.write_text(copy.read_text().replace(tags[p], tags[(p + 1) % 3]))
        wrong = hls_frames(copy, "v:0", decode=False)
        assert wrong is None or sum(x == y for x, y in zip(wrong[:100], got[:100],
                                                           strict=True)) < 10
    # negative control: the key URLs now serve another KID's key -> packets do not match
    ks.faults = parse_faults(["wrong-kid"])
    wrong = hls_frames(live, "v:0", decode=False)
    assert wrong is None or sum(x == y for x, y in zip(wrong, clear_v, strict=False)) < 30


def test_aes128_three_periods_ffmpeg_and_openssl(ks: KeyServer,
                                                 live_media: dict[str, Rendition],
                                                 clear_frames: Callable[..., list[str]],
                                                 tmp_path: Path) -> None:
    r = live_media["ts"]
    with _session(ks, Scheme.AES_128, "live-aes") as session:
        segs, pl = run(session, "main", r, tmp_path)
    pl.end()
    text = (tmp_path / "main.m3u8").read_text()
    _check_periods(ks, "live-aes", text, segs)
    per_seg = keys_per_segment(text)
    for i, s in enumerate(segs):
        tag = per_seg[f"main{i}.ts"]["identity"]
        assert tag.method == "AES-128" and tag.iv is not None
        key = ks.key_for("live-aes", s.kid)
        assert openssl_decrypt(s.data, key, tag.iv) == r.data(i)
        other = ks.key_for("live-aes", segs[(i + 2) % 6].kid)  # another period's key
        assert openssl_decrypt(s.data, other, tag.iv) != r.data(i)
        assert openssl_decrypt(s.data, key, iv_from_sequence(i)) != r.data(i)
    for stream in ("v:0", "a:0"):
        assert hls_frames(tmp_path / "main.m3u8", stream) == clear_frames(r.playlist, stream)
    ks.faults = parse_faults(["wrong-kid"])
    assert hls_frames(tmp_path / "main.m3u8", "v:0") != clear_frames(r.playlist, "v:0")
