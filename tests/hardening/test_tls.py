"""TLS: certificate verification is on by default; ``--insecure`` is explicit and warns; the key
server speaks TLS 1.2+ only."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import KeyServerError
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer

from .conftest import cli

pytestmark = pytest.mark.timeout(120)

CONTRACT = EncryptionContract("tls-1", (DrmSystem.WIDEVINE,), (Packaging.DASH,), Scheme.CENC,
                              SpekeVersion.V2_0)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.keyserver.conftest import make_cert
    d = tmp_path_factory.mktemp("tls")
    pair = make_cert(d, "server", server=True)
    return pair.cert_pem, pair.key_pem


@pytest.fixture()
def https(tls_files: tuple[Path, Path]) -> Iterator[KeyServer]:
    cert, key = tls_files
    with KeyServer(allow_fault_header=True, seed="tls", tls_cert=str(cert), tls_key=str(key)) as ks:
        assert ks.speke_url.startswith("https://")
        yield ks


def test_verification_is_on_by_default(https: KeyServer) -> None:
    client = SpekeClient(https.speke_url, retries=0)
    assert client.verify_tls is True
    with pytest.raises(KeyServerError, match="TLS"):
        client.fetch(CONTRACT)
    assert https.request_count("/speke") == 0  # the handshake failed: no request was sent


def test_ca_bundle_verifies(https: KeyServer, tls_files: tuple[Path, Path]) -> None:
    client = SpekeClient(https.speke_url, retries=0, verify_tls=str(tls_files[0]))
    assert client.fetch(CONTRACT).entries


def test_insecure_client_warns(https: KeyServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="speke_packager"):
        client = SpekeClient(https.speke_url, retries=0, verify_tls=False)
    assert any("DISABLED" in r.getMessage() or "insecure" in r.getMessage().lower()
               for r in caplog.records if r.levelno >= logging.WARNING)
    assert client.fetch(CONTRACT).entries


def test_cli_default_refuses_self_signed(https: KeyServer) -> None:
    res = cli("keys", "--speke-url", https.speke_url, "--content-id", "tls-1", "--scheme", "cenc",
              "--retries", "0")
    assert res.returncode == 3, res.stderr
    assert "TLS" in res.stderr and "Traceback" not in res.stderr


def test_cli_insecure_is_explicit_and_warns(https: KeyServer) -> None:
    res = cli("keys", "--speke-url", https.speke_url, "--content-id", "tls-1", "--scheme", "cenc",
              "--insecure")
    assert res.returncode == 0, res.stderr
    assert "WARNING" in res.stderr and ("DISABLED" in res.stderr or "insecure" in res.stderr)


def test_cli_ca_bundle(https: KeyServer, tls_files: tuple[Path, Path]) -> None:
    res = cli("keys", "--speke-url", https.speke_url, "--content-id", "tls-1", "--scheme", "cenc",
              "--ca-bundle", str(tls_files[0]))
    assert res.returncode == 0, res.stderr
    assert "DISABLED" not in res.stderr


@pytest.mark.parametrize("command", ["encrypt-vod", "verify"])
def test_insecure_is_an_explicit_option_everywhere(command: str) -> None:
    """Every command that talks to a key server has --insecure, off unless given."""
    res = cli(command, "--help")
    assert "--insecure" in res.stdout


def test_key_server_refuses_old_tls(https: KeyServer) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: the point
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="localhost").close()
    # control: TLS 1.2+ with the same relaxed verification connects
    ok = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ok.check_hostname = False
    ok.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw, \
            ok.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")

