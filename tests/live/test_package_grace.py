"""A live package through a key-server outage: the segments published within the grace time
keep the init, the HLS EXT-X-MAP and the DASH Period of the keys they were encrypted with, and
the key period whose start the grace keys covered begins (init, MAP and Period) where its own
keys do. Real local key server with its fault switches, FFmpeg's media, FFmpeg 8 decrypting."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from speke_packager.constants import NS_CENC, NS_MPD, DrmSystem, Scheme
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer, parse_faults
from speke_packager.pipeline.live import (
    LiveKeyPolicy,
    LivePackager,
    LiveRendition,
    SpekeKeySource,
)
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import SEGMENT, Rendition
from .helpers import contract
from .test_package import _frames, _maps, _tenc_kid

pytestmark = pytest.mark.interop

M = f"{{{NS_MPD}}}"


def _wait_for(cond: Any, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_grace_segments_keep_the_keys_init_and_period(ks: KeyServer,
                                                      live_media: dict[str, Rendition],
                                                      tmp_path: Path) -> None:
    cid = "pkg-grace"
    out = tmp_path / "out"
    http = requests.Session()
    http.headers["Connection"] = "close"
    client = SpekeClient(ks.speke_url, session=http, retries=0)
    source = SpekeKeySource(client, contract(cid, Scheme.CBCS,
                                             (DrmSystem.CLEARKEY, DrmSystem.WIDEVINE)))
    video = live_media["video"]
    assert video.init is not None
    policy = LiveKeyPolicy(lead=2.0, grace=4.0, backoff=0.05, max_backoff=0.2)
    pk = LivePackager(source, RotationSchedule(interval=4.0, lead=2.0), Scheme.CBCS, out,
                      [LiveRendition("video", video.init.read_bytes())], window=100,
                      key_policy=policy, iv_seed=b"grace-live")
    pub = []
    with pk:
        pub.append(pk.add_segment("video", video.data(0), start_time=0.0, duration=SEGMENT))
        ks.faults = parse_faults(["status=503"])  # period 1's prefetch fails from here on
        pub.append(pk.add_segment("video", video.data(1), start_time=SEGMENT, duration=SEGMENT))
        assert not pk.session.ready(1, 1.0)
        pub.append(pk.add_segment("video", video.data(2), start_time=2 * SEGMENT,
                                  duration=SEGMENT))
        assert pub[2].reused_key  # period 1's first segment on period 0's keys
        ks.faults = parse_faults([])
        _wait_for(lambda: 1 in pk.session.cached_periods)
        for i in (3, 4, 5):
            pub.append(pk.add_segment("video", video.data(i), start_time=i * SEGMENT,
                                      duration=SEGMENT))
    assert [p.period for p in pub] == [0, 0, 1, 1, 2, 2]
    assert [p.reused_key for p in pub] == [False, False, True, False, False, False]
    kids = [p.kid for p in pub]
    assert kids[2] == kids[0] and len({kids[0], kids[3], kids[4]}) == 3
    # HLS: segment 2 stays on period 0's init; period 1's init begins with segment 3
    maps = _maps((out / "video.m3u8").read_text())
    inits = [maps[p.uri] for p in pub]
    assert inits == ["video/init-0.mp4"] * 3 + ["video/init-1.mp4"] + ["video/init-2.mp4"] * 2
    for p, init in zip(pub, inits, strict=True):
        assert _tenc_kid((out / init).read_bytes()) == p.kid
    # DASH: Period 0 holds segments 0-2, Period 1 starts at segment 3 (6 s), Period 2 at 8 s
    mpd = etree.fromstring((out / "manifest.mpd").read_bytes())
    periods = mpd.findall(f"{M}Period")
    assert [p.get("start") for p in periods] == ["PT0S", "PT6S", "PT8S"]
    counts = []
    for period, kid in zip(periods, (kids[0], kids[3], kids[4]), strict=True):
        cp = period.find(f".//{M}ContentProtection")
        assert cp is not None and cp.get(f"{{{NS_CENC}}}default_KID") == str(kid)
        n = 0
        for s in period.findall(f".//{M}SegmentTimeline/{M}S"):
            n += int(s.get("r", "0")) + 1
        counts.append(n)
    assert counts == [3, 1, 2]
    # each init + its segments decrypt to the clear frames with its key only
    clear_init = video.init.read_bytes()
    groups = {"video/init-0.mp4": [0, 1, 2], "video/init-1.mp4": [3]}
    for init, idx in groups.items():
        key = ks.key_for(cid, pub[idx[0]].kid)
        other = ks.key_for(cid, pub[4].kid)
        enc = tmp_path / (Path(init).stem + ".mp4")
        enc.write_bytes((out / init).read_bytes()
                        + b"".join((out / pub[i].uri).read_bytes() for i in idx))
        clear = tmp_path / (Path(init).stem + "-clear.mp4")
        clear.write_bytes(clear_init + b"".join(video.data(i) for i in idx))
        ref = _frames(clear, "v:0")
        assert len(ref) >= 25 * SEGMENT * len(idx) - 1
        assert _frames(enc, "v:0", key) == ref
        assert _frames(enc, "v:0", other) != ref
