"""Hostile HTTP against the local key server: garbage, oversized headers and bodies, lying
Content-Length, idle and half-open connections. The server answers with a status (never a
traceback), stays healthy and serves the next honest request."""

from __future__ import annotations

import re
import socket
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
        s.shutdown(socket.SHUT_WR)
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
