"""SpekeClient against real HTTP servers on 127.0.0.1: the local key server (all versions,
DRMs, presets, periods, encrypted keys, faults) and a recording proxy (retries, back-off,
SigV4 verified server-side with botocore, URL kept unchanged), mutual TLS with test-time certs."""

from __future__ import annotations

import base64
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

import pytest
import requests
from botocore.auth import SigV4Auth as BotoSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import (
    CpixError,
    CpixValidationError,
    KeyAuthError,
    KeyServerError,
    KeyServerHTTPError,
    KeyServerTimeout,
    UsageError,
)
from speke_packager.keys import (
    DeliveryKey,
    EncryptionContract,
    HeaderAuth,
    MtlsAuth,
    NoAuth,
    SigV4Auth,
    SpekeClient,
    fetch_keys,
)
from speke_packager.keys.client import is_transient
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keyserver import KeyServer
from speke_packager.model import KeyPeriod
from tests.keys.conftest import Pki, Proxy, Recorded

WV, PR, FP, CK, AES = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                       DrmSystem.CLEARKEY, DrmSystem.AES128)
AK, SK = "AKIDEXAMPLETEST", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


# The key server answers status faults before reading the request body, which leaves the body
# on a kept-alive connection; ask it to close so the next attempt starts clean.
CLOSE = {"Connection": "close"}


class Sleeps(list[float]):
    def __call__(self, s: float) -> None:
        self.append(s)


