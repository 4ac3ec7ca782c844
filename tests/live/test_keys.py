"""Key handling of a live session against the real local key server: the next period is
prefetched before the boundary (requests counted at the server; time is driven by the segment
start times, never by sleeping), only the current and next periods are kept, a failed fetch
fails closed without a grace time, concurrent renditions share one fetch per period, and no
key shows up in logs, reprs or errors. Grace time, retries and outages: test_key_failures.py;
key periods per SPEKE version and several periods per request: test_key_periods.py."""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from speke_packager.constants import DrmSystem, Scheme
from speke_packager.errors import KeyRotationError, KeyServerHTTPError, UsageError
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer, parse_faults
from speke_packager.model import KeySet
from speke_packager.pipeline.live import LiveSegment, LiveSession, SpekeKeySource
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import SEGMENT, Rendition
from .helpers import contract, keys_per_segment, openssl_decrypt, run

WAIT = 60.0  # upper bound for a background fetch to finish (never asserted on)


def _source(ks: KeyServer, cid: str, scheme: Scheme = Scheme.AES_128,
            explicit_iv: bool | None = None) -> SpekeKeySource:
    # one connection per request: the key server answers an injected status=N before reading
    # the request body, which would otherwise spoil the next request on a kept-alive connection
    http = requests.Session()
    http.headers["Connection"] = "close"
    return SpekeKeySource(SpekeClient(ks.speke_url, retries=0, session=http),
                          replace(contract(cid, scheme, (DrmSystem.AES128,), shared=True),
                                  explicit_iv=explicit_iv))


def _speke(ks: KeyServer) -> int:
    return ks.request_count("/speke")


def _seg(session: LiveSession, r: Rendition, i: int) -> LiveSegment:
    return session.encrypt_segment("main", r.data(i), start_time=i * SEGMENT, sequence=i,
                                   duration=SEGMENT)


def test_prefetch_before_the_boundary(ks: KeyServer, live_media: dict[str, Rendition]) -> None:
    """Default lead (one interval): period N+1 is requested as soon as N starts."""
    r = live_media["ts"]
    with LiveSession(_source(ks, "pf"), RotationSchedule(interval=4.0), Scheme.AES_128
                     ) as session:
        s0 = _seg(session, r, 0)
        assert session.ready(1, WAIT)  # period 1 fetched in the background
        assert _speke(ks) == 2 and session.fetches == 2
        _seg(session, r, 1)
        assert _speke(ks) == 2 and session.fetches == 2  # nothing new within period 0
        s2 = _seg(session, r, 2)  # the boundary: period 1 comes from the prefetch
        assert s2.period == 1 and s2.kid != s0.kid and s2.key_lines
        assert session.ready(2, WAIT)
        assert _speke(ks) == 3 and session.fetches == 3  # period 1 was not asked again
        assert session.cached_periods == [1, 2]  # period 0 dropped; 2 waits to be used
        _seg(session, r, 3)
        _seg(session, r, 4)
        assert session.cached_periods in ([2], [2, 3])  # 3 may be in flight
        assert session.ready(3, WAIT)
    assert _speke(ks) == 4


def test_prefetch_lead(ks: KeyServer, live_media: dict[str, Rendition]) -> None:
    """lead=2 s: nothing is prefetched at t=0, period 1 is requested with the segment at t=2."""
    r = live_media["ts"]
    with LiveSession(_source(ks, "lead"), RotationSchedule(interval=4.0, lead=2.0),
                     Scheme.AES_128) as session:
        _seg(session, r, 0)
        assert session.fetches == 1 and not session.ready(1, 0)
        assert _speke(ks) == 1
        _seg(session, r, 1)
        assert session.ready(1, WAIT) and _speke(ks) == 2
        _seg(session, r, 2)
        assert _speke(ks) == 2 and session.fetches == 2


def test_no_prefetch_fetches_at_the_boundary(ks: KeyServer,
                                             live_media: dict[str, Rendition]) -> None:
    r = live_media["ts"]
    with LiveSession(_source(ks, "np"), RotationSchedule(interval=4.0), Scheme.AES_128,
                     prefetch=False) as session:
        _seg(session, r, 0)
        _seg(session, r, 1)
        assert _speke(ks) == 1 and not session.ready(1, 0)
        _seg(session, r, 2)
        assert _speke(ks) == 2


def test_fail_closed(ks: KeyServer, live_media: dict[str, Rendition]) -> None:
    r = live_media["ts"]
    with LiveSession(_source(ks, "fc"), RotationSchedule(interval=4.0, lead=2.0),
                     Scheme.AES_128) as session:
        s0 = _seg(session, r, 0)
        ks.faults = parse_faults(["status=503"])
        _seg(session, r, 1)  # still period 0's key; period 1's prefetch fails
        assert not session.ready(1, WAIT)
        assert _speke(ks) == 2
        with pytest.raises(KeyRotationError) as info:
            _seg(session, r, 2)  # fetched again at the boundary, fails: no segment out
        assert info.value.period == 1
        assert isinstance(info.value.__cause__, KeyServerHTTPError)
        assert info.value.__cause__.status == 503
        assert _speke(ks) == 3
        ks.faults = parse_faults([])
        s2 = _seg(session, r, 2)  # the server is back: period 1's own key
        assert s2.period == 1 and s2.kid != s0.kid and not s2.reused_key
        key = ks.key_for("fc", s2.kid)
        assert openssl_decrypt(s2.data, key, s2.keys[0].iv or b"") == r.data(2)


def _no_keys_in(text: str, ks: KeyServer, cid: str, kids: list) -> None:  # type: ignore[type-arg]
    for kid in kids:
        key = ks.key_for(cid, kid)
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
                     base64.urlsafe_b64encode(key).decode().rstrip("=")):
            assert form not in text


