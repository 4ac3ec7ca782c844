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
    with KeyServer(require_sigv4=True, sigv4_credentials=(AK, SK)) as server:
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
        KeyServer(require_sigv4=True)


def test_licence_endpoint_needs_no_signature(ks: KeyServer) -> None:
    assert requests.get(ks.url + "/healthz", timeout=10).status_code == 200
    r = requests.post(ks.clearkey_license_url + "?content_id=c", timeout=10,
                      data=b'{"kids":["ABEiM0RVZneImaq7zN3u_w"]}')
    assert r.status_code == 200


# --- TLS ---------------------------------------------------------------------------------------
def test_tls(pki: dict[str, CertPair]) -> None:
    server, ca = pki["server"], pki["ca"]
    with KeyServer(tls_cert=str(server.cert_pem), tls_key=str(server.key_pem)) as ks:
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
    with KeyServer(tls_cert=str(server.cert_pem), tls_key=str(server.key_pem),
                   client_ca=str(ca.cert_pem)) as ks:
        body = _req.v2_request()
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          verify=str(ca.cert_pem), timeout=10,
                          cert=(str(client.cert_pem), str(client.key_pem)))
        assert r.status_code == 200
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          verify=str(ca.cert_pem), timeout=10)
        assert r.status_code == 403
        stranger = pki["stranger"]
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          verify=str(ca.cert_pem), timeout=10,
                          cert=(str(stranger.cert_pem), str(stranger.key_pem)))


def test_tls_config_errors(pki: dict[str, CertPair], tmp_path: object) -> None:
    with pytest.raises(UsageError):
        KeyServer(tls_cert=str(pki["server"].cert_pem))
    with pytest.raises(UsageError):
        KeyServer(client_ca=str(pki["ca"].cert_pem))
    with pytest.raises(UsageError):
        KeyServer(tls_cert="/nonexistent.crt", tls_key="/nonexistent.key").start()


def test_openssl_sees_server_certificate(pki: dict[str, CertPair]) -> None:
    server = pki["server"]
    with KeyServer(tls_cert=str(server.cert_pem), tls_key=str(server.key_pem)) as ks:
        pem = ssl.get_server_certificate(("127.0.0.1", ks.port))
        assert ssl.PEM_cert_to_DER_cert(pem) == server.cert_der
