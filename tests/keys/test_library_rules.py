"""Rules of the ``keys`` options enforced by the library (``key_periods``, ``SpekeClient``):
the CLI parses the values and prints the library's message unchanged."""

from __future__ import annotations

import pytest

from speke_packager.cli import main
from speke_packager.errors import UsageError
from speke_packager.keys import key_periods

_MSG = "--key-periods needs FIRST >= 0 and 1 <= COUNT <= 1000"


def test_key_periods() -> None:
    assert [p.index for p in key_periods(5, 3)] == [5, 6, 7]
    assert [p.index for p in key_periods(0, 1)] == [0]
    assert len(key_periods(0, 1000)) == 1000


@pytest.mark.parametrize(("first", "count"), [(-1, 2), (0, 0), (3, 1001), (0, -4)])
def test_key_periods_refused(first: int, count: int) -> None:
    with pytest.raises(UsageError) as ei:
        key_periods(first, count)
    assert str(ei.value) == _MSG


def test_cli_says_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    # refused before any request: nothing listens on the URL
    rc = main(["keys", "--speke-url", "http://127.0.0.1:9/speke", "--content-id", "c",
               "--key-periods", "2:1001"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"speke-packager: error: {_MSG}\n"


def test_client_refuses_negative_retries(capsys: pytest.CaptureFixture[str]) -> None:
    """The retries rule is the client's; the CLI prints its message unchanged."""
    from speke_packager.keys import SpekeClient

    with pytest.raises(UsageError) as ei:
        SpekeClient("http://127.0.0.1:9/speke", retries=-1)
    assert str(ei.value) == "--retries must not be negative"
    with pytest.raises(UsageError, match="backoff"):
        SpekeClient("http://127.0.0.1:9/speke", backoff=-0.5)
    SpekeClient("http://127.0.0.1:9/speke", retries=0)  # control
    rc = main(["keys", "--speke-url", "http://127.0.0.1:9/speke", "--content-id", "c",
               "--retries", "-1"])
    assert rc == 2
    assert capsys.readouterr().err == "speke-packager: error: --retries must not be negative\n"
