"""SigV4 (signed with botocore) accepted and rejected; TLS and client certificates."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from speke_packager.errors import UsageError
from speke_packager.keyserver import KeyServer
from speke_packager.keyserver.sigv4 import SigV4Failure, verify_sigv4

from . import _req
from ._check import check_answer
from .conftest import CertPair

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def signed(url: str, body: bytes, *, ak: str = AK, sk: str = SK, service: str = "execute-api",
           region: str = "eu-west-1", token: str | None = None) -> dict[str, str]:
    req = AWSRequest("POST", url, data=body,
                     headers={"content-type": "application/xml", "x-speke-version": "2.0"})
    SigV4Auth(Credentials(ak, sk, token), service, region).add_auth(req)
    return dict(req.prepare().headers)


@pytest.fixture()
def ks() -> Iterator[KeyServer]:
    with KeyServer(allow_fault_header=True, require_sigv4=True, sigv4_credentials=(AK, SK)) as server:
        yield server


def test_sigv4_accepted(ks: KeyServer) -> None:
    body = _req.v2_request()
    for url in (ks.speke_url, ks.speke_url + "?a=1&b=x%20y"):
        r = requests.post(url, data=body, headers=signed(url, body), timeout=10)
        assert r.status_code == 200, r.text
        check_answer(body, r.content)
    r = requests.post(ks.speke_url, data=body, timeout=10,
                      headers=signed(ks.speke_url, body, token="session-token"))
    assert r.status_code == 200, r.text


def test_sigv4_rejected(ks: KeyServer) -> None:
    body = _req.v2_request()
    r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"}, timeout=10)
    assert r.status_code == 401
    cases = [
        signed(ks.speke_url, body, sk="wrong-secret"),
        signed(ks.speke_url, body, ak="AKIDOTHER"),
        signed(ks.speke_url, body, service="s3"),
        {**signed(ks.speke_url, body), "Authorization": "AWS4-HMAC-SHA256 garbage"},
    ]
    for headers in cases:
        r = requests.post(ks.speke_url, data=body, headers=headers, timeout=10)
        assert r.status_code == 403, headers
        assert "Traceback" not in r.text
    # body changed after signing
    h = signed(ks.speke_url, body)
    r = requests.post(ks.speke_url, data=body.replace(b"chan-7", b"chan-8"), headers=h, timeout=10)
    assert r.status_code == 403
    # signed for another path
    h = signed(ks.url + "/other", body)
    assert requests.post(ks.speke_url, data=body, headers=h, timeout=10).status_code == 403
    # a signed header changed in transit
    h = signed(ks.speke_url, body)
    h["x-speke-version"] = "2.1"
    assert requests.post(ks.speke_url, data=body, headers=h, timeout=10).status_code == 403


def test_sigv4_clock_skew() -> None:
    body = b"x"
    req = AWSRequest("POST", "http://127.0.0.1:1/speke", data=body, headers={})
    SigV4Auth(Credentials(AK, SK), "execute-api", "us-east-1").add_auth(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers["host"] = "127.0.0.1:1"

    class H:
        def get(self, name: str) -> str | None:
            return headers.get(name.lower())

    verify_sigv4("POST", "/speke", H(), body, access_key=AK, secret_key=SK)
    with pytest.raises(SigV4Failure) as exc:
        verify_sigv4("POST", "/speke", H(), body, access_key=AK, secret_key=SK,
                     now=datetime.now(UTC) + timedelta(minutes=20))
    assert exc.value.status == 403 and "expired" in exc.value.reason


def test_sigv4_needs_credentials() -> None:
    with pytest.raises(UsageError):
        KeyServer(allow_fault_header=True, require_sigv4=True)


KID_HEX = "00112233445566778899aabbccddeeff"
LICENCE = b'{"kids":["ABEiM0RVZneImaq7zN3u_w"]}'


def _key_routes(ks: KeyServer) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(method, URL, body, extra headers) of every route that hands out key material."""
    return [
        ("POST", ks.speke_url, _req.v2_request(), {"x-speke-version": "2.0"}),
        ("POST", ks.url + "/copyProtection", _req.v2_request(), {"x-speke-version": "2.0"}),
        ("GET", f"{ks.url}/keys/{KID_HEX}?content_id=c", b"", {}),
        ("HEAD", f"{ks.url}/keys/{KID_HEX}?content_id=c", b"", {}),
        ("POST", ks.clearkey_license_url + "?content_id=c", LICENCE,
         {"content-type": "application/json"}),
    ]


def _sign(method: str, url: str, body: bytes, headers: dict[str, str], *,
          sk: str = SK) -> dict[str, str]:
    req = AWSRequest(method, url, data=body, headers=dict(headers))
    SigV4Auth(Credentials(AK, sk), "execute-api", "eu-west-1").add_auth(req)
    return dict(req.prepare().headers)


