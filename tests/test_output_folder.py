"""``check_output_folder``: the output-folder rule of AtomicDirectory (encrypt_vod), which
``demo`` checks up front through the same function instead of a copy of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from speke_packager._io import AtomicDirectory, check_output_folder
from speke_packager.cli import main
from speke_packager.errors import OutputError


def test_rule(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(OutputError) as ei:
        check_output_folder(full)
    assert str(ei.value) == f"{full} is not empty (use --force to replace it)"
    with pytest.raises(OutputError, match="is not empty"):
        AtomicDirectory(full)  # the library's writer says the same
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        check_output_folder(a_file, force=True)
    # controls: forced, empty, absent
    check_output_folder(full, force=True)
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty")
    check_output_folder(tmp_path / "absent")


def test_demo_refuses_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    out = tmp_path / "demo-output"
    out.mkdir()
    (out / "keep").write_text("x")
    rc = main(["demo", "--output", str(out)])
    captured = capsys.readouterr()
    assert rc != 0 and captured.out == ""
    assert captured.err == (f"speke-packager: error: {out} is not empty (use --force to "
                            "replace it)\n")
    assert sorted(p.name for p in out.iterdir()) == ["keep"]
