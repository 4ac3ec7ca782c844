"""The failure rules of live key rotation, against the real local key server over HTTP with its
fault switches: transient failures are retried with back-off (counted at the server), 4xx are
not; during an outage the previous period's keys stand in for a bounded grace time, each such
segment logged at WARNING and marked, the segment path doing no network I/O meanwhile; past the
grace time KeyGraceExpired stops the stream (no segment handed out); keys that arrive within the
grace time are used from the next segment on; no key ever shows up in the logs."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

import pytest
import requests

from speke_packager.constants import DrmSystem, Scheme
from speke_packager.errors import (
    KeyGraceExpired,
    KeyRotationError,
    KeyServerError,
    KeyServerHTTPError,
    KeyServerTimeout,
    UsageError,
)
from speke_packager.keys import SpekeClient
from speke_packager.keys.client import is_transient
from speke_packager.keyserver import KeyServer, parse_faults
from speke_packager.pipeline.live import LiveKeyPolicy, LiveSegment, LiveSession, SpekeKeySource
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import SEGMENT, Rendition
from .helpers import contract, openssl_decrypt

WAIT = 60.0
GRACE_LOG = "KEY GRACE"


def _source(ks: KeyServer, cid: str, *, retries: int = 1,
            timeout: tuple[float, float, float] = (5.0, 30.0, 60.0)) -> SpekeKeySource:
    # the client's own retries wait 5-10 ms here; the session's background back-off is set by
    # each test's LiveKeyPolicy
    http = requests.Session()
    http.headers["Connection"] = "close"
    client = SpekeClient(ks.speke_url, session=http, retries=retries, backoff=0.01,
                         max_backoff=0.01, timeout=timeout)
    return SpekeKeySource(client, contract(cid, Scheme.AES_128, (DrmSystem.AES128,), shared=True))


def _seg(session: LiveSession, r: Rendition, i: int) -> LiveSegment:
    return session.encrypt_segment("main", r.data(i), start_time=i * SEGMENT, sequence=i,
                                   duration=SEGMENT)


def _speke(ks: KeyServer) -> int:
    return ks.request_count("/speke")


def _until(cond: Callable[[], bool]) -> None:
    end = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _grace_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if GRACE_LOG in r.getMessage()]


def _no_keys_in(text: str, keys: list[bytes]) -> None:
    assert keys
    for key in keys:
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
                     base64.urlsafe_b64encode(key).decode().rstrip("=")):
            assert form not in text


def _decrypts(s: LiveSegment, key: bytes, clear: bytes) -> bool:
    return openssl_decrypt(s.data, key, s.keys[0].iv or b"") == clear


def test_policy_options() -> None:
    p = LiveKeyPolicy(lead=3, grace=10, retries=2, backoff=0.2, max_backoff=5,
                      periods_per_request=1)
    client = SpekeClient("http://127.0.0.1:9/speke", **p.client_options())
    assert (client.retries, client.backoff, client.max_backoff) == (2, 0.2, 5)
    for bad in ({"grace": -1}, {"lead": float("nan")}, {"retries": -1},
                {"backoff": 2, "max_backoff": 1}, {"periods_per_request": 0}, {"wait": -1}):
        with pytest.raises(UsageError):
            LiveKeyPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="10 intervals"):
        LiveSession(lambda i: None, RotationSchedule(interval=1.0),  # type: ignore[arg-type,return-value]
                    Scheme.AES_128, key_policy=LiveKeyPolicy(lead=11))


def test_transient_failures_are_retried(ks: KeyServer, live_media: dict[str, Rendition],
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Two 503s, then answers: the client's retries get period 0 (three POSTs)."""
    caplog.set_level(logging.INFO)
    r = live_media["ts"]
    ks.faults = parse_faults(["status=503", "times=2"])
    with LiveSession(_source(ks, "retry", retries=3), RotationSchedule(interval=4.0),
                     Scheme.AES_128) as session:
        s0 = _seg(session, r, 0)
        assert session.ready(1, WAIT)
        assert _speke(ks) == 4 and session.fetches == 2  # 3 POSTs for period 0, 1 for 1
    assert caplog.text.count("retrying SPEKE request") == 2
    assert _decrypts(s0, ks.key_for("retry", s0.kid), r.data(0))