def test_every_key_route_needs_a_signature(ks: KeyServer) -> None:
    """One access rule: SPEKE, /keys and the ClearKey licence all refuse unsigned and wrongly
    signed requests and answer correctly signed ones (botocore signs, as a real client would)."""
    assert requests.get(ks.url + "/healthz", timeout=10).status_code == 200  # no key material
    for method, url, body, extra in _key_routes(ks):
        bare = requests.request(method, url, data=body, headers=extra, timeout=10)
        assert bare.status_code == 401, (method, url)
        if method != "HEAD":
            assert bare.json()["message"] == "Missing Authentication Token"
        wrong = requests.request(method, url, data=body, timeout=10,
                                 headers=_sign(method, url, body, extra, sk="wrong"))
        assert wrong.status_code == 403, (method, url)
        # a signature for another KID (GET) or body (POST) does not open this one
        other = url.replace(KID_HEX, "ffeeddccbbaa99887766554433221100")
        tampered = body + b"\n" if body else body
        assert (other, tampered) != (url, body)
        moved = requests.request(method, other, data=tampered, timeout=10,
                                 headers=_sign(method, url, body, extra))
        assert moved.status_code == 403, (method, other)
        good = requests.request(method, url, data=body, timeout=10,
                                headers=_sign(method, url, body, extra))
        assert good.status_code == 200, (method, url, good.text)
        if "/keys/" in url and method == "GET":
            assert len(good.content) == 16
        elif "license" in url:
            assert good.json()["keys"][0]["kid"] == "ABEiM0RVZneImaq7zN3u_w"


def test_fault_header_needs_the_flag() -> None:
    """x-fault is honoured only with allow_fault_header (the flag --allow-fault-header)."""
    kid_url = "/keys/" + KID_HEX + "?content_id=c"
    with KeyServer() as plain, KeyServer(allow_fault_header=True) as testing:
        for server, expected in ((plain, 200), (testing, 418)):
            r = requests.get(server.url + kid_url, headers={"x-fault": "status=418"}, timeout=10)
            assert r.status_code == expected
            r = requests.post(server.speke_url, data=_req.v2_request(), timeout=10,
                              headers={"x-speke-version": "2.0", "x-fault": "status=418"})
            assert r.status_code == expected
    with KeyServer(faults=["status=418"]) as wide:  # server-wide faults still apply
        assert requests.get(wide.url + kid_url, timeout=10).status_code == 418


# --- TLS ---------------------------------------------------------------------------------------
def test_tls(pki: dict[str, CertPair]) -> None:
    server, ca = pki["server"], pki["ca"]
    with KeyServer(allow_fault_header=True, tls_cert=str(server.cert_pem), tls_key=str(server.key_pem)) as ks:
        assert ks.url.startswith("https://127.0.0.1:")
        body = _req.v2_request()
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          verify=str(ca.cert_pem), timeout=10)
        assert r.status_code == 200
        check_answer(body, r.content)
        with pytest.raises(requests.exceptions.SSLError):  # untrusted CA
            requests.get(ks.url + "/healthz", timeout=10, verify=str(pki["stranger"].cert_pem))
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP to a TLS port
            requests.get(ks.url.replace("https", "http") + "/healthz", timeout=10)
        assert requests.get(ks.url + "/healthz", timeout=10,
                            verify=str(ca.cert_pem)).status_code == 200  # still serving


def test_client_certificate(pki: dict[str, CertPair]) -> None:
    server, ca, client = pki["server"], pki["ca"], pki["client"]
    with KeyServer(allow_fault_header=True, tls_cert=str(server.cert_pem), tls_key=str(server.key_pem),
                   client_ca=str(ca.cert_pem)) as ks:
        body = _req.v2_request()
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          verify=str(ca.cert_pem), timeout=10,
                          cert=(str(client.cert_pem), str(client.key_pem)))
        assert r.status_code == 200
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          verify=str(ca.cert_pem), timeout=10)
        assert r.status_code == 403
        for method, url, rbody, extra in _key_routes(ks):
            no_cert = requests.request(method, url, data=rbody, headers=extra, timeout=10,
                                       verify=str(ca.cert_pem))
            assert no_cert.status_code == 403, (method, url)
            with_cert = requests.request(method, url, data=rbody, headers=extra, timeout=10,
                                         verify=str(ca.cert_pem),
                                         cert=(str(client.cert_pem), str(client.key_pem)))
            assert with_cert.status_code == 200, (method, url)
        stranger = pki["stranger"]
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          verify=str(ca.cert_pem), timeout=10,
                          cert=(str(stranger.cert_pem), str(stranger.key_pem)))


def test_tls_config_errors(pki: dict[str, CertPair], tmp_path: object) -> None:
    with pytest.raises(UsageError):
        KeyServer(allow_fault_header=True, tls_cert=str(pki["server"].cert_pem))
    with pytest.raises(UsageError):
        KeyServer(allow_fault_header=True, client_ca=str(pki["ca"].cert_pem))
    with pytest.raises(UsageError):
        KeyServer(allow_fault_header=True, tls_cert="/nonexistent.crt", tls_key="/nonexistent.key").start()


def test_openssl_sees_server_certificate(pki: dict[str, CertPair]) -> None:
    server = pki["server"]
    with KeyServer(allow_fault_header=True, tls_cert=str(server.cert_pem), tls_key=str(server.key_pem)) as ks:
        pem = ssl.get_server_certificate(("127.0.0.1", ks.port))
        assert ssl.PEM_cert_to_DER_cert(pem) == server.cert_der
