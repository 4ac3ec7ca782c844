"""encrypt-batch from and to object storage: a real S3-compatible server (moto, in its own
process on 127.0.0.1) behind the recording proxy of tests/storage, the local key server, local
worker processes and a Dask LocalCluster over TLS. Every output is downloaded and decrypted
independently against the clear source's frames; the proxy's log shows the order of the
writes (completion manifest last) and that a re-run writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto", reason="moto[server] (the [dev] extra) is needed for these tests")

from speke_packager.storage import (
    ObjectStore,
    S3Options,
    S3Url,
    download_tree,
    upload_file,
)

from .conftest import (
    GOOD,
    batch_cli,
    by_asset,
    cid,
    verify_asset,
    write_jsonl,
)
from .test_local import _children

MARKER = ".speke-packager-complete.json"
CLAIM = ".speke-packager-partial.json"


@pytest.fixture(autouse=True)
def _aws(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("aws_env")  # fake credentials only (inherited by every worker)


def _direct(moto_server: str) -> ObjectStore:
    """A store that bypasses the proxy (set-up and checks are not in its log)."""
    return ObjectStore(S3Options(endpoint_url=moto_server))


def _upload_sources(store: ObjectStore, bucket: str, media: Any) -> dict[str, str]:
    urls = {}
    for name in sorted({src for *_, src in GOOD.values()}):
        path = media(name)
        url = S3Url(bucket, f"clear/{name}/{path.name}")
        upload_file(store, path, url)
        urls[name] = str(url)
    return urls


def _row(asset: str, inp: str, out: str) -> dict[str, Any]:
    scheme, fmt, drm, _ = GOOD[asset]
    return {"id": asset, "input": inp, "output": out, "scheme": scheme, "format": fmt,
            "drm": drm, "content_id": cid(asset), "segment_duration": 2}


def _puts(proxy: Any, bucket: str, prefix: str) -> list[str]:
    """Keys written under ``prefix`` (relative to it), in the order the server stored them."""
    lead = f"/{bucket}/{prefix}"
    return [k[len(lead):] for k in proxy.state.writes() if k.startswith(lead)]


def _check_published_last(proxy: Any, bucket: str, prefix: str, local: Path) -> None:
    """The completion manifest is the last object written under ``prefix``, after the
    playlists / MPD; it lists every other object with its size and SHA-256."""
    puts = _puts(proxy, bucket, prefix)
    assert puts and puts[-1] == MARKER and puts[0] == CLAIM, puts
    assert puts.count(MARKER) == 1
    for manifest in ("master.m3u8", "manifest.mpd"):
        if (local / manifest).exists():
            assert puts.index(manifest) < len(puts) - 1
    doc = json.loads((local / MARKER).read_text())
    files = {p.relative_to(local).as_posix(): p.stat().st_size
             for p in local.rglob("*") if p.is_file() and p.name != MARKER}
    assert {k: v["bytes"] for k, v in doc["files"].items()} == files
    assert sorted(puts[1:-1]) == sorted(files)  # each object written once
    assert CLAIM not in files  # (downloaded: every object under the prefix)


def test_batch_s3_local_workers_every_scheme_resume_and_missing_input(
        moto_server: str, proxy: Any, bucket: str, keyserver: Any, media: Any,
        tmp_path: Path) -> None:
    direct = _direct(moto_server)
    src = _upload_sources(direct, bucket, media)
    local_out = tmp_path / "local-out"

    def s3out(a: str) -> str:
        return f"s3://{bucket}/out/{a}"

    rows = [
        _row("dash-cenc", src["h264-aac-mp4"], s3out("dash-cenc")),
        _row("hls-cbcs", src["h264-aac-mp4"], s3out("hls-cbcs")),
        _row("both-cbcs", str(media("h264-aac-mp4")), s3out("both-cbcs")),  # local -> s3
        _row("hls-aes128", src["h264-aac-ts"], s3out("hls-aes128")),
        _row("hls-sample-aes", src["h264-aac-ts"], str(local_out / "hls-sample-aes")),  # s3 ->
        {**_row("dash-cenc", f"s3://{bucket}/clear/nope.mp4", s3out("missing")),
         "id": "missing", "content_id": "cid-missing"},
        # the same prefix spelt with a trailing slash: one output for two rows is refused
        {**_row("hls-cbcs", src["h264-aac-mp4"], s3out("hls-cbcs") + "/"), "id": "dup"},
    ]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    report = tmp_path / "report.json"
    args = [str(jobs), "--workers", "2", "--endpoint-url", proxy.url, "--report", str(report),
            "--speke-url", keyserver.speke_url]
    res = batch_cli(*args)
    assert res.returncode == 1, res.stderr
    assets = by_asset(json.loads(report.read_text()))
    for a in GOOD:
        assert assets[a]["status"] == "done", assets[a]
    assert assets["missing"]["status"] == "failed"
    assert "does not exist" in assets["missing"]["error"]
    assert assets["missing"]["attempts"] == 0  # refused on the coordinator (a HEAD)
    assert assets["dup"]["status"] == "failed" and "also the output" in assets["dup"]["error"]
    assert not direct.any_under(S3Url(bucket, "out/missing/"))
    assert keyserver.request_count("/speke") == 5

    # every output downloaded and decrypted independently
    got: dict[str, Path] = {}
    for a in GOOD:
        if a == "hls-sample-aes":
            got[a] = local_out / a
            continue
        got[a] = tmp_path / "dl" / a
        download_tree(direct, S3Url(bucket, f"out/{a}/"), got[a])
        _check_published_last(proxy, bucket, f"out/{a}/", got[a])
    for a, folder in got.items():
        verify_asset(a, folder, media, keyserver, tmp_path)

    # a re-run skips every complete output: the objects are read back (sha256), none written
    proxy.state.log.clear()
    res = batch_cli(*args)
    assert res.returncode == 1, res.stderr
    again = by_asset(json.loads(report.read_text()))
    assert {a: again[a]["status"] for a in GOOD} == dict.fromkeys(GOOD, "skipped")
    assert again["missing"]["status"] == "failed"
    assert proxy.state.writes() == []
    assert not [r for r in proxy.state.log if r.method in ("PUT", "POST", "DELETE")]
    assert [r for r in proxy.state.log if r.method == "GET" and r.key.endswith(".m4s")]
    assert keyserver.request_count("/speke") == 5  # no key fetched for a skipped asset

    # --resume-check size: names and sizes from one LIST; nothing read but the manifests
    proxy.state.log.clear()
    res = batch_cli(*args, "--resume-check", "size")
    assert res.returncode == 1, res.stderr
    again = by_asset(json.loads(report.read_text()))
    assert {a: again[a]["status"] for a in GOOD} == dict.fromkeys(GOOD, "skipped")
    assert proxy.state.writes() == []
    gets = {r.key.rsplit("/", 1)[-1] for r in proxy.state.log if r.method == "GET"
            and "list-type" not in r.query and r.key.count("/") > 2}
    assert gets <= {MARKER}, gets

    # an object changed in place (same size) is noticed by the sha256 check: only that asset
    # is redone, and its new package is complete again
    victim = sorted(p for p in (got["hls-cbcs"]).rglob("*.m4s"))[0]
    rel = victim.relative_to(got["hls-cbcs"]).as_posix()
    direct.put(S3Url(bucket, f"out/hls-cbcs/{rel}"), bytes(victim.stat().st_size))
    proxy.state.log.clear()
    res = batch_cli(*args)
    assert res.returncode == 1, res.stderr
    again = by_asset(json.loads(report.read_text()))
    assert again["hls-cbcs"]["status"] == "done"
    assert "checksum" in (again["hls-cbcs"]["redone_because"] or "")
    assert {again[a]["status"] for a in GOOD if a != "hls-cbcs"} == {"skipped"}
    written = {k.split("/")[3] for k in proxy.state.writes()}
    assert written == {"hls-cbcs"}, written
    redo = tmp_path / "dl2" / "hls-cbcs"
    download_tree(direct, S3Url(bucket, "out/hls-cbcs/"), redo)
    _check_published_last(proxy, bucket, "out/hls-cbcs/", redo)
    verify_asset("hls-cbcs", redo, media, keyserver, tmp_path)


def test_batch_s3_on_a_dask_tls_cluster(moto_server: str, bucket: str, keyserver: Any,
                                        media: Any, tls_cluster: Any, tmp_path: Path) -> None:
    cluster, tls = tls_cluster
    direct = _direct(moto_server)
    src = _upload_sources(direct, bucket, media)
    picked = ("dash-cenc", "hls-aes128")
    rows = [_row(a, src[GOOD[a][3]], f"s3://{bucket}/dask/{a}") for a in picked]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    report = tmp_path / "report.json"
    res = batch_cli(str(jobs), "--executor", cluster.scheduler_address, "--tls-ca", tls["ca"],
                    "--tls-cert", tls["client_cert"], "--tls-key", tls["client_key"],
                    "--endpoint-url", moto_server, "--report", str(report),
                    "--speke-url", keyserver.speke_url)
    assert res.returncode == 0, res.stderr
    assets = by_asset(json.loads(report.read_text()))
    assert {assets[a]["status"] for a in picked} == {"done"}
    for a in picked:
        folder = tmp_path / "dl" / a
        download_tree(direct, S3Url(bucket, f"dask/{a}/"), folder)
        verify_asset(a, folder, media, keyserver, tmp_path)
    # a second run on the cluster skips both
    res = batch_cli(str(jobs), "--executor", cluster.scheduler_address, "--tls-ca", tls["ca"],
                    "--tls-cert", tls["client_cert"], "--tls-key", tls["client_key"],
                    "--endpoint-url", moto_server, "--report", str(report),
                    "--speke-url", keyserver.speke_url)
    assert res.returncode == 0, res.stderr
    assert {a["status"] for a in json.loads(report.read_text())["assets"]} == {"skipped"}


def test_batch_s3_prefix_not_ours_and_bad_url(moto_server: str, bucket: str, keyserver: Any,
                                              media: Any, tmp_path: Path) -> None:
    """A prefix holding objects but no completion manifest is refused without --force (and
    left alone); a malformed s3:// URL fails its row only; nothing is encrypted for either."""
    direct = _direct(moto_server)
    src = _upload_sources(direct, bucket, media)
    foreign = S3Url(bucket, "out/theirs/index.html")
    direct.put(foreign, b"not ours")
    rows = [_row("dash-cenc", src["h264-aac-mp4"], f"s3://{bucket}/out/theirs"),
            {**_row("hls-cbcs", src["h264-aac-mp4"], "s3://"), "id": "bad-url"},
            {**_row("hls-cbcs", src["h264-aac-mp4"], f"s3://{bucket}/"), "id": "bucket"}]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    report = tmp_path / "report.json"
    res = batch_cli(str(jobs), "--workers", "1", "--endpoint-url", moto_server, "--report",
                    str(report), "--speke-url", keyserver.speke_url)
    assert res.returncode == 1, res.stderr
    assets = by_asset(json.loads(report.read_text()))
    assert assets["dash-cenc"]["status"] == "failed"
    assert "no completion manifest" in assets["dash-cenc"]["error"]
    assert "--force" in assets["dash-cenc"]["error"]
    assert assets["bad-url"]["status"] == "failed" and "s3://" in assets["bad-url"]["error"]
    assert assets["bucket"]["status"] == "failed"
    assert "whole bucket" in assets["bucket"]["error"]
    assert [u.key for u, _ in direct.list_objects(S3Url(bucket, "out/"))] == [foreign.key]
    assert keyserver.request_count("/speke") == 0



