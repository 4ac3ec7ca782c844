"""``python -m benchmarks --batch``: encrypt-batch throughput, assets per minute and MB/s, for
1, 2 and N workers (local worker processes; with ``--batch-dask`` also a Dask LocalCluster of the
same size on 127.0.0.1).

Every asset of a run is the benchmark asset's clear CMAF package (cbcs) or HLS-TS package
(aes-128), each row writing its own output folder; keys come from the local SPEKE key server
(one request per asset, by the coordinator, as in production). A run is the real command,
``speke-packager encrypt-batch``, in a subprocess; the figures are its report's (its wall clock,
from reading the jobs file to the last asset, key requests included; process start-up and, for
Dask, starting the cluster are not). MB/s counts input bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .assets import AssetSpec, ensure_asset

ROOT = Path(__file__).resolve().parent.parent


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encrypt-batch throughput (--batch)")
    g.add_argument("--batch", action="store_true",
                   help="measure encrypt-batch only (assets/min and MB/s per worker count)")
    g.add_argument("--batch-assets", type=int, default=None,
                   help="assets per run (default: 4 per worker of the largest run, at least 8)")
    g.add_argument("--batch-workers", type=int, nargs="+", default=None,
                   help="worker counts (default: 1, 2 and the cores)")
    g.add_argument("--batch-scheme", choices=["cbcs", "aes-128"], default="cbcs",
                   help="cbcs from the clear CMAF package (HLS out) or aes-128 from the HLS-TS")
    g.add_argument("--batch-dask", action="store_true",
                   help="also run each worker count on a Dask LocalCluster (plain TCP on "
                        "127.0.0.1, --insecure-cluster)")


def _run(jobs: Path, out: Path, report: Path, speke_url: str, executor: list[str]
         ) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "speke_packager", "encrypt-batch", str(jobs), "--quiet",
           "--report", str(report), "--speke-url", speke_url, *executor]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env,
                          timeout=24 * 3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"encrypt-batch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    doc = json.loads(report.read_text())
    t = doc["totals"]
    return {"seconds": doc["seconds"], "wall_seconds": round(wall, 3), "done": t["done"],
            "bytes_in": t["bytes_in"], "bytes_out": t["bytes_out"],
            "assets_per_minute": t["assets_per_minute"], "mb_per_s": t["mb_per_s"],
            "key_seconds_median": sorted(a["seconds"]["keys"] for a in doc["assets"])[
                len(doc["assets"]) // 2]}


def run_batch_bench(args: argparse.Namespace) -> int:
    from speke_packager.keyserver import KeyServer

    from .main import machine

    cores = os.cpu_count() or 1
    counts = args.batch_workers or sorted({1, 2, cores})
    n_assets = args.batch_assets or max(8, 4 * max(counts))
    spec = AssetSpec.smoke() if args.smoke else AssetSpec(minutes=(args.minutes or [1.0])[0])
    log = not args.quiet
    asset = ensure_asset(spec, args.cache, log=log)
    src = asset.root / ("cmaf/master.m3u8" if args.batch_scheme == "cbcs" else "ts/index.m3u8")
    scratch = args.cache / f"batch-scratch-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    drm = "widevine,playready,fairplay" if args.batch_scheme == "cbcs" else "aes-128"
    runs: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    try:
        jobs = scratch / "jobs.jsonl"
        jobs.write_text("".join(json.dumps({
            "id": f"a{i}", "input": str(src), "output": str(scratch / "out" / f"a{i}"),
            "scheme": args.batch_scheme, "format": "hls", "drm": drm,
            "content_id": f"bench-{i}"}) + "\n" for i in range(n_assets)))
        with KeyServer(host="127.0.0.1", port=0, seed="bench") as ks:
            plans: list[tuple[str, int]] = [("local", w) for w in counts]
            if args.batch_dask:
                plans += [("dask", w) for w in counts]
            for kind, w in plans:
                if log:
                    print(f"[bench] encrypt-batch {kind} x{w}: {n_assets} assets", flush=True)
                report = scratch / f"report-{kind}-{w}.json"
                if kind == "local":
                    res = _run(jobs, scratch / "out", report, ks.speke_url, ["--workers", str(w)])
                else:
                    from distributed import LocalCluster

                    with LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=":0") as cluster:
                        res = _run(jobs, scratch / "out", report, ks.speke_url,
                                   ["--executor", cluster.scheduler_address,
                                    "--insecure-cluster"])
                res.update(executor=kind, workers=w,
                           mb_per_s_per_worker=round(res["mb_per_s"] / w, 3))
                runs.append(res)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    doc = {"machine": machine(), "asset": asset.describe(), "scheme": args.batch_scheme,
           "input": str(src.relative_to(asset.root)), "assets_per_run": n_assets,
           "asset_bytes": runs[0]["bytes_in"] // max(1, runs[0]["done"]) if runs else 0,
           "load_average": {"start": [round(x, 2) for x in load_start],
                            "end": [round(x, 2) for x in os.getloadavg()]},
           "runs": runs}
    output = args.output or (args.cache / ("batch-results-smoke.json" if args.smoke
                                           else "batch-results.json"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"encrypt-batch, {args.batch_scheme}, {n_assets} assets of "
          f"{doc['asset_bytes'] / 1e6:.1f} MB ({spec.minutes:g} min {spec.height}p)")
    print("| executor | workers | assets/min | MB/s | MB/s per worker | key request p50 (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['executor']} | {r['workers']} | {r['assets_per_minute']:.1f} | "
              f"{r['mb_per_s']:.1f} | {r['mb_per_s_per_worker']:.1f} | "
              f"{r['key_seconds_median']:.3f} |")
    print(f"load average (1/5/15 min) at start {doc['load_average']['start']}, at end "
          f"{doc['load_average']['end']} on {cores} cores")
    print(f"results: {output}")
    return 0