def test_wrong_period_from_the_source_is_refused(ks: KeyServer,
                                                 live_media: dict[str, Rendition]) -> None:
    """A key source that answers another period than asked is refused (fail closed)."""
    real = _source(ks, "wp")
    first: list[KeySet] = []

    def stale(index: int) -> KeySet:
        if not first:
            first.append(real(index))
        return first[0]

    r = live_media["ts"]
    with LiveSession(stale, RotationSchedule(interval=4.0), Scheme.AES_128,
                     prefetch=False) as session:
        _seg(session, r, 0)
        _seg(session, r, 1)
        with pytest.raises(KeyRotationError, match="answered key period 0 for key period 1"):
            _seg(session, r, 2)


def test_threads_share_fetches_and_match_sequential(ks: KeyServer,
                                                    live_media: dict[str, Rendition],
                                                    tmp_path: Path) -> None:
    """Video and audio handed over from several threads at once: one request per period, and
    the same bytes as a sequential run (cbcs with a fixed IV seed is deterministic)."""
    inits = {n: live_media[n].init.read_bytes() for n in ("video", "audio")}  # type: ignore[union-attr]

    def session() -> LiveSession:
        # no random explicitIV per request: both runs must encrypt with the same IVs
        return LiveSession(_source(ks, "mt", Scheme.CBCS, explicit_iv=False),
                           RotationSchedule(interval=4.0),
                           Scheme.CBCS, inits=inits, iv_seed=b"threads-test")

    def one(s: LiveSession, name: str, i: int) -> bytes:
        return s.encrypt_segment(name, live_media[name].data(i), start_time=i * SEGMENT,
                                 sequence=i).data

    with session() as seq:
        expected = {(n, i): one(seq, n, i) for i in range(6) for n in ("video", "audio")}
    ks.reset_counts()
    with session() as par, ThreadPoolExecutor(max_workers=4) as pool:
        got: list[tuple[tuple[str, int], bytes]] = []
        for i in range(6):  # the transcoder's renditions reach each segment time together
            futs = [((n, i), pool.submit(one, par, n, i)) for n in ("video", "audio")
                    for _ in range(2)]  # each segment twice, from two threads
            got += [(k, f.result()) for k, f in futs]
        assert par.ready(3, WAIT)
        fetches = par.fetches
    assert len(got) == 24 and all(data == expected[k] for k, data in got)
    assert fetches == 4 and _speke(ks) == 4  # periods 0, 1, 2 and the prefetch of 3


def test_usage_errors(ks: KeyServer, live_media: dict[str, Rendition]) -> None:
    r = live_media["ts"]
    init = live_media["video"].init.read_bytes()  # type: ignore[union-attr]
    with LiveSession(_source(ks, "ue"), RotationSchedule(interval=4.0), Scheme.AES_128
                     ) as session:
        with pytest.raises(UsageError, match="crosses a key-period boundary"):
            session.encrypt_segment("main", r.data(0), start_time=3.0, sequence=0,
                                    duration=2.0)
        with pytest.raises(UsageError, match="before the rotation start"):
            session.encrypt_segment("main", r.data(0), start_time=-1.0, sequence=0)
        _seg(session, r, 0)
        with pytest.raises(UsageError, match="no init segment"):
            session.encrypt_init("main")
        with pytest.raises(UsageError, match="unknown rendition"):
            session.encrypt_init("nope")
    with LiveSession(_source(ks, "ue", Scheme.CBCS), RotationSchedule(interval=4.0),
                     Scheme.CBCS, inits={"v": init}) as session, \
            pytest.raises(UsageError, match="needs fMP4"):
        _seg(session, r, 0)
    session.close()
    with pytest.raises(UsageError, match="closed"):
        session.encrypt_init("v")


def test_hls_keys_follow_the_playlist(ks: KeyServer, live_media: dict[str, Rendition],
                                      tmp_path: Path,
                                      clear_frames: Callable[..., list[str]]) -> None:
    """key_lines are exactly the tags the playlist writes before each period's first segment."""
    with LiveSession(_source(ks, "kl"), RotationSchedule(interval=4.0), Scheme.AES_128
                     ) as session:
        segs, _pl = run(session, "main", live_media["ts"], tmp_path)
    text = (tmp_path / "main.m3u8").read_text()
    for i, s in enumerate(segs):
        if s.key_lines:
            idx = text.index(f"main{i}.ts")
            before = text[:idx].rstrip().splitlines()
            assert before[-2] == s.key_lines[-1]
    per_seg = keys_per_segment(text)
    assert [per_seg[f"main{i}.ts"]["identity"].iv for i in range(6)] == \
        [s.keys[0].iv for s in segs]


def test_speke_v21_periods_carry_datetimes(ks: KeyServer) -> None:
    """With a wall-clock origin, each v2.1 request names its period's xs:dateTime bounds."""
    from datetime import UTC, datetime

    from speke_packager.constants import SpekeVersion

    schedule = RotationSchedule(interval=60.0, origin=datetime(2026, 12, 1, 20, 0, tzinfo=UTC))
    src = SpekeKeySource(SpekeClient(ks.speke_url, retries=0),
                         contract("v21", Scheme.SAMPLE_AES, (DrmSystem.AES128,), shared=True,
                                  version=SpekeVersion.V2_1), schedule=schedule)
    ks2 = src(2)
    periods = {e.period for e in ks2}
    assert len(periods) == 1
    period = periods.pop()
    assert period is not None and period.index == 2
    assert period.start == "2026-12-01T20:02:00.000Z" and period.end == "2026-12-01T20:03:00.000Z"
    assert {e.kid for e in ks2}.isdisjoint({e.kid for e in src(3)})