def test_batch_s3_coordinator_killed_mid_upload_then_rerun_resumes(
        moto_server: str, proxy: Any, bucket: str, keyserver: Any, media: Any,
        tmp_path: Path) -> None:
    """SIGKILL of the coordinator and its worker while an asset's objects go up (the MPD's PUT
    held back by the proxy): the prefix is left with the worker's claim and segments but no
    completion manifest; the re-run redoes that asset without --force, and its output is
    complete and decrypts."""
    direct = _direct(moto_server)
    src = _upload_sources(direct, bucket, media)
    rows = [_row("dash-cenc", src["h264-aac-mp4"], f"s3://{bucket}/out/dash-cenc")]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    report = tmp_path / "report.json"
    args = [str(jobs), "--workers", "1", "--endpoint-url", proxy.url, "--report", str(report),
            "--speke-url", keyserver.speke_url]
    proxy.state.delay = ("PUT", "manifest.mpd", 3.0)
    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", "encrypt-batch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    prefix = S3Url(bucket, "out/dash-cenc/")
    try:
        deadline = time.monotonic() + 120
        while not any(r.method == "PUT" and r.key.endswith(".m4s") and r.status == 200
                      for r in list(proxy.state.log)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        workers = _children(proc.pid)
        proc.kill()
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
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    time.sleep(3.5)  # a held-back PUT still in the proxy reaches the server meanwhile
    proxy.state.delay = None
    left = {prefix.rel_of(u) for u, _ in direct.list_objects(prefix)}
    assert CLAIM in left and MARKER not in left, left
    assert any(str(r).endswith(".m4s") for r in left)

    proxy.state.log.clear()
    res = batch_cli(*args)
    assert res.returncode == 0, res.stderr
    doc = by_asset(json.loads(report.read_text()))["dash-cenc"]
    assert doc["status"] == "done" and "did not finish" in doc["redone_because"]
    folder = tmp_path / "dl"
    download_tree(direct, prefix, folder)
    _check_published_last(proxy, bucket, "out/dash-cenc/", folder)
    verify_asset("dash-cenc", folder, media, keyserver, tmp_path)


def test_batch_s3_ctrl_c_leaves_no_partial_prefix(moto_server: str, proxy: Any, bucket: str,
                                                  keyserver: Any, media: Any,
                                                  tmp_path: Path) -> None:
    """Ctrl-C while objects go up (every PUT slowed by the proxy): exit 130, and each asset's
    prefix is either its complete package (done) or empty, claim included (cancelled)."""
    direct = _direct(moto_server)
    src = _upload_sources(direct, bucket, media)
    picked = ("dash-cenc", "hls-cbcs", "hls-aes128")
    rows = [_row(a, src[GOOD[a][3]], f"s3://{bucket}/out/{a}") for a in picked]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", rows)
    report = tmp_path / "report.json"
    proxy.state.delay = ("PUT", "/out/", 0.15)
    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", "encrypt-batch", str(jobs),
                             "--workers", "2", "--endpoint-url", proxy.url, "--report",
                             str(report), "--speke-url", keyserver.speke_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(r.method == "PUT" and r.status == 200 and "/out/" in r.key
                      and not r.key.endswith(".json") for r in list(proxy.state.log)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proxy.state.delay = None
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(report.read_text())
    assert doc["interrupted"] is True and doc["totals"]["cancelled"] >= 1
    for a in doc["assets"]:
        prefix = S3Url(bucket, f"out/{a['asset']}/")
        left = {prefix.rel_of(u) for u, _ in direct.list_objects(prefix)}
        if a["status"] == "done":
            assert MARKER in left and CLAIM not in left, left
        else:
            assert a["status"] == "cancelled" and not left, (a, left)