CASES = [
    (SpekeVersion.V2_0, (WV, PR), (Packaging.DASH,), Scheme.CENC, "PRESET-VIDEO-3",
     "PRESET-AUDIO-2"),
    (SpekeVersion.V2_0, (WV, PR, FP), (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CBCS,
     "PRESET-VIDEO-8", "PRESET-AUDIO-3"),
    (SpekeVersion.V2_0, (WV,), (Packaging.DASH,), Scheme.CBCS, "PRESET-VIDEO-4", "UNENCRYPTED"),
    (SpekeVersion.V2_0, (PR,), (Packaging.DASH,), Scheme.CENC, "PRESET-VIDEO-6",
     "PRESET-AUDIO-1"),
    (SpekeVersion.V2_0, (WV, PR), (Packaging.HLS_FMP4,), Scheme.CBCS, "PRESET-VIDEO-7",
     "PRESET-AUDIO-1"),
    (SpekeVersion.V2_0, (FP,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES, "PRESET-VIDEO-5",
     "PRESET-AUDIO-1"),
    (SpekeVersion.V2_0, (AES,), (Packaging.HLS_TS,), Scheme.AES_128, "PRESET-VIDEO-2",
     "PRESET-AUDIO-1"),
    (SpekeVersion.V2_0, (CK,), (Packaging.DASH,), Scheme.CENC, "PRESET-VIDEO-1",
     "PRESET-AUDIO-1"),
    (SpekeVersion.V2_1, (WV, FP), (Packaging.HLS_FMP4,), Scheme.CBCS, "SHARED", "SHARED"),
    (SpekeVersion.V2_1, (WV, PR, FP), (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CBCS,
     "PRESET-VIDEO-1", "PRESET-AUDIO-1"),
    (SpekeVersion.V1_0, (WV, PR, FP), (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CBCS,
     "PRESET-VIDEO-1", "PRESET-AUDIO-1"),
    (SpekeVersion.V1_0, (PR,), (Packaging.DASH,), Scheme.CENC, "PRESET-VIDEO-1",
     "PRESET-AUDIO-1"),
    (SpekeVersion.V1_0, (AES,), (Packaging.HLS_TS,), Scheme.AES_128, "PRESET-VIDEO-1",
     "PRESET-AUDIO-1"),
]


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize(("version", "drm", "pkg", "scheme", "vp", "ap"), CASES)
def test_fetch_against_key_server(ks: KeyServer, version: SpekeVersion,
                                  drm: tuple[DrmSystem, ...], pkg: tuple[Packaging, ...],
                                  scheme: Scheme, vp: str, ap: str, periodic: bool) -> None:
    period = KeyPeriod(7) if periodic else None
    c = EncryptionContract("chan-7", drm, pkg, scheme, version, vp, ap, period=period)
    keys = SpekeClient(ks.speke_url, retries=0).fetch(c)
    assert keys.version is version and keys.scheme is scheme
    for e in keys:
        assert e.key.key == ks.key_for("chan-7", e.kid)
        assert e.key.key != ks.key_for("chan-8", e.kid)  # negative control
        assert e.period == period
        assert {s.drm for s in e.drm} == set(drm)
        for s in e.drm:
            if Packaging.DASH in pkg and s.drm in (WV, PR, CK):
                assert s.pssh and s.content_protection_data
            if any(p is not Packaging.DASH for p in pkg):
                if s.drm in (FP, AES) or pkg != (Packaging.DASH,):
                    assert s.hls_media and s.hls_master
    if version is SpekeVersion.V1_0 or vp == "SHARED":
        assert [e.track_type for e in keys] == ["ALL"]


def test_fetch_periods_several_per_request_v1(ks: KeyServer, proxy: Proxy) -> None:
    """SPEKE v1: five periods, two per request -> three requests, one key per period, the same
    KIDs as one request per period; v2 refuses more than one."""
    c = EncryptionContract("live-2", (FP,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES,
                           SpekeVersion.V1_0)
    periods = [KeyPeriod(i) for i in range(5)]
    keys = SpekeClient(proxy.url, retries=0).fetch_periods(c, periods, per_request=2)
    assert [len(parse_cpix(r.body).periods) for r in proxy.requests] == [2, 2, 1]
    assert [e.period.index for e in keys if e.period] == [0, 1, 2, 3, 4]
    one = SpekeClient(proxy.url, retries=0).fetch_periods(c, periods)
    assert len(proxy.requests) == 8
    assert [e.kid for e in one] == [e.kid for e in keys]
    for e in keys:
        assert e.key.key == ks.key_for("live-2", e.kid)
    with pytest.raises(UsageError, match="one key period per request"):
        SpekeClient(proxy.url).fetch_periods(replace(c, version=SpekeVersion.V2_0), periods,
                                             per_request=2)
    assert len(proxy.requests) == 8


def test_v1_kid_override_in_a_multi_period_answer(ks: KeyServer, proxy: Proxy) -> None:
    """A v1 server that replaces every KID of a three-period answer (rules included): each new
    KID is matched to its request key by its KeyPeriodFilter."""
    import uuid

    new_kid: dict[str, str] = {}

    def override(rec: Recorded) -> tuple[int, bytes, dict[str, str]]:
        answer = requests.post(ks.speke_url, data=rec.body, timeout=30).content
        for ck in parse_cpix(rec.body).content_keys:
            new_kid[ck.kid] = str(uuid.uuid5(uuid.NAMESPACE_OID, ck.kid))
            answer = answer.replace(ck.kid.encode(), new_kid[ck.kid].encode())
        return 200, answer, {"Content-Type": "application/xml"}

    proxy.check = override
    c = EncryptionContract("live-3", (AES,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES,
                           SpekeVersion.V1_0)
    keys = SpekeClient(proxy.url, retries=0).fetch_periods(c, [KeyPeriod(i) for i in range(3)],
                                                           per_request=3)
    sent = parse_cpix(proxy.requests[0].body)
    by_period = {r.period_ids[0]: r.kid for r in sent.usage_rules}
    assert len(new_kid) == 3
    for e in keys:
        assert e.period is not None
        old = by_period[e.period.period_id]
        assert str(e.kid) == new_kid[old]  # the server's KID, for the period it was asked for
        assert e.key.key == ks.key_for("live-3", UUID(old))


def test_fetch_periods_one_request_each(ks: KeyServer, proxy: Proxy) -> None:
    c = EncryptionContract("live-1", (WV, FP), (Packaging.HLS_FMP4,), Scheme.CBCS,
                           SpekeVersion.V2_1)
    periods = [KeyPeriod(i, start=f"2025-01-01T00:0{i}:00Z", end=f"2025-01-01T00:0{i + 1}:00Z")
               for i in range(3)]
    keys = SpekeClient(proxy.url, retries=0).fetch_periods(c, periods)
    assert len(proxy.requests) == 3
    assert [e.period.index for e in keys if e.period] == [0, 0, 1, 1, 2, 2]
    assert len({e.kid for e in keys}) == 6
    for rec, p in zip(proxy.requests, periods, strict=True):
        doc = parse_cpix(rec.body)
        assert [(x.index, x.start) for x in doc.periods] == [(p.index, p.start)]
    for e in keys:
        assert e.key.key == ks.key_for("live-1", e.kid)


@pytest.mark.parametrize("layout", ["A", "B"])
def test_encrypted_keys_end_to_end(ks: KeyServer, pki: Pki, layout: str) -> None:
    dk = DeliveryKey.load(pki.delivery.pfx, password="s3cret")  # type: ignore[arg-type]
    client = SpekeClient(ks.speke_url, delivery_key=dk, retries=0,
                         auth=HeaderAuth({"x-fault": f"layout={layout}"}))
    req = client.prepare(EncryptionContract("chan-9", (WV, PR), video_preset="PRESET-VIDEO-2"))
    assert b"X509Certificate" in req.body
    keys = client.fetch(EncryptionContract("chan-9", (WV, PR), video_preset="PRESET-VIDEO-2"))
    assert len(keys) == 3
    for e in keys:
        assert e.key.key == ks.key_for("chan-9", e.kid)


def test_wire_format(proxy: Proxy) -> None:
    SpekeClient(proxy.url, retries=0).fetch(EncryptionContract("chan-7", (WV,)))
    SpekeClient(proxy.url, retries=0).fetch(EncryptionContract("chan-7", (WV,),
                                                               version=SpekeVersion.V1_0))
    v2, v1 = proxy.requests
    assert v2.path == "/speke/v2.0/copyProtection?x=1"  # URL used unchanged
    assert v2.method == "POST"
    assert v2.headers["x-speke-version"] == "2.0"  # exact lower-case name on the wire
    assert v2.headers["content-type"] == "application/xml"
    assert not {k.lower() for k in v1.headers} & {"x-speke-version"}


# ---- retries ----------------------------------------------------------------------------------

def test_retries_then_success_resend_identical_document(proxy: Proxy) -> None:
    proxy.script = [(503, {}, b"busy"), (500, {}, b"oops"), (502, {}, b""), (504, {}, b"")]
    sleeps = Sleeps()
    client = SpekeClient(proxy.url, retries=4, backoff=0.2, sleep=sleeps)
    keys = client.fetch(EncryptionContract("chan-7", (WV,), explicit_iv=True))
    assert len(keys) == 2 and client.attempts == 5
    assert len(proxy.requests) == 5
    assert len({r.body for r in proxy.requests}) == 1  # identical document, same IVs and KIDs
    assert {r.headers["x-speke-version"] for r in proxy.requests} == {"2.0"}
    # exponential back-off with jitter: backoff * 2**n * [0.5, 1)
    assert len(sleeps) == 4
    for n, s in enumerate(sleeps):
        assert 0.2 * 2**n * 0.5 <= s <= 0.2 * 2**n


def test_retry_after_is_honoured(proxy: Proxy) -> None:
    proxy.script = [(429, {"Retry-After": "0.05"}, b"slow down"), (408, {}, b"")]
    sleeps = Sleeps()
    SpekeClient(proxy.url, retries=2, backoff=0.01, sleep=sleeps).fetch(
        EncryptionContract("chan-7", (WV,)))
    assert sleeps[0] == 0.05 and len(sleeps) == 2 and len(proxy.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_no_retry_on_client_errors(ks: KeyServer, status: int) -> None:
    sleeps = Sleeps()
    client = SpekeClient(ks.speke_url, retries=3, sleep=sleeps,
                         auth=HeaderAuth({"x-fault": f"status={status}", **CLOSE}))
    with pytest.raises(KeyServerHTTPError) as ei:
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert ei.value.status == status and client.attempts == 1 and sleeps == []
    assert f"HTTP {status}" in str(ei.value)
    assert not is_transient(ei.value)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retry_statuses_exhausted(ks: KeyServer, status: int) -> None:
    sleeps = Sleeps()
    client = SpekeClient(ks.speke_url, retries=2, sleep=sleeps,
                         auth=HeaderAuth({"x-fault": f"status={status}", **CLOSE}))
    with pytest.raises(KeyServerHTTPError) as ei:
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert ei.value.status == status and client.attempts == 3 and len(sleeps) == 2
    assert is_transient(ei.value)  # a later try may succeed (live: background retries)


def test_backoff_is_capped(ks: KeyServer) -> None:
    """backoff * 2**n, capped at max_backoff, each wait 50-100 % of it (jitter)."""
    sleeps = Sleeps()
    client = SpekeClient(ks.speke_url, retries=6, backoff=0.1, max_backoff=0.4, sleep=sleeps,
                         auth=HeaderAuth({"x-fault": "status=503", **CLOSE}))
    with pytest.raises(KeyServerHTTPError):
        client.fetch(EncryptionContract("chan-7", (WV,)))
    caps = [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert len(sleeps) == 6
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, caps, strict=True))
    with pytest.raises(UsageError):
        SpekeClient(ks.speke_url, backoff=2, max_backoff=1)


def test_spec_error_string_on_500_is_final(proxy: Proxy) -> None:
    proxy.script = [(500, {"X-Speke-User-Agent": "ref"}, b"Missing CPIX@contentId")] * 3
    client = SpekeClient(proxy.url, retries=2, sleep=Sleeps())
    with pytest.raises(KeyServerHTTPError) as ei:
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert client.attempts == 1 and not is_transient(ei.value)
    assert ei.value.server_message == "Missing CPIX@contentId"
    assert "(ref)" in str(ei.value)


def test_real_422_from_key_server_is_final(ks: KeyServer) -> None:
    client = SpekeClient(ks.speke_url, retries=2, sleep=Sleeps(),
                         auth=HeaderAuth({"x-speke-version": "3.0"}))
    with pytest.raises(KeyServerHTTPError) as ei:
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert ei.value.status == 422 and "Unsupported SPEKE version" in ei.value.server_message
    assert client.attempts == 1


def test_read_timeout_retried_then_typed_error(ks: KeyServer) -> None:
    sleeps = Sleeps()
    client = SpekeClient(ks.speke_url, retries=1, timeout=(2.0, 0.3), sleep=sleeps,
                         auth=HeaderAuth({"x-fault": "delay=2"}))
    with pytest.raises(KeyServerTimeout):
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert client.attempts == 2 and len(sleeps) == 1


def test_connection_refused_and_reset_are_retried(ks: KeyServer) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    client = SpekeClient(f"http://127.0.0.1:{port}/speke", retries=2, sleep=Sleeps())
    with pytest.raises(KeyServerError, match="cannot reach"):
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert client.attempts == 3
    client = SpekeClient(ks.speke_url, retries=1, sleep=Sleeps(),
                         auth=HeaderAuth({"x-fault": "reset"}))
    with pytest.raises(KeyServerError):
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert client.attempts == 2


def test_response_size_cap_and_truncation(ks: KeyServer) -> None:
    client = SpekeClient(ks.speke_url, retries=0, max_response_bytes=2000)
    with pytest.raises(KeyServerError, match="limit"):
        client.fetch(EncryptionContract("chan-7", (WV, PR)))
    client = SpekeClient(ks.speke_url, retries=0, auth=HeaderAuth({"x-fault": "truncate"}))
    with pytest.raises(CpixError, match="not well-formed"):
        client.fetch(EncryptionContract("chan-7", (WV,)))


def test_never_downgrades_to_v1(proxy: Proxy) -> None:
    proxy.script = [(503, {}, b"")] * 4
    client = SpekeClient(proxy.url, retries=3, sleep=Sleeps())
    with pytest.raises(KeyServerHTTPError):
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert [r.headers.get("x-speke-version") for r in proxy.requests] == ["2.0"] * 4


# ---- SigV4 -------------------------------------------------------------------------------------

def _verify_sigv4_with_botocore(rec: Recorded, secret: str) -> tuple[int, bytes] | None:
    auth = rec.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return 401, b"missing signature"
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    access, _date, region, service, _ = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    lower = {k.lower(): v for k, v in rec.headers.items()}
    headers = {h: lower[h] for h in signed}
    url = f"http://{lower['host']}{rec.path}"
    req = AWSRequest(method=rec.method, url=url, data=rec.body, headers=headers)
    req.context["timestamp"] = lower["x-amz-date"]
    signer = BotoSigV4(Credentials(access, secret, lower.get("x-amz-security-token")),
                       service, region)
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    if expected != fields["Signature"] or service != "execute-api" or region != "eu-west-3":
        return 403, b'{"message":"The request signature we calculated does not match"}'
    for h in ("host", "x-amz-date", "content-type", "x-speke-version"):
        if h not in signed:
            return 403, f"{h} not signed".encode()
    return None


def test_sigv4_verified_server_side_with_botocore(proxy: Proxy) -> None:
    proxy.check = lambda rec: _verify_sigv4_with_botocore(rec, SK)
    proxy.script = [(503, {}, b"")]
    client = SpekeClient(proxy.url, retries=1, sleep=Sleeps(),
                         auth=SigV4Auth("eu-west-3", credentials=(AK, SK, "session-token")))
    keys = client.fetch(EncryptionContract("chan-7", (WV,)))
    assert len(keys) == 2 and len(proxy.requests) == 2
    for r in proxy.requests:  # re-signed per attempt
        assert r.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE")
        assert r.headers["X-Amz-Security-Token"] == "session-token"
    # negative control: the server checks with another secret -> 403, not retried
    proxy.requests.clear()
    proxy.check = lambda rec: _verify_sigv4_with_botocore(rec, SK + "x")
    with pytest.raises(KeyServerHTTPError) as ei:
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert ei.value.status == 403 and len(proxy.requests) == 1


def test_sigv4_credential_chain_from_environment(proxy: Proxy,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Any) -> None:
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    proxy.check = lambda rec: _verify_sigv4_with_botocore(rec, SK)
    keys = SpekeClient(proxy.url, retries=0, auth=SigV4Auth("eu-west-3")).fetch(
        EncryptionContract("chan-7", (WV,)))
    assert len(keys) == 2
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(KeyAuthError, match="no AWS credentials"):
        SpekeClient(proxy.url, retries=0, auth=SigV4Auth("eu-west-3")).fetch(
            EncryptionContract("chan-7", (WV,)))


def test_sigv4_against_key_server(pki: Pki) -> None:
    with KeyServer(allow_fault_header=True, seed="s", require_sigv4=True, sigv4_credentials=(AK, SK)) as ks:
        ok = SpekeClient(ks.speke_url, retries=0, auth=SigV4Auth("us-east-1",
                                                                 credentials=(AK, SK)))
        assert len(ok.fetch(EncryptionContract("chan-7", (WV, PR)))) == 2
        bad = SpekeClient(ks.speke_url, retries=3, sleep=Sleeps(),
                          auth=SigV4Auth("us-east-1", credentials=(AK, "nope")))
        with pytest.raises(KeyServerHTTPError) as ei:
            bad.fetch(EncryptionContract("chan-7", (WV,)))
        assert ei.value.status == 403 and bad.attempts == 1
        with pytest.raises(KeyServerHTTPError) as ei:
            SpekeClient(ks.speke_url, retries=0).fetch(EncryptionContract("chan-7", (WV,)))
        assert ei.value.status in (401, 403)


@pytest.fixture()
def fake_sts() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP server answering STS AssumeRole with temporary credentials."""
    seen: list[bytes] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(body)
            xml = (b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                   b"<AssumeRoleResult><Credentials><AccessKeyId>ASIATEMP</AccessKeyId>"
                   b"<SecretAccessKey>tempsecret</SecretAccessKey><SessionToken>tok</SessionToken>"
                   b"<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
                   b"<AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn>"
                   b"<AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>"
                   b"</AssumeRoleResponse>")
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()


def test_sigv4_assume_role(proxy: Proxy, fake_sts: tuple[str, list[bytes]]) -> None:
    url, seen = fake_sts
    proxy.check = lambda rec: _verify_sigv4_with_botocore(rec, "tempsecret")
    auth = SigV4Auth("eu-west-3", role_arn="arn:aws:iam::123456789012:role/speke",
                     credentials=(AK, SK), sts_endpoint_url=url)
    client = SpekeClient(proxy.url, retries=0, auth=auth)
    client.fetch(EncryptionContract("chan-7", (WV,)))
    client.fetch(EncryptionContract("chan-8", (WV,)))
    assert len(seen) == 1 and b"AssumeRole" in seen[0]  # cached until near expiry
    assert b"RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fspeke" in seen[0]
    assert all("Credential=ASIATEMP/" in r.headers["Authorization"] for r in proxy.requests)
    assert all(r.headers["X-Amz-Security-Token"] == "tok" for r in proxy.requests)


# ---- mTLS and TLS verification -----------------------------------------------------------------

@pytest.fixture()
def tls_ks(pki: Pki) -> Iterator[KeyServer]:
    with KeyServer(allow_fault_header=True, seed="tls", tls_cert=str(pki.server.cert), tls_key=str(pki.server.key),
                   client_ca=str(pki.ca.cert)) as server:
        yield server


def test_mtls(tls_ks: KeyServer, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    assert tls_ks.speke_url.startswith("https://")
    c = EncryptionContract("chan-7", (WV,))
    good = SpekeClient(tls_ks.speke_url, retries=0,
                       auth=MtlsAuth(str(pki.client.cert), str(pki.client.key), str(pki.ca.cert)))
    for e in good.fetch(c):
        assert e.key.key == tls_ks.key_for("chan-7", e.kid)
    # no client certificate
    with pytest.raises(KeyServerError):
        SpekeClient(tls_ks.speke_url, retries=0, verify_tls=str(pki.ca.cert)).fetch(c)
    # a client certificate from a CA the server does not trust
    with pytest.raises(KeyServerError):
        SpekeClient(tls_ks.speke_url, retries=0,
                    auth=MtlsAuth(str(pki.other_client.cert), str(pki.other_client.key),
                                  str(pki.ca.cert))).fetch(c)
    # server not trusted by the default CA store: TLS error, not retried
    sleeps = Sleeps()
    strict = SpekeClient(tls_ks.speke_url, retries=2, sleep=sleeps,
                         auth=MtlsAuth(str(pki.client.cert), str(pki.client.key)))
    with pytest.raises(KeyServerError, match="TLS"):
        strict.fetch(c)
    assert strict.attempts == 1 and sleeps == []
    # --insecure: works, and says so loudly
    with caplog.at_level(logging.WARNING):
        insecure = SpekeClient(tls_ks.speke_url, retries=0, verify_tls=False,
                               auth=MtlsAuth(str(pki.client.cert), str(pki.client.key)))
    assert "DISABLED" in caplog.text
    assert len(insecure.fetch(c)) == 2


def test_header_auth_and_fetch_keys(proxy: Proxy) -> None:
    proxy.check = lambda rec: None if rec.headers.get("x-api-key") == "k-123" else (401, b"no")
    ks = fetch_keys(proxy.url, EncryptionContract("chan-7", (WV,)),
                    auth=HeaderAuth({"x-api-key": "k-123"}), retries=0)
    assert len(ks) == 2
    with pytest.raises(KeyServerHTTPError) as ei:
        fetch_keys(proxy.url, EncryptionContract("chan-7", (WV,)), auth=NoAuth(), retries=0)
    assert ei.value.status == 401
    assert "k-123" not in repr(HeaderAuth({"x-api-key": "k-123"}))


def test_version_echo_fault_through_client(ks: KeyServer) -> None:
    client = SpekeClient(ks.speke_url, retries=0, auth=HeaderAuth({"x-fault": "version=1.0"}))
    with pytest.raises(CpixValidationError) as ei:
        client.fetch(EncryptionContract("chan-7", (WV,)))
    assert ei.value.check == "version-echo"
    assert client.attempts == 1  # an invalid answer is not retried, and never as v1


def test_delivery_key_mismatch_contract(ks: KeyServer, pki: Pki) -> None:
    dk = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    other = DeliveryKey.load(pki.delivery_other.cert, pki.delivery_other.key)
    c = replace(EncryptionContract("chan-7", (WV,)), delivery_cert_der=other.certificate_der)
    with pytest.raises(CpixValidationError, match="does not match"):
        SpekeClient(ks.speke_url, retries=0, delivery_key=dk).fetch(c)


def test_server_wide_faults_option() -> None:
    c = EncryptionContract("chan-7", (WV, PR))
    with KeyServer(allow_fault_header=True, seed="f", faults=["change-scheme"]) as bad:
        with pytest.raises(CpixValidationError) as ei:
            SpekeClient(bad.speke_url, retries=0).fetch(c)
        assert ei.value.check == "scheme" and ei.value.kid
    with KeyServer(allow_fault_header=True, seed="f", faults=["status=503"]) as busy:
        client = SpekeClient(busy.speke_url, retries=2, sleep=Sleeps(),
                             auth=HeaderAuth(CLOSE))
        with pytest.raises(KeyServerHTTPError):
            client.fetch(c)
        assert client.attempts == 3


def test_missing_user_agent_only_warns(ks: KeyServer, caplog: pytest.LogCaptureFixture) -> None:
    client = SpekeClient(ks.speke_url, retries=0, auth=HeaderAuth({"x-fault": "no-user-agent"}))
    with caplog.at_level(logging.WARNING):
        keys = client.fetch(EncryptionContract("chan-7", (WV,)))
    assert len(keys) == 2 and "X-Speke-User-Agent" in caplog.text


def _digest_check(user: str, password: str) -> Any:
    """Server side of RFC 7616 Digest (MD5, qop=auth), written from the RFC."""
    import hashlib
    import re as _re

    nonce = "n0nce-1234"
    realm = "speke"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # the RFC 7616 MD5 algorithm

    def check(rec: Recorded) -> tuple[Any, ...] | None:
        auth = rec.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": f'Digest realm="{realm}", nonce="{nonce}", qop="auth", '
                                         'algorithm=MD5'}
        if not auth.startswith("Digest "):
            return 401, b"auth required", challenge
        f = dict(_re.findall(r'(\w+)="?([^",]+)"?', auth[7:]))
        ha1 = md5(f"{f['username']}:{realm}:{password}")
        ha2 = md5(f"POST:{f['uri']}")
        want = md5(f"{ha1}:{nonce}:{f['nc']}:{f['cnonce']}:auth:{ha2}")
        if f["username"] != user or f["response"] != want or f["nonce"] != nonce:
            return 401, b"bad credentials", challenge
        return None

    return check


def test_digest_auth(proxy: Proxy) -> None:
    from speke_packager.keys import DigestAuth

    proxy.check = _digest_check("packager", "pa55")
    client = SpekeClient(proxy.url, retries=0, auth=DigestAuth("packager", "pa55"))
    keys = client.fetch(EncryptionContract("chan-7", (WV,)))
    assert len(keys) == 2
    assert len(proxy.requests) == 2  # the challenge, then the same document with credentials
    assert proxy.requests[0].body == proxy.requests[1].body
    assert "pa55" not in repr(DigestAuth("packager", "pa55"))
    proxy.requests.clear()
    with pytest.raises(KeyServerHTTPError) as ei:
        SpekeClient(proxy.url, retries=2, sleep=Sleeps(),
                    auth=DigestAuth("packager", "wrong")).fetch(
            EncryptionContract("chan-7", (WV,)))
    assert ei.value.status == 401


def test_basic_auth(proxy: Proxy) -> None:
    from speke_packager.keys import BasicAuth

    good = "Basic " + base64.b64encode(b"u:p").decode()
    proxy.check = lambda rec: None if rec.headers.get("Authorization") == good else (401, b"no")
    assert len(SpekeClient(proxy.url, retries=0, auth=BasicAuth("u", "p")).fetch(
        EncryptionContract("chan-7", (WV,)))) == 2
