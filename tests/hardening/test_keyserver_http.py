"""Hostile HTTP against the local key server: garbage, oversized headers and bodies, lying
Content-Length, idle and half-open connections. The server answers with a status (never a
traceback), stays healthy and serves the next honest request."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from speke_packager.keyserver import KeyServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def ks() -> Iterator[KeyServer]:
    with KeyServer(allow_fault_header=True, host="127.0.0.1", port=0, seed="http-hostile", max_body=64 * 1024) as server:
        yield server


def _raw(ks: KeyServer, data: bytes, *, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", ks.port), timeout=30) as s:
        s.sendall(data)
        if not read:
            return b""
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before the whole request was sent
            pass
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _healthy(ks: KeyServer) -> None:
    assert requests.get(f"{ks.url}/healthz", timeout=10).status_code == 200


def _status(answer: bytes) -> int:
    if not answer.startswith(b"HTTP/1."):
        # http.server answers a request line without a version HTTP/0.9-style: body only
        m = re.search(rb"Error code: (\d{3})", answer)
        assert m, answer[:200]
        return int(m.group(1))
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("data", [
    b"\x00\x01\x02\x03garbage\r\n\r\n",
    b"POST\r\n\r\n",
    b"POST /speke HTTP/9.9\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
], ids=["binary", "no-path", "bad-version", "70k-request-line"])
def test_malformed_request_lines(ks: KeyServer, data: bytes) -> None:
    answer = _raw(ks, data)
    assert not answer or 400 <= _status(answer) < 600
    assert b"Traceback" not in answer
    _healthy(ks)


def test_oversized_header(ks: KeyServer) -> None:
    answer = _raw(ks, b"POST /speke HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
    assert not answer or _status(answer) in (400, 431)
    _healthy(ks)


def test_too_many_headers(ks: KeyServer) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
    answer = _raw(ks, b"POST /speke HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert not answer or _status(answer) in (400, 431)
    _healthy(ks)


@pytest.mark.parametrize("length", [b"-1", b"abc", b"99999999999999999999", b"1e3"])
def test_bad_content_length(ks: KeyServer, length: bytes) -> None:
    answer = _raw(ks, b"POST /speke HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                  + b"\r\n\r\n<x/>")
    assert 400 <= _status(answer) < 500
    _healthy(ks)


def test_body_over_the_limit(ks: KeyServer) -> None:
    r = requests.post(ks.speke_url, data=b"<x/>" * 20_000, timeout=30)
    assert r.status_code == 413
    _healthy(ks)


def test_content_length_larger_than_the_body(ks: KeyServer) -> None:
    """Claims 60 KB, sends 10 bytes and half-closes: the server gives up, no hang."""
    answer = _raw(ks, b"POST /speke HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n0123456789")
    assert not answer or 400 <= _status(answer) < 500
    _healthy(ks)


def test_chunked_body_refused(ks: KeyServer) -> None:
    answer = _raw(ks, b"POST /speke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"4\r\n<x/>\r\n0\r\n\r\n")
    assert _status(answer) == 411
    _healthy(ks)


def test_idle_connections_do_not_block_honest_clients(ks: KeyServer) -> None:
    idle = [socket.create_connection(("127.0.0.1", ks.port), timeout=30) for _ in range(100)]
    try:
        for s in idle[:50]:
            s.sendall(b"POST /speke HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<x")
        for _ in range(5):
            _healthy(ks)
    finally:
        for s in idle:
            s.close()


def test_no_traceback_in_any_answer(ks: KeyServer) -> None:
    """A grab-bag of odd requests on every path: statuses only, never a Python traceback."""
    for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        for path in ("/speke", "/keys/zz", "/keys/" + "0" * 32, "/clearkey/license",
                     "/healthz", "/../../etc/passwd", "/%00", "/speke?x=" + "%" * 50):
            r = requests.request(method, ks.url + path, data=b"{", timeout=30)
            assert r.status_code < 500 or r.status_code == 501, (method, path, r.status_code)
            assert "Traceback" not in r.text
    _healthy(ks)


def test_header_block_budget(ks: KeyServer) -> None:
    """100 headers of 2 KB each (each under the per-line limit) exceed the 64 KiB header
    budget: 431, not 200 KB parsed and kept per connection."""
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 2000) for i in range(90))
    answer = _raw(ks, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert _status(answer) == 431
    small = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 200) for i in range(90))  # control: 18 KB
    assert _status(_raw(ks, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + small + b"\r\n")) == 200


def test_body_on_a_get_is_never_parsed_as_the_next_request(ks: KeyServer) -> None:
    """A GET with a Content-Length body: answered, connection closed; the body (here a second,
    smuggled request) is never answered."""
    smuggled = b"GET /keys/00112233445566778899aabbccddeeff?content_id=c HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = _raw(ks, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: "
                  + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
    assert answer.count(b"HTTP/1.1 ") == 1 and _status(answer) == 200
    # control: the same two requests pipelined without the Content-Length get two answers
    answer = _raw(ks, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled)
    assert answer.count(b"HTTP/1.1 ") == 2


def test_bodies_in_flight_share_a_budget() -> None:
    """Bodies held at once are bounded server-wide: with room for two 40 KB bodies, a third
    concurrent one gets 503 while the first two are being held (delay fault)."""
    with KeyServer(allow_fault_header=True, max_body=40_000) as server:
        server._server.body_budget = 100_000  # type: ignore[union-attr]
        body = b"<x/>" + b" " * 39_000
        held = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"POST /speke HTTP/1.1\r\nHost: x\r\nx-fault: delay=3\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
            held.append(s)
        time.sleep(0.5)
        try:
            r = requests.post(server.speke_url, data=body, timeout=30)
            assert r.status_code == 503
            time.sleep(3.5)  # the held ones answered: the budget is free again
            r = requests.post(server.speke_url, data=body, timeout=30)
            assert r.status_code == 400  # not CPIX, but read and parsed
        finally:
            for s in held:
                s.close()
