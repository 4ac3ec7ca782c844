"""encrypt-batch on a real Dask cluster (LocalCluster, two worker processes on 127.0.0.1): over
TLS with certificates made here, every output decrypted independently; no key in task names,
logs or the report; a plain-TCP scheduler refused without --insecure-cluster; a worker killed
mid-batch; the missing extra named in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.vod.conftest import KEY, KEYSPEC

from .conftest import (
    GOOD,
    assert_no_key,
    asset_keys,
    batch_cli,
    by_asset,
    cid,
    good_rows,
    mtimes,
    verify_asset,
    write_jsonl,
)
from .test_local import _long_jobs, _openssl_matches


def _client(address: str, security: Any = None) -> Any:
    from distributed import Client

    return Client(address, security=security, set_as_default=False, timeout=30)


def test_dask_tls_batch(tls_cluster, keyserver, media, tmp_path: Path) -> None:
    from distributed import get_task_stream

    cluster, tls = tls_cluster
    out = tmp_path / "out"
    rows = [*good_rows(media, out),
            {"id": "no-input", "input": str(tmp_path / "nope.mp4"), "output": str(out / "n"),
             "scheme": "cenc", "format": "dash", "drm": "widevine", "content_id": "cid-n"}]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    report = tmp_path / "report.json"
    assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
    with _client(cluster.scheduler_address, cluster.security) as client, \
            get_task_stream(client=client) as stream:
        res = batch_cli(str(jobs), "--executor", cluster.scheduler_address,
                        "--tls-ca", tls["ca"], "--tls-cert", tls["client_cert"],
                        "--tls-key", tls["client_key"], "--report", str(report),
                        "--speke-url", keyserver.speke_url, debug=True)
        assert res.returncode == 1, res.stderr  # the missing input
        logs = json.dumps(client.get_scheduler_logs()) + json.dumps(client.get_worker_logs())
        events = json.dumps(client.get_events("speke-packager-progress"), default=str)
        workers = set(client.run(os.getpid).values())
    time.sleep(0.5)
    tasks = [t["key"] for t in stream.data]
    doc = json.loads(report.read_text())
    assets = by_asset(doc)
    assert doc["executor"] == cluster.scheduler_address and doc["slots"] == 2
    assert doc["totals"]["done"] == 5 and doc["totals"]["failed"] == 1
    assert "does not exist" in assets["no-input"]["error"]
    assert assets["no-input"]["attempts"] == 0  # refused on the coordinator, never submitted
    # encryption ran on the cluster's worker processes, keys were fetched by the coordinator
    ran_on = {int(assets[a]["worker"].rsplit(":", 1)[1]) for a in GOOD}
    assert ran_on <= workers and len(ran_on) == 2
    assert keyserver.request_count("/speke") == 5
    # task names carry the asset id only
    run = re.fullmatch(r"encrypt-dash-cenc-([0-9a-f]{8})-1", next(
        t for t in tasks if t.startswith("encrypt-dash-cenc-")))
    assert run, tasks
    assert sorted(tasks) == sorted(f"encrypt-{a}-{run.group(1)}-1" for a in GOOD)
    assert '"done"' in events or "done" in events
    for a in GOOD:
        verify_asset(a, out / a, media, keyserver, tmp_path)
        assert_no_key(report.read_text() + res.stdout + res.stderr + logs + events,
                      asset_keys(out / a, cid(a), keyserver))
    # the searches above ran over real text: the cluster's logs and our debug log
    assert re.search(r"Register worker", logs) and "DEBUG speke_packager" in res.stderr

    # negative control: a client certificate from another CA is refused (mutual TLS)
    from .conftest import make_tls

    other = make_tls(tmp_path / "other-ca")
    bad = batch_cli(str(jobs), "--executor", cluster.scheduler_address, "--tls-ca", tls["ca"],
                    "--tls-cert", other["client_cert"], "--tls-key", other["client_key"],
                    "--speke-url", keyserver.speke_url, "--force")
    assert bad.returncode == 2
    assert "cannot reach the Dask scheduler" in bad.stderr and bad.stderr.count("\n") == 1


def test_plain_tcp_scheduler_refused(tmp_path: Path, media) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"input": str(media("h264-aac-mp4")), "output": str(tmp_path / "o"), "key": KEYSPEC}])
    for url in ("dask://127.0.0.1:8786", "tcp://127.0.0.1:8786"):
        res = batch_cli(str(jobs), "--executor", url)
        assert res.returncode == 2
        assert "not TLS" in res.stderr and "--insecure-cluster" in res.stderr
        assert res.stderr.count("\n") == 1
    res = batch_cli(str(jobs), "--executor", "tls://127.0.0.1:8786")
    assert res.returncode == 2 and "--tls-ca, --tls-cert and --tls-key" in res.stderr
    res = batch_cli(str(jobs), "--executor", "spark://x:1")
    assert res.returncode == 2 and "--executor must be" in res.stderr
    assert not (tmp_path / "o").exists()


def test_missing_extra_is_named(tmp_path: Path, media) -> None:
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"input": str(media("h264-aac-mp4")), "output": str(tmp_path / "o"), "key": KEYSPEC}])
    code = ("import sys; sys.modules['distributed'] = None; "
            "from speke_packager.cli import main; "
            f"sys.exit(main(['encrypt-batch', {str(jobs)!r}, '--executor', "
            "'tcp://127.0.0.1:1', '--insecure-cluster']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == ("speke-packager: error: the dask executor needs the dask "
                                  "extra: pip install 'speke-packager[dask]'")


def test_dask_worker_killed_mid_batch_then_rerun_skips(tcp_cluster, packages, tmp_path: Path,
                                                       key_file: Path) -> None:
    jobs, out, playlist = _long_jobs(packages, tmp_path, key_file, 4)
    report = tmp_path / "report.json"
    address = tcp_cluster.scheduler_address
    args = [sys.executable, "-m", "speke_packager", "encrypt-batch", str(jobs), "--executor",
            address.replace("tcp://", "dask://"), "--insecure-cluster", "--report", str(report)]
    with _client(address) as client:
        pids = client.run(os.getpid)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            busy: list[str] = []
            while not busy:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                busy = [w for w, keys in client.processing().items() if keys]
                time.sleep(0.05)
            # wait until the asset is being written, then kill that worker's process outright
            while not any(p.name.endswith(".partial") for p in out.glob(".*")):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            victim = pids[busy[0]]
            lost = [str(k) for k in client.processing()[busy[0]]]
            os.kill(victim, signal.SIGKILL)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    doc = json.loads(report.read_text())
    assert doc["totals"]["done"] == 4  # the scheduler ran the lost task again
    # the tasks the killed worker held (running or queued there) ended on another worker
    assert lost and all(k.startswith("encrypt-long-") for k in lost)
    for k in lost:
        rerun = by_asset(doc)[k[len("encrypt-"):].rsplit("-", 2)[0]]
        assert rerun["status"] == "done" and not rerun["worker"].endswith(f":{victim}")
    for i in range(4):
        _openssl_matches(out / f"long-{i}", playlist)
    before = {i: mtimes(out / f"long-{i}") for i in range(4)}
    res = batch_cli(str(jobs), "--executor", address, "--insecure-cluster", "--json")
    assert res.returncode == 0, res.stderr
    again = json.loads(res.stdout)
    assert again["totals"]["skipped"] == 4 and again["totals"]["done"] == 0
    assert {i: mtimes(out / f"long-{i}") for i in range(4)} == before
    assert KEY.hex() not in res.stdout + err


@pytest.mark.parametrize("obj", ["sealed", "task"])
def test_task_arguments_hide_keys(obj: str, media, tmp_path: Path) -> None:
    """What Dask prints for a task's arguments ('Compute Failed ... args') is their repr."""
    import pickle

    from speke_packager.constants import Scheme
    from speke_packager.pipeline.batch.worker import AssetTask, SealedKeys
    from speke_packager.pipeline.options import VodOptions
    from speke_packager.pipeline.rawkeys import raw_keyset

    ks = raw_keyset([KEYSPEC], Scheme.CENC)
    value: object = SealedKeys(ks) if obj == "sealed" else AssetTask(
        "a1", VodOptions(input=tmp_path / "in.mp4", output=tmp_path / "o"), "f" * 64)
    for text in (repr(value), str(value), repr([value]), repr({"k": (value,)})):
        assert (KEY.hex() not in text.lower() and "a1" in text) or "hidden" in text
    if obj == "sealed":
        again = pickle.loads(pickle.dumps(value))
        assert again.open().entries[0].key.key == KEY  # type: ignore[attr-defined]


def test_jobs_on_a_daemonic_dask_worker(tcp_cluster, media, tmp_path: Path,
                                        key_file: Path) -> None:
    """A Dask worker process may not start the segment pool: --jobs falls back to 1, noted."""
    src = media("h264-aac-ts")
    jobs = write_jsonl(tmp_path / "jobs.jsonl", [
        {"id": "j", "input": str(src), "output": str(tmp_path / "out"), "scheme": "aes-128",
         "key": [KEYSPEC], "key_uri": str(key_file), "segment_duration": 2}])
    res = batch_cli(str(jobs), "--executor", tcp_cluster.scheduler_address,
                    "--insecure-cluster", "--jobs", "2", "--json")
    assert res.returncode == 0, res.stderr
    (a,) = json.loads(res.stdout)["assets"]
    assert a["status"] == "done" and "--jobs 2 ignored" in a["warnings"][0]
    from tests.vod.conftest import frames

    assert frames(tmp_path / "out" / "video0" / "index.m3u8", "v:0", hls=True) == \
        frames(src, "v:0")
