"""encrypt-batch on local worker processes: five assets across schemes and formats with keys
from the local key server (one SPEKE request per asset), failures reported per asset, resume
from the completion manifests, a worker or the coordinator killed mid-batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from speke_packager.keyserver import KeyServer
from tests.vod.conftest import KEY, KEYSPEC, long_package

from .conftest import (
    GOOD,
    asset_keys,
    batch_cli,
    by_asset,
    cid,
    good_rows,
    mtimes,
    verify_asset,
    write_jsonl,
)


def test_batch_local_every_scheme_failures_and_resume(keyserver, media, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = good_rows(media, out)
    with KeyServer(host="127.0.0.1", port=0, seed="other", faults=["status=500"]) as broken:
        rows += [
            {"id": "no-input", "input": str(tmp_path / "missing.mp4"), "output": str(out / "x"),
             "scheme": "cenc", "format": "dash", "drm": "widevine", "content_id": "cid-x"},
            {"id": "key-error", "input": str(media("h264-aac-mp4")), "output": str(out / "k"),
             "scheme": "cenc", "format": "dash", "drm": "widevine", "content_id": "cid-k",
             "speke_url": broken.speke_url},
            {"id": "bad-scheme", "input": "a.mp4", "output": str(out / "b"), "scheme": "rot13",
             "content_id": "cid-b"},
            {"id": "bad-field", "input": "a.mp4", "output": str(out / "c"), "colour": "blue"},
        ]
        jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
        report = tmp_path / "report.json"
        res = batch_cli(str(jobs), "--workers", "2", "--report", str(report), "--speke-url",
                        keyserver.speke_url, "--retries", "0", debug=True)
        assert res.returncode == 1, res.stderr  # some assets failed
        assert broken.request_count("/speke") == 1
    doc = json.loads(report.read_text())
    assets = by_asset(doc)
    assert doc["totals"]["done"] == 5 and doc["totals"]["failed"] == 4, doc
    for a in GOOD:
        assert assets[a]["status"] == "done", assets[a]
        assert assets[a]["bytes_out"] > 0 and assets[a]["seconds"]["encrypt"] > 0
        assert assets[a]["attempts"] == 1
    assert "does not exist" in assets["no-input"]["error"]
    assert "500" in assets["key-error"]["error"]
    assert "rot13" in assets["bad-scheme"]["error"]
    assert "unknown field 'colour'" in assets["bad-field"]["error"]
    for a in ("no-input", "key-error", "bad-scheme", "bad-field"):
        assert "\n" not in assets[a]["error"]
        assert not (out / a).exists()
    # keys fetched once per asset, by the coordinator: one SPEKE request per good asset
    assert keyserver.request_count("/speke") == 5
    for a in GOOD:
        verify_asset(a, out / a, media, keyserver, tmp_path)
    # no content key in the report, stdout or stderr (debug logging on)
    everything = report.read_text() + res.stdout + res.stderr
    for a in GOOD:
        from .conftest import assert_no_key

        assert_no_key(everything, asset_keys(out / a, cid(a), keyserver))

    # re-run: every complete asset is skipped (no key request, files untouched)
    before = {a: mtimes(out / a) for a in GOOD}
    keyserver.reset_counts()
    res2 = batch_cli(str(jobs), "--workers", "2", "--report", str(report), "--speke-url",
                     keyserver.speke_url, "--retries", "0")
    assert res2.returncode == 1, res2.stderr
    doc2 = json.loads(report.read_text())
    assert doc2["totals"]["skipped"] == 5 and doc2["totals"]["done"] == 0
    assert doc2["totals"]["failed"] == 4
    assert keyserver.request_count("/speke") == 0
    assert {a: mtimes(out / a) for a in GOOD} == before

    # a changed file makes its asset incomplete: only that one is redone, cleanly
    seg = sorted((out / "dash-cenc" / "0").glob("segment_*.m4s"))[0]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    os.utime(seg, ns=(before["dash-cenc"]["0/" + seg.name],) * 2)  # same mtime, same size
    res3 = batch_cli(str(jobs), "--workers", "2", "--report", str(report), "--speke-url",
                     keyserver.speke_url, "--retries", "0")
    doc3 = by_asset(json.loads(report.read_text()))
    assert doc3["dash-cenc"]["status"] == "done", res3.stderr
    assert "checksum" in doc3["dash-cenc"]["redone_because"]
    assert [a for a in GOOD if doc3[a]["status"] == "skipped"] == [
        a for a in GOOD if a != "dash-cenc"]
    verify_asset("dash-cenc", out / "dash-cenc", media, keyserver, tmp_path)
    assert keyserver.request_count("/speke") == 1


def test_existing_folder_not_ours_needs_force(media, tmp_path: Path, key_file: Path) -> None:
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "keep.txt").write_text("user data")
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"id": "a", "input": str(media("h264-aac-mp4")), "output": str(out / "a"),
         "format": "dash", "key": [KEYSPEC]}])
    res = batch_cli(str(jobs), "--workers", "1", "--json")
    assert res.returncode == 1
    (a,) = json.loads(res.stdout)["assets"]
    assert "--force" in a["error"] and (out / "a" / "keep.txt").exists()
    res = batch_cli(str(jobs), "--workers", "1", "--json", "--force")
    assert res.returncode == 0, res.stderr
    assert not (out / "a" / "keep.txt").exists()
    assert KEY.hex() not in res.stdout + res.stderr
    # --force redoes a complete output too; without it the next run skips it
    res = batch_cli(str(jobs), "--workers", "1", "--json", "--force")
    (a,) = json.loads(res.stdout)["assets"]
    assert a["status"] == "done" and a["redone_because"] == "--force"
    res = batch_cli(str(jobs), "--workers", "1", "--json")
    (a,) = json.loads(res.stdout)["assets"]
    assert res.returncode == 0 and a["status"] == "skipped"


def test_csv_jobs_and_relative_paths(media, tmp_path: Path, key_file: Path) -> None:
    src = media("h264-aac-ts")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.ts").symlink_to(src)
    (tmp_path / "keys.txt").write_text(KEYSPEC + "\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,input,output,scheme,key-file,key_uri,segment-duration\n"
                    f"t1,in/a.ts,out/t1,aes-128,keys.txt,{key_file},2\n"
                    "t2,in/a.ts,out/t2,aes-128,keys.txt,,two\n")
    res = batch_cli(str(jobs), "--workers", "2", "--json")
    doc = by_asset(json.loads(res.stdout))
    assert doc["t1"]["status"] == "done", res.stderr
    assert "segment_duration must be a number" in doc["t2"]["error"]
    out = tmp_path / "out" / "t1"
    from tests.vod.conftest import frames

    assert frames(out / "video0" / "index.m3u8", "v:0", hls=True) == frames(src, "v:0")


def _children(pid: int) -> list[int]:
    """The spawned worker processes of the coordinator ``pid``."""
    import psutil

    kids = []
    for p in psutil.Process(pid).children():
        try:
            if any("spawn_main" in part for part in p.cmdline()):
                kids.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return kids


def _long_jobs(packages, tmp_path: Path, key_file: Path, n: int) -> tuple[Path, Path, Path]:
    playlist = long_package(packages, tmp_path / "long", n=300)
    out = tmp_path / "out"
    rows = [{"id": f"long-{i}", "input": str(playlist), "output": str(out / f"long-{i}"),
             "scheme": "aes-128", "key": [KEYSPEC], "key_uri": str(key_file)}
            for i in range(n)]
    return write_jsonl(tmp_path / "jobs.jsonl", rows), out, playlist


def _openssl_matches(out: Path, playlist: Path) -> None:
    """One encrypted segment of a long output decrypts (openssl) to the clear segment."""
    from tests.vod.conftest import key_lines

    text = (out / "long.m3u8").read_text()
    (k,) = key_lines(text)
    iv = bytes.fromhex(k["IV"][2:])
    enc = (out / "long_0007.ts").read_bytes()
    dec = subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", KEY.hex(), "-iv",
                          iv.hex()], input=enc, capture_output=True, check=True).stdout
    assert dec == (playlist.parent / "seg_001.ts").read_bytes()


def test_local_worker_killed_mid_asset_is_run_again(packages, tmp_path: Path,
                                                     key_file: Path) -> None:
    jobs, out, playlist = _long_jobs(packages, tmp_path, key_file, 3)
    report = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", "encrypt-batch", str(jobs),
                             "--workers", "2", "--report", str(report)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".partial") and any(p.glob("long_*.ts"))
                      for p in out.glob(".*") if out.exists()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        victims = _children(proc.pid)
        assert victims
        os.kill(victims[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    doc = json.loads(report.read_text())
    assert doc["totals"]["done"] == 3
    assert max(a["attempts"] for a in doc["assets"]) == 2  # the lost ones ran again
    for i in range(3):
        _openssl_matches(out / f"long-{i}", playlist)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_coordinator_killed_then_rerun_resumes(packages, tmp_path: Path, key_file: Path) -> None:
    jobs, out, playlist = _long_jobs(packages, tmp_path, key_file, 4)
    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", "encrypt-batch", str(jobs),
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "long-0" / ".speke-packager-complete.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        workers = _children(proc.pid)
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait()
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = [p.name for p in out.iterdir() if (p / ".speke-packager-complete.json").exists()]
    assert "long-0" in finished and len(finished) < 4
    before = {n: mtimes(out / n) for n in finished}
    report = tmp_path / "report.json"
    res = batch_cli(str(jobs), "--workers", "2", "--report", str(report))
    assert res.returncode == 0, res.stderr
    doc = by_asset(json.loads(report.read_text()))
    assert sorted(a for a, r in doc.items() if r["status"] == "skipped") == sorted(finished)
    assert all(r["status"] in ("done", "skipped") for r in doc.values())
    assert {n: mtimes(out / n) for n in finished} == before
    for i in range(4):
        _openssl_matches(out / f"long-{i}", playlist)
    # the killed run's temporary folders are gone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_ctrl_c_stops_cleanly_and_the_report_matches_the_disk(packages, tmp_path: Path,
                                                               key_file: Path) -> None:
    from speke_packager.pipeline.batch import output_state

    jobs, out, _ = _long_jobs(packages, tmp_path, key_file, 6)
    report = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", "encrypt-batch", str(jobs),
                             "--workers", "2", "--report", str(report)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".partial") and any(p.glob("long_*.ts"))
                      for p in out.glob(".*") if out.exists()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    doc = json.loads(report.read_text())
    assert doc["interrupted"] is True and doc["totals"]["cancelled"] >= 1
    for a in doc["assets"]:
        state = output_state(Path(a["output"]), "", check="size")
        if a["status"] == "done":
            assert state.ours and (Path(a["output"]) / "long.m3u8").exists()
        else:
            assert a["status"] == "cancelled" and not state.exists
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder
