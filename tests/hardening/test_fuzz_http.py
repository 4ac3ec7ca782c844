"""Fuzzing the local key server's HTTP request parsing over a real socket: request line, headers
(Content-Length, Transfer-Encoding, X-Speke-Version, SigV4 Authorization, Host), body as CPIX
(mutated v1/v2 requests) and whole-request byte mutations. Every case must end within a few
seconds with a 2xx/4xx (501/505 for an unknown method or version, 503 never expected here) or a
closed connection: never a 500, a traceback or an answer header that carries request bytes.

Seeds are fixed (``@seed``) so a failure replays; the example counts are in ``HTTP_FUZZ``.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from speke_packager.keyserver import FaultError, KeyServer, parse_faults
from tests.keyserver import _req

from .conftest import apply, mutations

pytestmark = pytest.mark.timeout(600)

HTTP_FUZZ = settings(max_examples=1000, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CASE_SECONDS = 5.0  # bound per case (the server's request deadline is 2 s; EOF ends it sooner)
_HEADER_LINE = re.compile(rb"[A-Za-z0-9-]+: [\x20-\x7e]*")
_OK_5XX = {501, 505}  # http.server: unsupported method, unsupported HTTP version

SEEDS = [(_req.v2_request(), "2.0"), (_req.v2_request(), "2.1"), (_req.v1_request(), None)]
BODIES = [body for body, _ in SEEDS]
PATHS = ["/speke", "/copyProtection", "/clearkey/license", "/keys/" + "ab" * 16,
         "/keys/" + "ab" * 16 + "?content_id=c", "/healthz", "/v1/heartbeat", "/", "*",
         "/speke?x=%00", "/%ff%fe", "http://127.0.0.1/speke"]
METHODS = ["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT",
           "BREW", "post", ""]
VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "HTTP/1.1x", "", "http/1.1"]
LENGTHS = ["0", "1", "10", "-1", "+5", " 7 ", "1e3", "0x10", "999999999999999999999",
           "4194305", "٣", "5, 5", ""]
SPEKE_VERSIONS = ["1.0", "2.0", "2.1", "3.0", "2.0\r\n X-Evil: 1", " 2.0 ", "x" * 300, "",
                  "2.0\x00"]

text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=40)
header_value = st.one_of(text, st.sampled_from(SPEKE_VERSIONS + LENGTHS))
header = st.one_of(
    st.tuples(st.sampled_from(["Content-Length", "content-length", "Transfer-Encoding",
                               "X-Speke-Version", "x-speke-version", "Host", "Authorization",
                               "X-Amz-Date", "Content-Type", "Expect", "Connection",
                               "X-Fault", "Origin"]), header_value),
    st.tuples(st.text(st.characters(codec="ascii"), min_size=0, max_size=12), text),
)


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    # biased towards requests that get past the request line, so the routes' own code runs
    method = draw(st.one_of(st.just("POST"), st.sampled_from(METHODS)))
    target = draw(st.one_of(st.just("/speke"), st.sampled_from(PATHS), text))
    version = draw(st.one_of(st.just("HTTP/1.1"), st.sampled_from(VERSIONS)))
    line = " ".join(p for p in (method, target, version) if p)
    heads = draw(st.lists(header, max_size=8))
    if draw(st.booleans()):
        heads.append(("X-Speke-Version", draw(st.sampled_from(SPEKE_VERSIONS))))
    body = draw(st.one_of(
        st.sampled_from(BODIES),
        st.builds(apply, st.sampled_from(BODIES), mutations),
        st.binary(max_size=200)))
    if draw(st.booleans()):  # an honest Content-Length for the body
        heads.append(("Content-Length", str(len(body))))
    head = line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in heads) + "\r\n"
    raw = head.encode("utf-8") + body
    if draw(st.integers(0, 3)) == 0:  # and sometimes byte mutations of the whole request
        raw = apply(raw, draw(mutations))
    return raw


@pytest.fixture(scope="module")
def ks() -> Iterator[KeyServer]:
    # the production defaults (no x-fault header: a fuzzed "status=500" or "delay=120" would be
    # a fault switch doing its job); a short request deadline bounds any case
    with KeyServer(seed="http-fuzz", max_body=64 * 1024, request_timeout=2.0) as server:
        yield server


def _exchange(ks: KeyServer, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", ks.port), timeout=CASE_SECONDS) as s:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before we finished sending
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def _check_answer(raw: bytes, answer: bytes) -> None:
    assert b"Traceback" not in answer
    # answers are pipelined back to back; check the head of each one
    for m in re.finditer(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n", answer):
        status = int(m.group(1))
        assert status < 500 or status in _OK_5XX, (raw[:300], answer[:300])
        for line in m.group(2).split(b"\r\n")[:-1]:
            assert _HEADER_LINE.fullmatch(line), (raw[:300], line)
            assert not line.lower().startswith(b"x-evil")


@seed(16016)
@HTTP_FUZZ
@given(raw=raw_requests())
def test_fuzz_keyserver_http(ks: KeyServer, raw: bytes) -> None:
    start = time.monotonic()
    answer = _exchange(ks, raw)
    assert time.monotonic() - start < CASE_SECONDS
    _check_answer(raw, answer)


def test_fuzz_server_still_healthy_and_seeds_answer(ks: KeyServer) -> None:
    """After the run (same module-scoped server) honest requests still work: the control that
    the fuzz seeds are real requests the server answers with 200."""
    for body, speke_version in SEEDS:
        version = f"X-Speke-Version: {speke_version}\r\n".encode() if speke_version else b""
        raw = (b"POST /speke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + version
               + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = _exchange(ks, raw)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


@seed(16017)
@HTTP_FUZZ
@given(spec=st.one_of(text, st.lists(st.sampled_from(
    ["delay=", "status=", "drop=", "times=", "version=", "layout=", "reset", "wrong-kid", ",",
     ";", "=", "1", "999", "-1", "nan", "inf", "PSSH", "none", " "]), max_size=8).map("".join)))
def test_fuzz_fault_specs(spec: str) -> None:
    """The x-fault header's parser: a Faults value or FaultError (a 400), nothing else."""
    try:
        faults = parse_faults([spec])
    except FaultError:
        return
    assert 0 <= faults.delay <= 120
    assert faults.status is None or 100 <= faults.status <= 599
