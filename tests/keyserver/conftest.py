"""Fixtures for key-server tests: certificates made per run, the CPIX 2.3 schema, helpers."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree


@dataclass(frozen=True)
class CertPair:
    cert_pem: Path
    key_pem: Path
    cert_der: bytes
    private_key: rsa.RSAPrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(directory: Path, name: str, *, bits: int = 2048, issuer: CertPair | None = None,
              ca: bool = False, server: bool = False, client: bool = False) -> CertPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(name))
               .issuer_name(_name(name) if issuer is None else
                            x509.load_pem_x509_certificate(issuer.cert_pem.read_bytes()).subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(__import__("ipaddress").ip_address(
                                             "127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                        critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                        critical=False)
    signer = key if issuer is None else issuer.private_key
    cert = builder.sign(signer, hashes.SHA256())
    cert_pem = directory / f"{name}.crt"
    key_pem = directory / f"{name}.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key_pem.chmod(0o600)
    return CertPair(cert_pem, key_pem, cert.public_bytes(serialization.Encoding.DER), key)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPair]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_cert(d, "test-ca", ca=True)
    other_ca = make_cert(d, "other-ca", ca=True)
    return {
        "ca": ca,
        "server": make_cert(d, "server", issuer=ca, server=True),
        "client": make_cert(d, "client", issuer=ca, client=True),
        "stranger": make_cert(d, "stranger", issuer=other_ca, client=True),
    }


@pytest.fixture(scope="session")
def delivery_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, CertPair]:
    d = tmp_path_factory.mktemp("delivery")
    return {bits: make_cert(d, f"delivery-{bits}", bits=bits) for bits in (2048, 3072, 4096)}


@pytest.fixture(scope="session")
def cpix_schema() -> etree.XMLSchema:
    """DASH-IF's CPIX 2.3 XSD as the package ships it (validated by lxml, not by our code)."""
    from speke_packager.keys.cpix.schema import SCHEMA_DIR

    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "2.3" / "cpix.xsd")))


