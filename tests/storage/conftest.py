"""A real S3-compatible server for the storage tests (see :mod:`tests.s3server`): moto's
standalone server on 127.0.0.1, fake credentials in the environment of each test only, a fresh
bucket per test, and a recording / fault-injecting proxy in front of it."""

from __future__ import annotations

import pytest

pytest.importorskip("moto", reason="moto[server] (the [dev] extra) is needed for these tests")

from tests.s3server import (  # noqa: F401 (fixtures)
    aws_env,
    bucket,
    moto_server,
    proxy,
    s3opts,
    store,
)


@pytest.fixture(autouse=True)
def _aws(request: pytest.FixtureRequest) -> None:
    """Every storage test: fake credentials only, no user configuration."""
    request.getfixturevalue("aws_env")
