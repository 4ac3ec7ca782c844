"""Fixtures for the SPEKE client tests: certificates made at test time, a real key server,
and a small recording proxy (a real HTTP server on 127.0.0.1) for retry/auth checks."""

from __future__ import annotations

import datetime
import ipaddress
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from speke_packager.keyserver import KeyServer


@dataclass
class CertFiles:
    cert: Path
    key: Path
    der: bytes
    pfx: Path | None = None


@dataclass
class Pki:
    ca: CertFiles
    server: CertFiles
    client: CertFiles
    other_client: CertFiles  # signed by a CA the server does not trust
    delivery: CertFiles
    delivery_other: CertFiles


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make(dirpath: Path, name: str, *, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
          ca: bool = False, server: bool = False, bits: int = 2048,
          password: bytes | None = None) -> tuple[CertFiles, x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(name))
               .issuer_name(issuer[0].subject if issuer else _name(name))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("localhost")]), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    signer = issuer[1] if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    cpath = dirpath / f"{name}.crt"
    kpath = dirpath / f"{name}.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8, enc))
    pfx = dirpath / f"{name}.p12"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, None,
        serialization.BestAvailableEncryption(password or b"pw")))
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertFiles(cpath, kpath, der, pfx), cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = _make(d, "test-ca", issuer=None, ca=True)
    server, _, _ = _make(d, "server", issuer=(ca_cert, ca_key), server=True)
    client, _, _ = _make(d, "client", issuer=(ca_cert, ca_key))
    _, rogue_cert, rogue_key = _make(d, "rogue-ca", issuer=None, ca=True)
    other, _, _ = _make(d, "other-client", issuer=(rogue_cert, rogue_key))
    delivery, _, _ = _make(d, "delivery", issuer=None, password=b"s3cret")
    delivery2, _, _ = _make(d, "delivery-other", issuer=None)
    return Pki(ca, server, client, other, delivery, delivery2)


@pytest.fixture()
def ks() -> Iterator[KeyServer]:
    with KeyServer(allow_fault_header=True, host="127.0.0.1", port=0, seed="tests-keys") as server:
        yield server


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Proxy:
    """A real HTTP server that answers from a script, then forwards to an upstream."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    check: Callable[[Recorded], tuple[Any, ...] | None] | None = None  # (status, body[, hdrs])


@pytest.fixture()
def proxy(ks: KeyServer) -> Iterator[Proxy]:
    lock = threading.Lock()
    state: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            rec = Recorded("POST", self.path, {k: v for k, v in self.headers.items()}, body)
            p: Proxy = state["proxy"]
            with lock:
                p.requests.append(rec)
                step = p.script.pop(0) if p.script else None
            if step is None and p.check is not None:
                verdict = p.check(rec)
                if verdict is not None:
                    extra = verdict[2] if len(verdict) > 2 else {}  # type: ignore[misc]
                    step = (verdict[0], {"Content-Type": "text/plain", **extra}, verdict[1])
            if step is not None:
                status, headers, payload = step
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            fwd = {k: v for k, v in rec.headers.items()
                   if k.lower() in ("content-type", "x-speke-version", "x-fault")}
            r = requests.post(ks.speke_url, data=body, headers=fwd, timeout=10)
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                     "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    p = Proxy(url=f"http://127.0.0.1:{srv.server_address[1]}/speke/v2.0/copyProtection?x=1")
    state["proxy"] = p
    try:
        yield p
    finally:
        srv.shutdown()
        srv.server_close()
