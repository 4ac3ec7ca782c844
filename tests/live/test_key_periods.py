"""Key periods over SPEKE in every version, against the real local key server over HTTP: what
the server received (its request log, parsed as CPIX) carries the right ContentKeyPeriod
elements and KeyPeriodFilters (v1 and v2.0: index; v2.1: index and the period's wall-clock
start/end), keys differ per period and each period's segments decrypt with that period's key
only (openssl); SPEKE v1 may ask for several periods per request (fewer requests, same keys),
and a multi-period answer is validated strictly."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from speke_packager.constants import DrmSystem, Scheme, SpekeVersion
from speke_packager.errors import CpixValidationError, KeyRotationError, UsageError
from speke_packager.keys import SpekeClient
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keys.request import build_request
from speke_packager.keyserver import KeyServer
from speke_packager.model import KeyPeriod
from speke_packager.pipeline.live import LiveKeyPolicy, LiveSegment, LiveSession, SpekeKeySource
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import SEGMENT, Rendition
from .helpers import contract, openssl_decrypt

WAIT = 60.0
ORIGIN = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)


def _source(ks: KeyServer, cid: str, version: SpekeVersion, schedule: RotationSchedule, *,
            fault: str | None = None) -> SpekeKeySource:
    http = requests.Session()
    if fault:
        http.headers["x-fault"] = fault
    return SpekeKeySource(SpekeClient(ks.speke_url, retries=0, session=http),
                          contract(cid, Scheme.AES_128, (DrmSystem.AES128,), shared=True,
                                   version=version), schedule=schedule)


def _seg(session: LiveSession, r: Rendition, i: int) -> LiveSegment:
    return session.encrypt_segment("main", r.data(i), start_time=i * SEGMENT, sequence=i,
                                   duration=SEGMENT)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _check_decrypts(ks: KeyServer, cid: str, r: Rendition, segs: list[LiveSegment]) -> None:
    """Each segment decrypts with its own period's key (its KID), not with another period's."""
    kids = {s.period: s.kid for s in segs}
    assert len(set(kids.values())) == len(kids)  # a new KID per period
    keys = {p: ks.key_for(cid, kid) for p, kid in kids.items()}
    assert len(set(keys.values())) == len(keys)  # and a new key
    for i, s in enumerate(segs):
        iv = s.keys[0].iv or b""
        assert s.data != r.data(i)
        assert openssl_decrypt(s.data, keys[s.period], iv) == r.data(i)
        other = keys[(s.period + 1) % len(keys)]
        assert openssl_decrypt(s.data, other, iv) != r.data(i)  # negative control


@pytest.mark.parametrize("version", list(SpekeVersion), ids=lambda v: f"v{v.value}")
def test_periods_in_every_version(ks: KeyServer, live_media: dict[str, Rendition],
                                  version: SpekeVersion) -> None:
    cid = f"periods-v{version.value}"
    schedule = RotationSchedule(interval=4.0, origin=ORIGIN)
    r = live_media["ts"]
    with LiveSession(_source(ks, cid, version, schedule), schedule, Scheme.AES_128) as session:
        segs = [_seg(session, r, i) for i in range(6)]  # periods 0, 0, 1, 1, 2, 2
        assert session.ready(3, WAIT)  # the prefetch of period 3
    got = ks.speke_requests()
    assert len(got) == 4  # one request per period
    for n, req in enumerate(got):
        assert req.version_header == version.header
        doc = parse_cpix(req.body)
        assert len(doc.periods) == 1
        p = doc.periods[0]
        assert p.index == n and p.id == f"keyPeriod_{n}"
        if version is SpekeVersion.V2_1:  # the period's wall-clock bounds, xs:dateTime UTC
            assert p.start == _iso(ORIGIN + timedelta(seconds=4 * n))
            assert p.end == _iso(ORIGIN + timedelta(seconds=4 * n + 4))
        else:
            assert p.start is None and p.end is None
        assert doc.usage_rules and all(rule.period_ids == (p.id,) for rule in doc.usage_rules)
        assert {ck.kid for ck in doc.content_keys}.isdisjoint(
            {ck.kid for q in got[:n] for ck in parse_cpix(q.body).content_keys})
    assert [s.period for s in segs] == [0, 0, 1, 1, 2, 2]
    _check_decrypts(ks, cid, r, segs)


def test_v21_without_origin_sends_the_index_only(ks: KeyServer) -> None:
    schedule = RotationSchedule(interval=4.0)
    src = _source(ks, "noorigin", SpekeVersion.V2_1, schedule)
    assert {e.period for e in src(5)} == {KeyPeriod(index=5)}
    p = parse_cpix(ks.speke_requests()[-1].body).periods[0]
    assert (p.index, p.start, p.end) == (5, None, None)


def test_v1_several_periods_per_request(ks: KeyServer, live_media: dict[str, Rendition]) -> None:
    """interval = one segment: periods 0-5; three periods per request -> two requests."""
    cid = "multi"
    schedule = RotationSchedule(interval=2.0)
    r = live_media["ts"]
    with LiveSession(_source(ks, cid, SpekeVersion.V1_0, schedule), schedule, Scheme.AES_128,
                     key_policy=LiveKeyPolicy(periods_per_request=3)) as session:
        segs = [_seg(session, r, i) for i in range(6)]
        assert session.ready(6, WAIT)  # the prefetch of period 6 brings 6-8
    got = ks.speke_requests()
    assert len(got) == 3 and session.fetches == 3
    for n, req in enumerate(got):
        doc = parse_cpix(req.body)
        assert [p.index for p in doc.periods] == [3 * n, 3 * n + 1, 3 * n + 2]
        assert len(doc.content_keys) == 3
        # one rule per key, each pointing at its own period
        assert sorted(rule.period_ids for rule in doc.usage_rules) == \
            [(p.id,) for p in doc.periods]
    assert [s.period for s in segs] == list(range(6))
    _check_decrypts(ks, cid, r, segs)
    # the same KIDs and keys as one request per period would give
    one = _source(ks, cid, SpekeVersion.V1_0, schedule)
    assert one(4).entries[0].kid == segs[4].kid


def test_v2_refuses_several_periods_per_request(ks: KeyServer) -> None:
    schedule = RotationSchedule(interval=2.0)
    for version in (SpekeVersion.V2_0, SpekeVersion.V2_1):
        src = _source(ks, "v2multi", version, schedule)
        with pytest.raises(UsageError, match="one key period per request"):
            LiveSession(src, schedule, Scheme.AES_128,
                        key_policy=LiveKeyPolicy(periods_per_request=2))
        with pytest.raises(UsageError, match="one key period per request"):
            src.client.fetch_periods(src.contract, [KeyPeriod(0), KeyPeriod(1)], per_request=2)
    with pytest.raises(UsageError, match="one key period per request"):
        LiveSession(lambda i: src.client.fetch(src.contract), schedule, Scheme.AES_128,
                    key_policy=LiveKeyPolicy(periods_per_request=2))
    assert ks.request_count("/speke") == 0


@pytest.mark.parametrize(("fault", "check"), [("swap-periods", "usage-rules"),
                                              ("wrong-kid", "usage-rules"),
                                              ("drop=ContentKeyPeriod", "periods")])
def test_multi_period_answers_are_validated(ks: KeyServer, fault: str, check: str) -> None:
    """Each key must come back for the period it was asked for."""
    src = _source(ks, "strict", SpekeVersion.V1_0, RotationSchedule(interval=2.0), fault=fault)
    with pytest.raises(CpixValidationError) as info:
        src.fetch_periods([0, 1, 2])
    assert info.value.check == check
    assert ks.request_count("/speke") == 1


def test_the_key_server_checks_v1_period_references(ks: KeyServer) -> None:
    c = replace(contract("refs", Scheme.AES_128, (DrmSystem.AES128,), shared=True,
                         version=SpekeVersion.V1_0),
                periods=(KeyPeriod(0), KeyPeriod(1)))
    body = build_request(c).body
    ok = requests.post(ks.speke_url, data=body, timeout=30)
    assert ok.status_code == 200
    bad = body.replace(b'periodId="keyPeriod_1"', b'periodId="keyPeriod_7"')
    assert bad != body
    res = requests.post(ks.speke_url, data=bad, timeout=30)
    assert res.status_code == 400 and "names no ContentKeyPeriod" in res.text
    same = body.replace(b'periodId="keyPeriod_1"', b'periodId="keyPeriod_0"')
    res = requests.post(ks.speke_url, data=same, timeout=30)
    assert res.status_code == 400 and "same key period" in res.text


def test_a_source_answering_other_periods_is_refused(ks: KeyServer) -> None:
    real = _source(ks, "other", SpekeVersion.V1_0, RotationSchedule(interval=2.0))

    class Shifted:
        max_periods_per_request = 8

        def __call__(self, index: int):  # type: ignore[no-untyped-def]
            return real(index)

        def fetch_periods(self, indexes):  # type: ignore[no-untyped-def]
            got = real.fetch_periods([i + 1 for i in indexes])
            return {i - 1: ks_ for i, ks_ in got.items()}

    schedule = RotationSchedule(interval=2.0)
    with LiveSession(Shifted(), schedule, Scheme.AES_128, prefetch=False,
                     key_policy=LiveKeyPolicy(periods_per_request=2)) as session, \
            pytest.raises(KeyRotationError, match="answered key period 1 for key period 0"):
        session.keys_for(0)
