"""Faults against the real local key server: the SPEKE client retries what is transient within
its budget, then fails with a clear typed error; attempts are counted on the server side."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import (
    CpixError,
    CpixValidationError,
    KeyServerError,
    KeyServerHTTPError,
    KeyServerTimeout,
)
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer

pytestmark = pytest.mark.timeout(120)

RETRIES = 2
CONTRACT = EncryptionContract("fault-1", (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY),
                              (Packaging.DASH,), Scheme.CENC, SpekeVersion.V2_0)
V1 = EncryptionContract("fault-v1", (DrmSystem.WIDEVINE,), (Packaging.DASH,), Scheme.CENC,
                        SpekeVersion.V1_0)


def _server(*faults: str) -> KeyServer:
    return KeyServer(allow_fault_header=True, host="127.0.0.1", port=0, seed="hardening", faults=list(faults))


@pytest.fixture()
def make() -> Iterator[list[KeyServer]]:
    started: list[KeyServer] = []
    yield started
    for ks in started:
        ks.stop()


def _client(ks: KeyServer, **kw: object) -> SpekeClient:
    opts: dict[str, object] = {"retries": RETRIES, "backoff": 0.01, "timeout": (2.0, 5.0)}
    opts.update(kw)
    return SpekeClient(ks.speke_url, **opts)  # type: ignore[arg-type]


def _start(make: list[KeyServer], *faults: str) -> KeyServer:
    ks = _server(*faults).start()
    make.append(ks)
    return ks


def _no_key_material(exc: BaseException, ks: KeyServer) -> None:
    from uuid import UUID
    text = f"{exc} {exc!r}"
    for kid in (UUID(int=0),):  # the keys we could leak are the server's derived ones
        assert ks.key_for("fault-1", kid).hex() not in text


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_5xx_storm_exhausts_the_budget(make: list[KeyServer], status: int) -> None:
    ks = _start(make, f"status={status}")
    client = _client(ks)
    with pytest.raises(KeyServerHTTPError) as info:
        client.fetch(CONTRACT)
    assert info.value.status == status
    assert str(status) in str(info.value)
    assert ks.request_count("/speke") == RETRIES + 1
    assert client.attempts == RETRIES + 1


def test_storm_that_ends_within_the_budget_succeeds(make: list[KeyServer]) -> None:
    ks = _start(make, "status=503", f"times={RETRIES}")
    keys = _client(ks).fetch(CONTRACT)
    assert keys.entries
    assert ks.request_count("/speke") == RETRIES + 1


def test_storm_longer_than_the_budget_fails(make: list[KeyServer]) -> None:
    """Control for the previous test: one more faulted request than the budget allows."""
    ks = _start(make, "status=503", f"times={RETRIES + 1}")
    with pytest.raises(KeyServerHTTPError):
        _client(ks).fetch(CONTRACT)
    assert ks.request_count("/speke") == RETRIES + 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_final_statuses_are_not_retried(make: list[KeyServer], status: int) -> None:
    ks = _start(make, f"status={status}")
    with pytest.raises(KeyServerHTTPError) as info:
        _client(ks).fetch(CONTRACT)
    assert info.value.status == status
    assert ks.request_count("/speke") == 1


def test_slow_server_times_out_after_retries(make: list[KeyServer]) -> None:
    ks = _start(make, "delay=3")
    with pytest.raises(KeyServerTimeout) as info:
        _client(ks, timeout=(2.0, 0.5)).fetch(CONTRACT)
    assert "timed out" in str(info.value)
    assert ks.request_count("/speke") == RETRIES + 1


def test_slow_but_within_timeout_succeeds(make: list[KeyServer]) -> None:
    ks = _start(make, "delay=0.3")
    assert _client(ks, timeout=(2.0, 10.0)).fetch(CONTRACT).entries
    assert ks.request_count("/speke") == 1


def test_connection_reset_is_retried_then_fails(make: list[KeyServer]) -> None:
    ks = _start(make, "reset")
    with pytest.raises(KeyServerError) as info:
        _client(ks).fetch(CONTRACT)
    assert not isinstance(info.value, KeyServerHTTPError)
    assert ks.request_count("/speke") == RETRIES + 1


def test_reset_storm_that_ends_succeeds(make: list[KeyServer]) -> None:
    ks = _start(make, "reset", "times=1")
    assert _client(ks).fetch(CONTRACT).entries
    assert ks.request_count("/speke") == 2


def test_truncated_answer_is_a_typed_error(make: list[KeyServer]) -> None:
    """Half a document, consistently framed (Content-Length = what was sent): malformed CPIX."""
    ks = _start(make, "truncate")
    with pytest.raises(CpixError, match="well-formed"):
        _client(ks).fetch(CONTRACT)
    assert ks.request_count("/speke") == 1


def test_partial_answer_is_a_typed_error(make: list[KeyServer]) -> None:
    """The connection closes before the announced Content-Length arrived."""
    ks = _start(make, "partial")
    with pytest.raises(KeyServerError):
        _client(ks).fetch(CONTRACT)


def test_partial_answer_is_retried(make: list[KeyServer]) -> None:
    ks = _start(make, "partial")
    with pytest.raises(KeyServerError):
        _client(ks).fetch(CONTRACT)
    assert ks.request_count("/speke") == RETRIES + 1


def test_server_down_is_retried(make: list[KeyServer]) -> None:
    ks = _start(make)
    url = ks.speke_url
    ks.stop()
    client = SpekeClient(url, retries=RETRIES, backoff=0.01, timeout=(1.0, 1.0))
    with pytest.raises(KeyServerError, match="cannot reach"):
        client.fetch(CONTRACT)
    assert client.attempts == RETRIES + 1


@pytest.mark.parametrize("version", ["9.9", "1.0", "none"])
def test_wrong_version_echo(make: list[KeyServer], version: str) -> None:
    ks = _start(make, f"version={version}")
    with pytest.raises(CpixValidationError) as info:
        _client(ks).fetch(CONTRACT)
    assert "version" in str(info.value).lower()
    assert ks.request_count("/speke") == 1  # a protocol violation is not retried


@pytest.mark.parametrize("contract", [CONTRACT, V1], ids=["v2", "v1"])
def test_duplicated_kid(make: list[KeyServer], contract: EncryptionContract) -> None:
    ks = _start(make, "duplicate-kid")
    with pytest.raises(CpixError) as info:
        _client(ks).fetch(contract)
    assert ks.request_count("/speke") == 1
    _no_key_material(info.value, ks)


@pytest.mark.parametrize("fault", ["wrong-kid", "change-content-id", "change-scheme",
                                   "drop=ContentKeyList", "empty=PlainValue"])
def test_inconsistent_answers_fail_without_retry(make: list[KeyServer], fault: str) -> None:
    ks = _start(make, fault)
    with pytest.raises(CpixError):
        _client(ks).fetch(CONTRACT)
    assert ks.request_count("/speke") == 1


def test_healthy_server_control(make: list[KeyServer]) -> None:
    """Control: the same client and contract against a server without faults."""
    ks = _start(make)
    keys = _client(ks).fetch(CONTRACT)
    assert {e.key.kid for e in keys.entries}
    assert ks.request_count("/speke") == 1