def test_client_errors_are_not_retried(ks: KeyServer, live_media: dict[str, Rendition]) -> None:
    """403: no retry, no background retry; the segment that needs the keys asks once more,
    then fails closed (no earlier keys to stand in, grace or not)."""
    r = live_media["ts"]
    ks.faults = parse_faults(["status=403"])
    policy = LiveKeyPolicy(grace=30.0, backoff=0.01, max_backoff=0.02)
    with LiveSession(_source(ks, "c4xx", retries=3), RotationSchedule(interval=4.0),
                     Scheme.AES_128, key_policy=policy) as session:
        with pytest.raises(KeyRotationError) as info:
            _seg(session, r, 0)
        assert not isinstance(info.value, KeyGraceExpired)
        assert isinstance(info.value.__cause__, KeyServerHTTPError)
        assert info.value.__cause__.status == 403
        assert _speke(ks) == 2  # the fetch and the segment's one more try; no client retries
        time.sleep(0.3)
        assert _speke(ks) == 2  # and nothing in the background


@pytest.mark.parametrize("fault", ["status=503", "reset", "delay=3"])
def test_outage_grace_then_typed_stop(ks: KeyServer, live_media: dict[str, Rendition],
                                      caplog: pytest.LogCaptureFixture, fault: str) -> None:
    """4 s periods, 2 s segments, lead 2 s, grace 4 s: the key server fails from t=2 on (503,
    connection reset, or answers after the client's 1.5 s deadline). Segments at 4 and 6 s
    (period 1) use period 0's keys, logged each; the segment at 8 s (period 2) is past the
    grace time: KeyGraceExpired, nothing handed out."""
    caplog.set_level(logging.INFO)
    r = live_media["ts"]
    # background retries wait 10-20 s: none happens during the test, so every request the
    # server sees after the prefetch failures comes from the segment path
    policy = LiveKeyPolicy(lead=2.0, grace=4.0, backoff=20.0, max_backoff=20.0)
    session = LiveSession(_source(ks, "outage", timeout=(1.0, 0.5, 1.5)),
                          RotationSchedule(interval=4.0), Scheme.AES_128, key_policy=policy)
    with session:
        s0 = _seg(session, r, 0)
        assert _speke(ks) == 1
        ks.faults = parse_faults([fault])
        s1 = _seg(session, r, 1)  # period 0; starts period 1's prefetch, which fails
        assert not session.ready(1, WAIT)
        assert _speke(ks) == 3  # the prefetch: one POST and one client retry
        s2 = _seg(session, r, 2)  # period 1 within the grace time
        assert _speke(ks) == 3  # no network I/O on the segment path
        assert s2.period == 1 and s2.reused_key and s2.kid == s0.kid
        assert s2.key_lines == ()  # the key already announced stays in effect
        s3 = _seg(session, r, 3)  # starts period 2's prefetch (fails as well)
        assert s3.period == 1 and s3.reused_key and s3.kid == s0.kid
        assert not session.ready(2, WAIT)
        n = _speke(ks)
        with pytest.raises(KeyGraceExpired) as info:
            _seg(session, r, 4)
        assert _speke(ks) == n + 2  # needed and missing: one more try (with its retry)
        assert info.value.period == 2 and isinstance(info.value, KeyRotationError)
        assert "stop publishing" in str(info.value)
        cause = info.value.__cause__
        assert isinstance(cause, KeyServerError) and is_transient(cause)
        assert isinstance(cause, {"status=503": KeyServerHTTPError, "reset": KeyServerError,
                                  "delay=3": KeyServerTimeout}[fault])
        with pytest.raises(KeyGraceExpired):  # and so on while the keys are missing
            _seg(session, r, 5)
        closing = time.monotonic()
    assert time.monotonic() - closing < 5  # close() does not sit out a back-off wait
    grace = _grace_records(caplog)
    assert [rec.levelno for rec in grace] == [logging.WARNING] * 2
    assert "at 4.000s" in grace[0].getMessage() and "at 6.000s" in grace[1].getMessage()
    assert "key period 1" in grace[0].getMessage()
    key0 = ks.key_for("outage", s0.kid)
    for i, s in enumerate([s0, s1, s2, s3]):
        assert s.data != r.data(i) and _decrypts(s, key0, r.data(i))
    _no_keys_in(caplog.text + repr(info.value), [key0])


