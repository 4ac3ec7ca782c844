"""``PackageServer`` refuses connection limits and request timeouts out of range itself, with
the message the ``serve`` command prints (the CLI only passes the numbers on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speke_packager.cli import main
from speke_packager.errors import UsageError
from speke_packager.verify.serve import PackageServer

_MSG = ("--max-connections must be at least 1 and --request-timeout between 0 and 3600 "
        "seconds")


@pytest.mark.parametrize(("conns", "timeout"), [(0, 30.0), (8, 0.0), (8, -1.0), (8, 3601.0)])
def test_limits_refused(tmp_path: Path, conns: int, timeout: float) -> None:
    with pytest.raises(UsageError) as ei:
        PackageServer(tmp_path, max_connections=conns, request_timeout=timeout)
    assert str(ei.value) == _MSG


def test_limits_in_range_pass_the_check(tmp_path: Path) -> None:
    # control: in range, the next check (the folder) speaks
    with pytest.raises(UsageError, match="is not a directory"):
        PackageServer(tmp_path / "nope", max_connections=1, request_timeout=3600)


def test_cli_says_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["serve", str(tmp_path), "--max-connections", "0"])
    assert rc == 2
    assert capsys.readouterr().err == f"speke-packager: error: {_MSG}\n"
