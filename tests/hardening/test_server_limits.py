"""Bounded resources in both local servers (the key server and ``serve``): a deadline for the
whole request, a connection cap answered with 503 instead of a blocked accept loop, and a stop
that returns quickly under a slow-client flood (SIGTERM of the CLI too)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from speke_packager._httpd import DEFAULT_MAX_CONNECTIONS
from speke_packager.keyserver import KeyServer
from speke_packager.verify.serve import PackageServer

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
FLOOD = 600  # slow sockets, more than the default cap of 512
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: never complete


class _Served:
    """Either server behind one face: port, a health URL, stop()."""

    def __init__(self, kind: str, tmp: Path, **limits: Any) -> None:
        self.kind = kind
        if kind == "keyserver":
            self._ks = KeyServer(allow_fault_header=True, **limits).start()
            self.port = self._ks.port
            self.health = f"{self._ks.url}/healthz"
        else:
            pkg = tmp / "pkg"
            pkg.mkdir(exist_ok=True)
            (pkg / "index.m3u8").write_text("#EXTM3U\n")
            self._ps = PackageServer(pkg, node_modules=tmp, **limits).start()
            self.port = self._ps._server.server_address[1]
            self.health = f"{self._ps.url}/package/index.m3u8"

    def stop(self) -> None:
        if self.kind == "keyserver":
            self._ks.stop()
        else:
            self._ps.stop()


@pytest.fixture(params=["keyserver", "serve"])
def make_server(request: pytest.FixtureRequest,
                tmp_path: Path) -> Iterator[Callable[..., _Served]]:
    made: list[_Served] = []

    def make(**limits: Any) -> _Served:
        s = _Served(request.param, tmp_path, **limits)
        made.append(s)
        return s

    yield make
    for s in made:
        _stop_bounded(s.stop, 10)


def _stop_bounded(stop: Callable[[], None], limit: float) -> float:
    """Run ``stop`` in a thread (the old servers hung in it); seconds it took, or inf."""
    t = threading.Thread(target=stop, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(limit)
    return time.monotonic() - start if not t.is_alive() else float("inf")


def _flood(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(PARTIAL)
        socks.append(s)
    return socks


def _answered(socks: list[socket.socket], wait: float) -> dict[socket.socket, bytes]:
    """Sockets that received something (or were closed) within ``wait`` seconds."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    got: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + wait
    while sel.get_map() and (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(min(left, 0.5)):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                got[s] = s.recv(65536)
            except OSError:
                got[s] = b""
            sel.unregister(s)
    sel.close()
    return got


def _close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


def test_slow_client_cut_off_by_the_request_deadline(make_server: Callable[..., _Served]) -> None:
    """One byte every 0.2 s: each read is quick, but the request as a whole must arrive within
    request_timeout (a per-read timeout would keep this client forever)."""
    srv = make_server(request_timeout=1.5)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        start = time.monotonic()
        closed_after = None
        for byte in PARTIAL * 20:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.2)
            if time.monotonic() - start > 8:
                break
        if closed_after is None:  # sends can succeed for a while after the server's close
            s.settimeout(5)
            with contextlib.suppress(OSError):
                s.recv(1024)
            closed_after = time.monotonic() - start
    assert closed_after < 4, closed_after
    assert requests.get(srv.health, timeout=10).status_code == 200


def test_slow_body_cut_off_by_the_request_deadline() -> None:
    """Headers on time, then the body trickles: the same deadline covers it."""
    with KeyServer(request_timeout=1.5) as ks, \
            socket.create_connection(("127.0.0.1", ks.port), timeout=10) as s:
        s.sendall(b"POST /speke HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        start = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(40):
                s.sendall(b"<")
                time.sleep(0.2)
        assert time.monotonic() - start < 4


def test_flood_gets_503_and_stop_returns_fast(make_server: Callable[..., _Served]) -> None:
    """600 slow sockets against the default cap of 512: the excess get 503 at once (the accept
    loop never blocks), an honest request gets 200 or 503, freed slots serve again, and stop()
    returns within 2 s and closes every idle socket."""
    srv = make_server()
    socks = _flood(srv.port, FLOOD)
    try:
        answered = _answered(socks, 10)
        busy = [s for s, data in answered.items() if data.startswith(b"HTTP/1.1 503")]
        assert len(busy) >= FLOOD - DEFAULT_MAX_CONNECTIONS - 5, len(busy)
        assert len(answered) <= FLOOD - DEFAULT_MAX_CONNECTIONS + 5  # the rest are held
        assert requests.get(srv.health, timeout=10).status_code in (200, 503)
        held = [s for s in socks if s not in answered]
        _close_all(held[:50])  # their handlers end, their slots come back
        deadline = time.monotonic() + 10
        while requests.get(srv.health, timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "freed slots were never reused"
            time.sleep(0.2)
        took = _stop_bounded(srv.stop, 10)
        assert took < 2, took
        closed = _answered(held[50:], 3)  # every held socket sees its end promptly
        assert len(closed) == len(held) - 50
    finally:
        _close_all(socks)


def test_keyserver_cli_sigterm_under_flood() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port",
         "0", "--max-connections", "64"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        socks = _flood(port, 200)
        busy = _answered(socks[64:], 10)
        assert sum(d.startswith(b"HTTP/1.1 503") for d in busy.values()) >= 130
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 2
    finally:
        _close_all(socks)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tls_handshake_within_the_deadline(tmp_path: Path) -> None:
    """A TLS client that sends its ClientHello a byte at a time is cut at the request deadline
    (a timeout per read would let it stretch the handshake without end); a real TLS client is
    served."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "k.pem").chmod(0o600)
    with KeyServer(tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k.pem"),
                   request_timeout=1.5) as ks:
        hello = bytes.fromhex("16030100c8010000c40303") + bytes(200)  # a ClientHello's start
        with socket.create_connection(("127.0.0.1", ks.port), timeout=10) as s:
            start = time.monotonic()
            with contextlib.suppress(OSError):
                for b in hello:
                    s.sendall(bytes([b]))
                    time.sleep(0.1)
            assert time.monotonic() - start < 4
        r = requests.get(f"{ks.url}/healthz", verify=str(tmp_path / "c.pem"), timeout=10)
        assert r.status_code == 200
