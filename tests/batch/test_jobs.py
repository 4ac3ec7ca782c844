"""The jobs file: JSON Lines and CSV rows, one error per bad row, duplicate ids and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speke_packager.errors import UsageError
from speke_packager.pipeline.batch.jobs import read_jobs
from tests.vod.conftest import KEY, KEYSPEC

from .conftest import batch_cli, write_jsonl


def test_jsonl_rows_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "jobs.jsonl"
    p.write_text("\n".join([
        "# a comment",
        json.dumps({"id": "a", "input": "i.mp4", "output": "o", "drm": ["widevine", "playready"],
                    "explicit-iv": "yes", "clear_lead": 4, "key": "k1 k2;k3"}),
        "",
        "{not json",
        "[1, 2]",
        json.dumps({"id": "b", "input": "i", "output": "o", "segment_duration": True}),
        json.dumps({"id": "bad id!", "input": "i", "output": "o"}),
        json.dumps({"id": "c", "input": "i"}),
        json.dumps({"id": "d", "input": "i", "output": "o", "scheme": 3}),
        json.dumps({"id": "e", "input": "i", "output": "o", "content_id": None}),
    ]) + "\n")
    rows = read_jobs(p)
    assert [r.line for r in rows] == [2, 4, 5, 6, 7, 8, 9, 10]
    a = rows[0]
    assert a.error is None and a.asset == "a"
    assert a.fields["drm"] == ["widevine", "playready"] and a.fields["explicit_iv"] is True
    assert a.fields["clear_lead"] == 4.0 and a.fields["key"] == ["k1", "k2", "k3"]
    assert "not JSON" in (rows[1].error or "") and "not a JSON object" in (rows[2].error or "")
    assert rows[3].asset == "b" and "segment_duration must be a number" in (rows[3].error or "")
    assert rows[4].asset == "row-7" and "id must be" in (rows[4].error or "")
    assert "no output" in (rows[5].error or "")
    assert "scheme must be a string" in (rows[6].error or "")
    assert rows[7].error is None and "content_id" not in rows[7].fields
    assert "k1" not in repr(a)  # a row may hold raw keys: its repr shows none


def test_csv_header_names_and_extra_cells(tmp_path: Path) -> None:
    p = tmp_path / "jobs.csv"
    p.write_text("ID,Input,Output,Content-ID,DRM\n"
                 "x,a.mp4,out/x,cid-x,\"widevine,playready\"\n"
                 ",,,,\n"
                 "y,a.mp4,out/y,cid-y,widevine,extra\n")
    rows = read_jobs(p)
    assert len(rows) == 2
    assert rows[0].error is None and rows[0].fields["content_id"] == "cid-x"
    assert rows[0].fields["drm"] == ["widevine", "playready"]
    assert rows[1].asset == "y" and "more cells than header columns" in (rows[1].error or "")


@pytest.mark.parametrize("name, text, message", [
    ("jobs.txt", "x", "must be .jsonl or .csv"),
    ("jobs.jsonl", "\n# only a comment\n", "no jobs"),
    ("jobs.csv", "", "no header row"),
])
def test_unreadable_jobs_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_jobs(p)
    res = batch_cli(str(p))
    assert res.returncode == 2 and message in res.stderr


def test_duplicate_ids_and_outputs_fail_the_later_rows(media, tmp_path: Path) -> None:
    src = str(media("h264-aac-mp4"))
    row = {"input": src, "format": "dash", "key": [KEYSPEC]}
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {**row, "id": "a", "output": "out/a"},
        {**row, "id": "a", "output": "out/b"},
        {**row, "id": "c", "output": "out/a"},
        {**row, "id": "d", "output": "out/d", "drm": "widevine"},  # raw keys: ClearKey only
    ])
    res = batch_cli(str(jobs), "--workers", "1", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assets = [(a["asset"], a["status"], a["error"]) for a in doc["assets"]]
    assert assets[0] == ("a", "done", None)
    assert assets[1][1] == "failed" and "used by an earlier row" in assets[1][2]
    assert assets[2][1] == "failed" and "also the output of asset a" in assets[2][2]
    assert assets[3][1] == "failed" and "needs a key server" in assets[3][2]
    assert KEY.hex() not in res.stdout + res.stderr
    assert doc["assets"][0]["bytes_in"] > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a"]


def test_command_level_content_id_refused(tmp_path: Path) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"input": "i", "output": "o"}])
    res = batch_cli(str(jobs), "--content-id", "x", "--speke-url", "http://127.0.0.1:1/")
    assert res.returncode == 2 and "per row" in res.stderr


def test_key_periods_refused(tmp_path: Path) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [{"input": "i", "output": "o"}])
    res = batch_cli(str(jobs), "--key-periods", "0:3", "--speke-url", "http://127.0.0.1:1/")
    assert res.returncode == 2 and "--key-periods" in res.stderr
