"""A real S3-compatible server for tests (storage, batch): moto's standalone server in its own
process on 127.0.0.1 (one per test session), fake credentials in the environment of each test
only (``aws_env``: made autouse by the conftest of a folder that uses object storage), a fresh
bucket per test, and a recording / fault-injecting proxy in front of it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from speke_packager.storage import ObjectStore, S3Options
from tests.storage.s3proxy import S3Proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a moto server started for this session."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("wb")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake credentials for the test server, for this test only; no user config is read."""
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture()
def proxy(moto_server: str) -> Iterator[S3Proxy]:
    host, port = moto_server.removeprefix("http://").split(":")
    with S3Proxy((host, int(port))) as p:
        yield p


@pytest.fixture()
def s3opts(proxy: S3Proxy) -> S3Options:
    """Options that go through the proxy (small parts, few retries' worth of waiting)."""
    return S3Options(endpoint_url=proxy.url, part_size=5 << 20, concurrency=4)


@pytest.fixture()
def store(s3opts: S3Options) -> ObjectStore:
    return ObjectStore(s3opts)


@pytest.fixture()
def bucket(moto_server: str) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    ObjectStore(S3Options(endpoint_url=moto_server)).client.create_bucket(Bucket=name)
    return name
