"""HTTP behaviour: ClearKey licence, key URLs, CORS, limits and status codes, faults, load."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from lxml import etree

from speke_packager.drm.pssh import parse_pssh
from speke_packager.errors import UsageError
from speke_packager.keyserver import FaultError, KeyServer, parse_faults

from . import _req
from ._check import NS, check_answer, expected_key

SEED = "http-tests"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture()
def ks() -> Iterator[KeyServer]:
    with KeyServer(allow_fault_header=True, seed=SEED) as server:
        yield server


def speke(ks: KeyServer, body: bytes, fault: str | None = None, version: str = "2.0"
          ) -> requests.Response:
    h = {"x-speke-version": version}
    if fault is not None:
        h["x-fault"] = fault
    return requests.post(ks.speke_url, data=body, headers=h, timeout=30)


def licence(ks: KeyServer, kids: list[uuid.UUID], query: str = "", **headers: str
            ) -> requests.Response:
    return requests.post(ks.clearkey_license_url + query, timeout=30, headers=headers,
                         data=json.dumps({"kids": [b64url(k.bytes) for k in kids],
                                          "type": "temporary"}))


# --- ClearKey licence and key URLs ----------------------------------------------------------
def test_clearkey_licence_round_trip(ks: KeyServer) -> None:
    body = _req.v2_request(systems=(_req.CLEARKEY,), scheme="cenc")
    r = speke(ks, body)
    keys = check_answer(body, r.content, license_url=ks.clearkey_license_url).keys
    lic = licence(ks, [_req.KID_V, _req.KID_A], Origin="http://example.test")
    assert lic.status_code == 200
    assert lic.headers["content-type"] == "application/json"
    assert lic.headers["access-control-allow-origin"] == "*"
    doc = lic.json()
    assert doc["type"] == "temporary"
    got = {}
    for jwk in doc["keys"]:
        assert jwk["kty"] == "oct"
        assert "=" not in jwk["kid"] and "=" not in jwk["k"]
        assert "+" not in jwk["k"] and "/" not in jwk["k"]
        assert len(jwk["k"]) == 22
        kid = uuid.UUID(bytes=base64.urlsafe_b64decode(jwk["kid"] + "=="))
        got[kid] = base64.urlsafe_b64decode(jwk["k"] + "==")
    assert got == keys
    # the pssh in the answer carries the KID a CDM will ask for
    pssh = parse_pssh(base64.b64decode(etree.fromstring(r.content).findtext(
        ".//cpix:DRMSystem/cpix:PSSH", namespaces=NS) or ""))
    assert pssh.kids == (_req.KID_V,)


def test_licence_unknown_kid_404_and_content_id_query(ks: KeyServer) -> None:
    kid = uuid.uuid4()
    assert licence(ks, [kid]).status_code == 404
    lic = licence(ks, [kid], "?content_id=movie-1")
    assert lic.status_code == 200
    k = base64.urlsafe_b64decode(lic.json()["keys"][0]["k"] + "==")
    assert k == expected_key(SEED, "movie-1", kid)
    assert k != expected_key(SEED, "movie-2", kid)


def test_restart_licence_with_default_content_id() -> None:
    body = _req.v2_request(systems=(_req.CLEARKEY,), content_id="show-9")
    with KeyServer(allow_fault_header=True, seed=SEED) as a:
        keys = check_answer(body, speke(a, body).content).keys
    with KeyServer(allow_fault_header=True, seed=SEED, default_content_id="show-9") as b:  # fresh process state
        doc = licence(b, [_req.KID_V]).json()
        assert base64.urlsafe_b64decode(doc["keys"][0]["k"] + "==") == keys[_req.KID_V]
        raw = requests.get(b.key_url(_req.KID_A), timeout=10)
        assert raw.content == keys[_req.KID_A]


def test_registered_key(ks: KeyServer) -> None:
    kid, key = uuid.uuid4(), bytes(range(16))
    assert requests.get(ks.key_url(kid), timeout=10).status_code == 404
    ks.register_key(kid, key)
    r = requests.get(ks.key_url(kid), timeout=10)
    assert r.status_code == 200 and r.content == key
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["access-control-allow-origin"] == "*"
    r = requests.get(f"{ks.url}/keys/{kid}", timeout=10)  # dashed form too
    assert r.content == key
    doc = licence(ks, [kid]).json()
    assert base64.urlsafe_b64decode(doc["keys"][0]["k"] + "==") == key
    with pytest.raises(UsageError):
        ks.register_key(kid, b"short")


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"kids": "x"}', b'{"kids": []}',
                                  b'{"kids": ["@@@"]}', b'{"kids": ["AAEC"]}',
                                  b'{"kids": [1]}'])
def test_licence_bad_requests(ks: KeyServer, body: bytes) -> None:
    r = requests.post(ks.clearkey_license_url, data=body, timeout=10)
    assert r.status_code == 400
    assert r.headers["access-control-allow-origin"] == "*"


def test_cors_preflight(ks: KeyServer) -> None:
    for url in (ks.clearkey_license_url, ks.key_url(uuid.uuid4())):
        r = requests.options(url, headers={"Origin": "http://a.test",
                                           "Access-Control-Request-Method": "POST",
                                           "Access-Control-Request-Headers": "content-type"},
                             timeout=10)
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "content-type" in r.headers["access-control-allow-headers"].lower()


# --- status codes ------------------------------------------------------------------------------
def test_health_and_heartbeat(ks: KeyServer) -> None:
    assert requests.get(ks.url + "/healthz", timeout=10).text.strip() == "ok"
    r = requests.get(ks.url + "/speke/v1.0/heartbeat", timeout=10)
    assert r.status_code == 200 and r.json()["statusMessage"] == "ok"


def test_404_405(ks: KeyServer) -> None:
    assert requests.get(ks.url + "/nothing", timeout=10).status_code == 404
    assert requests.get(ks.url + "/keys/not-a-kid", timeout=10).status_code == 404
    r = requests.get(ks.speke_url, timeout=10)
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    assert requests.get(ks.clearkey_license_url, timeout=10).status_code == 405
    assert requests.post(ks.key_url(uuid.uuid4()), data=b"x", timeout=10).status_code == 405
    assert requests.put(ks.speke_url, data=b"x", timeout=10).status_code == 405
    assert requests.delete(ks.speke_url, timeout=10).status_code == 405


def test_body_limit_413() -> None:
    with KeyServer(allow_fault_header=True, max_body=4096) as ks:
        r = requests.post(ks.speke_url, data=b"<" * 5000, headers={"x-speke-version": "2.0"},
                          timeout=10)
        assert r.status_code == 413
        assert speke(ks, _req.v2_request()).status_code == 200  # still serving


def test_length_required_411(ks: KeyServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", ks.port, timeout=10)
    conn.putrequest("POST", "/speke")
    conn.putheader("x-speke-version", "2.0")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()


def test_keep_alive_many_requests_one_connection(ks: KeyServer) -> None:
    s = requests.Session()
    body = _req.v2_request()
    for _ in range(5):
        assert s.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                      timeout=10).status_code == 200


# --- faults ------------------------------------------------------------------------------------
def test_fault_parse() -> None:
    f = parse_faults(["delay=0.5, drop=PSSH", "wrong-kid;status=503"])
    assert f.delay == 0.5 and f.status == 503 and f.drop == {"PSSH"} and f.has("wrong-kid")
    for bad in ("nope", "delay=x", "delay=1000", "status=99", "drop=", "wrong-kid=1",
                "drop=a b", "layout=C"):
        with pytest.raises(FaultError):
            parse_faults([bad])
    with pytest.raises(UsageError):
        KeyServer(allow_fault_header=True, faults=["bogus"])


def test_fault_header_bad_is_400(ks: KeyServer) -> None:
    r = speke(ks, _req.v2_request(), fault="bogus")
    assert r.status_code == 400 and "bogus" in r.text


def test_fault_status(ks: KeyServer) -> None:
    for code in (500, 503, 429):
        r = speke(ks, _req.v2_request(), fault=f"status={code}")
        assert r.status_code == code
    assert speke(ks, _req.v2_request()).status_code == 200  # per request only


def test_fault_delay(ks: KeyServer) -> None:
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(ks.speke_url, data=_req.v2_request(),
                      headers={"x-speke-version": "2.0", "x-fault": "delay=3"}, timeout=(5, 0.5))


def test_fault_reset(ks: KeyServer) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        speke(ks, _req.v2_request(), fault="reset")
    assert speke(ks, _req.v2_request()).status_code == 200


def test_fault_truncate(ks: KeyServer) -> None:
    full = speke(ks, _req.v2_request()).content
    r = speke(ks, _req.v2_request(), fault="truncate")
    assert r.status_code == 200 and len(r.content) == len(full) // 2
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(r.content)


def test_fault_version_and_user_agent(ks: KeyServer) -> None:
    r = speke(ks, _req.v2_request(), fault="version=1.0")
    assert r.headers["x-speke-version"] == "1.0"
    r = speke(ks, _req.v2_request(), fault="version=none, no-user-agent")
    assert "x-speke-version" not in r.headers and "x-speke-user-agent" not in r.headers


@pytest.mark.parametrize("name", ["PSSH", "ContentProtectionData", "HLSSignalingData",
                                  "ContentKeyUsageRuleList", "Data"])
def test_fault_drop_and_empty(ks: KeyServer, name: str) -> None:
    body = _req.v2_request()
    r = speke(ks, body, fault=f"drop={name}")
    root = etree.fromstring(r.content)
    assert not list(root.iter(f"{{urn:dashif:org:cpix}}{name}"))
    with pytest.raises(AssertionError):
        check_answer(body, r.content)
    r = speke(ks, body, fault=f"empty={name}")
    els = list(etree.fromstring(r.content).iter(f"{{urn:dashif:org:cpix}}{name}"))
    assert els and all(not (e.text or "").strip() and len(e) == 0 for e in els)
    with pytest.raises(AssertionError):
        check_answer(body, r.content)


@pytest.mark.parametrize("fault", ["wrong-kid", "change-scheme", "change-rules",
                                   "change-content-id", "pssh-mismatch"])
def test_fault_answer_no_longer_matches(ks: KeyServer, fault: str) -> None:
    body = _req.v2_request()
    check_answer(body, speke(ks, body).content)  # control: clean answer passes
    r = speke(ks, body, fault=fault)
    assert r.status_code == 200
    with pytest.raises((AssertionError, KeyError)):
        check_answer(body, r.content)


def test_fault_plain_key_and_bad_mac(ks: KeyServer, delivery_certs: dict) -> None:  # type: ignore[type-arg]
    pair = delivery_certs[2048]
    body = _req.v2_request(cert_der=[pair.cert_der])
    r = speke(ks, body, fault="plain-key")
    checked = check_answer(body, r.content)
    assert set(checked.keys) == {_req.KID_V, _req.KID_A} and not checked.encrypted
    from .test_speke import _decrypt_answer

    _decrypt_answer(speke(ks, body).content, pair)  # control
    with pytest.raises(AssertionError):
        _decrypt_answer(speke(ks, body, fault="bad-mac").content, pair)


def test_fault_layout_switch(ks: KeyServer, delivery_certs: dict) -> None:  # type: ignore[type-arg]
    body = _req.v2_request(cert_der=[delivery_certs[2048].cert_der])
    for layout, wrapped in (("A", False), ("B", True)):
        root = etree.fromstring(speke(ks, body, fault=f"layout={layout}").content)
        key = root.find(".//cpix:MACMethod/cpix:Key", NS)
        assert key is not None
        assert (key.find("pskc:EncryptedValue", NS) is not None) == wrapped


def test_server_wide_faults() -> None:
    with KeyServer(allow_fault_header=True, faults=["status=503"]) as ks:
        assert speke(ks, _req.v2_request()).status_code == 503
        assert requests.get(ks.key_url(uuid.uuid4()), timeout=10).status_code == 503
        assert requests.get(ks.url + "/healthz", timeout=10).status_code == 200


def test_key_endpoint_faults(ks: KeyServer) -> None:
    kid = uuid.uuid4()
    good = requests.get(ks.key_url(kid) + "?content_id=c1", timeout=10).content
    wrong = requests.get(ks.key_url(kid) + "?content_id=c1", headers={"x-fault": "wrong-kid"},
                         timeout=10).content
    assert len(good) == len(wrong) == 16 and good != wrong
    cut = requests.get(ks.key_url(kid) + "?content_id=c1", headers={"x-fault": "truncate"},
                       timeout=10).content
    assert cut == good[:8]


# --- load --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_200_concurrent_requests() -> None:
    body = _req.v2_request(systems=(_req.WIDEVINE, _req.PLAYREADY))
    barrier = threading.Barrier(200, timeout=60)
    with KeyServer(allow_fault_header=True, seed=SEED) as ks:
        expected = check_answer(body, speke(ks, body).content).keys

        def one(i: int) -> tuple[int, dict[uuid.UUID, bytes]]:
            barrier.wait()
            if i % 4 == 0:
                r = requests.get(ks.key_url(_req.KID_V), timeout=60)
                return r.status_code, {_req.KID_V: r.content}
            r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                              timeout=60)
            return r.status_code, check_answer(body, r.content).keys

        with ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(one, range(200)))
    assert all(status == 200 for status, _ in results)
    for _, keys in results:
        for kid, key in keys.items():
            assert key == expected[kid]


def test_stop_closes_port() -> None:
    ks = KeyServer(allow_fault_header=True).start()
    port = ks.port
    ks.stop()
    ks.stop()  # idempotent
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.parametrize("fault", ["status=503", "delay=0.05,status=500"])
def test_status_fault_keeps_a_kept_alive_connection_in_step(ks: KeyServer, fault: str) -> None:
    """The body of a faulted POST is read before the fault answers: the next request on the
    same kept-alive connection must get its own, valid answer."""
    body = _req.v2_request()
    conn = http.client.HTTPConnection("127.0.0.1", ks.port, timeout=10)
    try:
        conn.request("POST", "/speke", body=body,
                     headers={"x-speke-version": "2.0", "x-fault": fault})
        first = conn.getresponse()
        first.read()
        assert first.status in (500, 503)
        conn.request("POST", "/speke", body=body, headers={"x-speke-version": "2.0"})
        second = conn.getresponse()
        data = second.read()
        assert second.status == 200, data[:200]
        check_answer(body, data)
    finally:
        conn.close()


def _raw_answer(ks: KeyServer, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", ks.port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize("value", [b"2.0\r\n X-Evil: injected", b"2.0\r\n\tSet-Cookie: a=b",
                                   b"x" * 200, b"2.0<script>"])
def test_only_a_version_string_is_echoed(ks: KeyServer, value: bytes) -> None:
    """A folded or hostile X-Speke-Version is never copied into the answer's headers."""
    body = _req.v2_request()
    answer = _raw_answer(ks, b"POST /speke HTTP/1.1\r\nHost: x\r\nX-Speke-Version: " + value
                         + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                         + body)
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 4"), head
    assert b"X-Evil" not in head and b"Set-Cookie" not in head and b"x" * 50 not in head
    assert b"X-Speke-Version" not in head
    good = speke(ks, body, version="2.0")  # control: a real version is echoed
    assert good.status_code == 200 and good.headers["X-Speke-Version"] == "2.0"


def test_sigv4_error_bodies_are_json() -> None:
    """A hostile credential scope (quotes, backslashes) still gives a JSON body that parses."""
    with KeyServer(require_sigv4=True, sigv4_credentials=("AK", "SK")) as server:
        auth = ('AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s"3\\/aws4_request, '
                "SignedHeaders=host, Signature=" + "0" * 64)
        r = requests.post(server.speke_url, data=b"<x/>", timeout=10,
                          headers={"Authorization": auth, "X-Amz-Date": "20260101T000000Z"})
        assert r.status_code == 403
        assert 's"3\\' in r.json()["message"]
