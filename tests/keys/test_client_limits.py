"""SPEKE client hardening (issue 16, items 8-10): a total deadline per key request against a real
slow server on 127.0.0.1, URLs redacted in every message and log line, and a warning when
credentials or clear content keys would cross the network over plain http://."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from speke_packager.constants import DrmSystem
from speke_packager.errors import KeyServerHTTPError, KeyServerTimeout
from speke_packager.keys import (
    BasicAuth,
    DeliveryKey,
    EncryptionContract,
    HeaderAuth,
    SpekeClient,
)
from speke_packager.keys.auth import DigestAuth, SigV4Auth

pytestmark = pytest.mark.timeout(120)

CONTRACT = EncryptionContract("chan-1", (DrmSystem.WIDEVINE,))


# ---- a real slow server ----------------------------------------------------------------------
class SlowServer:
    """A TCP server on 127.0.0.1 that reads one request, then answers with the bytes of
    ``answer``: ``head`` all at once, the rest one byte every ``interval`` seconds (until the
    client goes away or the server is closed)."""

    def __init__(self, head: bytes, drip: bytes, interval: float = 0.2, *,
                 read_request: bool = True) -> None:
        self.head, self.drip, self.interval = head, drip, interval
        self.read_request = read_request
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/speke"

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        self.requests += 1
        with conn:
            data = b"" if self.read_request else b"\r\n\r\n"
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            try:
                conn.sendall(self.head)
                for i in range(len(self.drip)):
                    if self.closed.wait(self.interval):
                        return
                    conn.sendall(self.drip[i:i + 1])
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


@contextmanager
def slow_server(head: bytes, drip: bytes, interval: float = 0.2, *, read_request: bool = True
                ) -> Iterator[SlowServer]:
    srv = SlowServer(head, drip, interval, read_request=read_request)
    try:
        yield srv
    finally:
        srv.close()


DRIP_HEADERS = (b"", b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 10_000 + b"\r\n\r\n")
DRIP_BODY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n",
             b"<" * 100_000)


@pytest.mark.parametrize("answer", [DRIP_HEADERS, DRIP_BODY], ids=["headers", "body"])
def test_total_deadline_cuts_a_dripping_answer(answer: tuple[bytes, bytes]) -> None:
    """One byte every 0.2 s never trips a 1 s read timeout; the 1.5 s total deadline (all
    attempts together) ends the request as a KeyServerTimeout."""
    with slow_server(*answer) as srv:
        client = SpekeClient(srv.url, timeout=(1.0, 1.0, 1.5), retries=3, backoff=0.01)
        t0 = time.monotonic()
        with pytest.raises(KeyServerTimeout, match=r"total deadline of 1\.5s"):
            client.fetch(CONTRACT)
        took = time.monotonic() - t0
    assert 1.4 < took < 3.0, took
    assert client.attempts == 1  # nothing left for a retry


def test_total_deadline_cuts_a_dripping_tls_handshake() -> None:
    """https:// to a server that answers the ClientHello with a TLS record header announcing
    16 KiB, then one byte every 0.2 s: Python bounds the whole handshake by the connect timeout
    (5 s here); the client caps that to the time left of the total (1.5 s), and the socket is
    watched from the TCP connect on."""
    with slow_server(b"\x16\x03\x03\x40\x00", b"\x02" * 16384, read_request=False) as srv:
        url = srv.url.replace("http://", "https://")
        client = SpekeClient(url, timeout=(5.0, 1.0, 1.5), retries=2, backoff=0.01)
        t0 = time.monotonic()
        with pytest.raises(KeyServerTimeout, match="total deadline"):
            client.fetch(CONTRACT)
        took = time.monotonic() - t0
    assert took < 3.0, took


def test_without_a_total_the_drip_holds_the_client() -> None:
    """Negative control: with per-read timeouts only (the old behaviour), the same server still
    holds the request after 3 s."""
    with slow_server(*DRIP_BODY) as srv:
        client = SpekeClient(srv.url, timeout=(1.0, 1.0, None), retries=0)
        done = threading.Event()

        def run() -> None:
            try:
                client.fetch(CONTRACT)
            except Exception:  # the server is closed under it below
                pass
            done.set()

        threading.Thread(target=run, daemon=True).start()
        assert not done.wait(3.0), "the drip did not hold the request: the test proves nothing"
    assert done.wait(10.0)


def test_retries_stay_inside_the_total() -> None:
    """503 with Retry-After: 1 forever: retries are made only while their wait ends before the
    deadline; then the last error is raised."""
    answer = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n"
              b"Connection: close\r\n\r\nbusy", b"")
    with slow_server(*answer) as srv:
        client = SpekeClient(srv.url, timeout=(1.0, 1.0, 2.5), retries=10)
        t0 = time.monotonic()
        with pytest.raises(KeyServerHTTPError) as info:
            client.fetch(CONTRACT)
        took = time.monotonic() - t0
    assert info.value.status == 503
    assert took < 3.0, took
    assert 2 <= client.attempts <= 3, client.attempts


def test_cli_timeout_accepts_total(tmp_path: Path) -> None:
    with slow_server(*DRIP_BODY) as srv:
        t0 = time.monotonic()
        res = _cli("keys", "--speke-url", srv.url, "--content-id", "c1", "--timeout", "1,1,1.5")
        took = time.monotonic() - t0
    assert res.returncode == 3, res.stderr
    assert "total deadline" in res.stderr
    assert took < 8, took  # interpreter start-up included
    bad = _cli("keys", "--speke-url", "http://127.0.0.1:9/", "--content-id", "c1",
               "--timeout", "1,1,0")
    assert bad.returncode == 2 and "--timeout" in bad.stderr


# ---- item 9: URLs redacted ---------------------------------------------------------------------
TOKEN = "tok-5ecr3t-q"
PASSWORD = "pw-5ecr3t-u"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speke_packager", *args], capture_output=True,
                          text=True, timeout=60, check=False, env=env)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["refused", "http-500", "timeout"])
def test_credentials_in_the_url_never_reach_stderr_or_logs(tmp_path: Path, case: str) -> None:
    """A token in the query and a password in the userinfo of --speke-url: not in stderr, stdout
    or the --log-file at debug level, whatever the failure (urllib3 logs the request target at
    DEBUG and puts it in its connection errors)."""
    answer = {"http-500": (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
                           b"Connection: close\r\n\r\nboom", b""),
              "timeout": (DRIP_BODY[0], b""), "refused": (b"", b"")}[case]
    with slow_server(*answer) as srv:
        port = _closed_port() if case == "refused" else srv.port
        url = f"http://alice:{PASSWORD}@127.0.0.1:{port}/speke?token={TOKEN}&x={TOKEN}2"
        log = tmp_path / "debug.log"
        res = _cli("--log-level", "debug", "--log-file", str(log), "keys", "--speke-url", url,
                   "--content-id", "c1", "--retries", "1", "--timeout", "1,1")
    assert res.returncode == 3, res.stderr
    text = res.stderr + res.stdout + log.read_text()
    assert "speke-packager: error: " in res.stderr
    assert "SPEKE request failed" in log.read_text()  # control: the attempts were logged
    assert TOKEN not in text and PASSWORD not in text, text


def test_repr_and_errors_redact_the_url() -> None:
    client = SpekeClient(f"https://bob:{PASSWORD}@keys.example.com/speke?token={TOKEN}")
    assert TOKEN not in repr(client) and PASSWORD not in repr(client)
    assert "keys.example.com/speke?token=***" in repr(client)


# ---- item 10: plain http:// to a host that is not loopback -------------------------------------
def _warnings(caplog: pytest.LogCaptureFixture, **kw: object) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="speke_packager"):
        SpekeClient(**kw)  # type: ignore[arg-type]
    return [r.getMessage() for r in caplog.records if "plain http://" in r.getMessage()]


def test_warning_for_credentials_over_plain_http(caplog: pytest.LogCaptureFixture) -> None:
    url = "http://keys.example.com/speke"
    for auth in (BasicAuth("u", "p"), DigestAuth("u", "p"), HeaderAuth({"X-Api-Key": "k"}),
                 SigV4Auth("eu-west-1")):
        got = _warnings(caplog, url=url, auth=auth)
        assert len(got) == 1 and "credentials" in got[0] and "keys.example.com" in got[0], got
    got = _warnings(caplog, url=f"http://u:{PASSWORD}@10.1.2.3/speke")
    assert len(got) == 1 and "credentials" in got[0] and PASSWORD not in got[0]


def test_warning_for_clear_keys_over_plain_http(caplog: pytest.LogCaptureFixture, pki) -> None:
    got = _warnings(caplog, url="http://keys.example.com/speke")
    assert len(got) == 1 and "clear content keys" in got[0] and "credentials" not in got[0]
    dk = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    assert _warnings(caplog, url="http://keys.example.com/speke", delivery_key=dk) == []


@pytest.mark.parametrize("url", ["https://keys.example.com/speke", "http://127.0.0.1:9/s",
                                 "http://localhost:9/s", "http://[::1]:9/s",
                                 "http://127.8.9.10/s"])
def test_no_warning_for_https_or_loopback(caplog: pytest.LogCaptureFixture, url: str) -> None:
    assert _warnings(caplog, url=url, auth=BasicAuth("u", "p")) == []


def test_cli_warns_once_on_stderr() -> None:
    env = {**os.environ, "SPEKE_PASSWORD": PASSWORD}
    res = _cli("keys", "--speke-url", "http://192.0.2.1:9/speke", "--content-id", "c1",
               "--auth", "basic", "--user", "u", "--retries", "0", "--timeout", "0.5,0.5",
               env=env)
    assert res.returncode == 3, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "plain http://" in ln]
    assert len(lines) == 1, res.stderr
    assert "credentials" in lines[0] and PASSWORD not in res.stderr


def test_other_messages_redact_urls() -> None:
    """The ClearKey licence fetch of verify and the remote-URI refusal of encrypt-vod."""
    from uuid import UUID

    from speke_packager.errors import ManifestError, VerificationError
    from speke_packager.pipeline.hls_job import resolve
    from speke_packager.verify import fetch_clearkey_keys

    url = f"http://u:{PASSWORD}@127.0.0.1:{_closed_port()}/lic?token={TOKEN}"
    with pytest.raises(VerificationError) as info:
        fetch_clearkey_keys(url, [UUID(int=1)], timeout=2)
    assert TOKEN not in str(info.value) and PASSWORD not in str(info.value)
    assert "127.0.0.1" in str(info.value)  # control: the message still names the server
    with pytest.raises(ManifestError) as minfo:
        resolve("index.m3u8", f"https://cdn.example/seg.ts?sig={TOKEN}", what="segment")
    assert TOKEN not in str(minfo.value) and "cdn.example" in str(minfo.value)