def test_recovery_within_the_grace_time(ks: KeyServer, live_media: dict[str, Rendition],
                                        caplog: pytest.LogCaptureFixture) -> None:
    """The server comes back during the grace time: the background retries get period 1's
    keys, and the next segment uses them (its new key announced before it)."""
    caplog.set_level(logging.INFO)
    r = live_media["ts"]
    policy = LiveKeyPolicy(lead=2.0, grace=4.0, backoff=0.05, max_backoff=0.2)
    with LiveSession(_source(ks, "recover"), RotationSchedule(interval=4.0), Scheme.AES_128,
                     key_policy=policy) as session:
        s0 = _seg(session, r, 0)
        ks.faults = parse_faults(["status=503"])
        s1 = _seg(session, r, 1)
        assert not session.ready(1, WAIT)
        s2 = _seg(session, r, 2)
        assert s2.reused_key and s2.kid == s0.kid
        before = _speke(ks)
        ks.faults = parse_faults([])
        _until(lambda: 1 in session.cached_periods)  # a background retry got them
        assert _speke(ks) > before
        s3 = _seg(session, r, 3)
        assert s3.period == 1 and not s3.reused_key and s3.kid != s0.kid and s3.key_lines
        s4 = _seg(session, r, 4)
        assert s4.period == 2 and not s4.reused_key and s4.kid not in (s0.kid, s3.kid)
    assert len(_grace_records(caplog)) == 1
    assert "retrying in" in caplog.text  # the background retries were logged
    keys = {s.kid: ks.key_for("recover", s.kid) for s in (s0, s3, s4)}
    for i, s in enumerate([s0, s1, s2, s3, s4]):
        assert _decrypts(s, keys[s.kid], r.data(i))
    assert not _decrypts(s3, keys[s0.kid], r.data(3))
    _no_keys_in(caplog.text, list(keys.values()))


def test_a_late_prefetch_is_not_waited_for(ks: KeyServer, live_media: dict[str, Rendition],
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The key server answers 4 s late: the boundary segment waits 0.5 s (``wait``) for the
    prefetch in flight, then uses the grace keys; the keys are used once they are in."""
    r = live_media["ts"]
    policy = LiveKeyPolicy(lead=2.0, grace=4.0, wait=0.5)
    with LiveSession(_source(ks, "late"), RotationSchedule(interval=4.0), Scheme.AES_128,
                     key_policy=policy) as session:
        s0 = _seg(session, r, 0)
        ks.faults = parse_faults(["delay=4"])
        _seg(session, r, 1)  # period 1's prefetch starts; its answer comes 4 s later
        start = time.monotonic()
        s2 = _seg(session, r, 2)
        assert 0.5 <= time.monotonic() - start < 3.0
        assert s2.reused_key and s2.kid == s0.kid
        _until(lambda: 1 in session.cached_periods)
        s3 = _seg(session, r, 3)
        assert s3.period == 1 and not s3.reused_key and s3.kid != s0.kid and s3.key_lines
    assert "still in flight" in caplog.text
    assert _decrypts(s3, ks.key_for("late", s3.kid), r.data(3))


def test_a_fetch_started_by_the_segment_is_waited_for(ks: KeyServer,
                                                      live_media: dict[str, Rendition]) -> None:
    """No prefetch: the boundary segment starts the fetch itself and waits for it (1 s late),
    grace time or not: grace keys stand in for failures and late prefetches only."""
    r = live_media["ts"]
    policy = LiveKeyPolicy(grace=4.0, wait=0.1)
    with LiveSession(_source(ks, "own"), RotationSchedule(interval=4.0), Scheme.AES_128,
                     key_policy=policy, prefetch=False) as session:
        s0 = _seg(session, r, 0)
        _seg(session, r, 1)
        ks.faults = parse_faults(["delay=1"])
        s2 = _seg(session, r, 2)
        assert s2.period == 1 and not s2.reused_key and s2.kid != s0.kid
        assert _speke(ks) == 2


def test_no_keys_ever_no_grace(ks: KeyServer, live_media: dict[str, Rendition]) -> None:
    """No keys yet: nothing can stand in, whatever the grace time; recovery on the next try."""
    r = live_media["ts"]
    ks.faults = parse_faults(["status=503"])
    policy = LiveKeyPolicy(grace=60.0, backoff=20.0, max_backoff=20.0)
    with LiveSession(_source(ks, "nokeys", retries=0), RotationSchedule(interval=4.0),
                     Scheme.AES_128, key_policy=policy) as session:
        with pytest.raises(KeyRotationError) as info:
            _seg(session, r, 0)
        assert not isinstance(info.value, KeyGraceExpired) and info.value.period == 0
        ks.faults = parse_faults([])
        s0 = _seg(session, r, 0)  # the segment asks once more at once (no 10-20 s wait)
        assert not s0.reused_key and _decrypts(s0, ks.key_for("nokeys", s0.kid), r.data(0))
