"""``python -m benchmarks``: media MB/s and peak RSS of our encryptors next to Shaka Packager and
one-thread OpenSSL AES, measured in the same run on the same machine; key acquisition latency and
key server throughput. Prints a table and writes ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from speke_packager._tools import PACKAGER, find_tool

from . import cases
from .assets import CACHE, AssetSpec, ensure_asset
from .cases import SCHEMES, CaseResult, Context
from .keybench import measure_keys
from .keys import BenchKeys
from .limits import measure_limits, openssl_speed
from .live import SCHEMES as LIVE_SCHEMES
from .live import measure_live, print_live
from .report import print_report, targets

HERE = Path(__file__).resolve().parent
AES_LIMITS = {"aes_128_ctr_1thread": "aes-128-ctr", "aes_128_cbc_1thread": "aes-128-cbc"}
TOOLS = ("shaka-packager", "file-copy", "segment-api-1core", "segment-api-pool",
         "segment-api-memory", "encrypt-vod", "shaka-packager-mp4", "encrypt-vod-mp4")
# the Shaka Packager run each tool is compared with (same input)
REFERENCE = {"encrypt-vod-mp4": "shaka-packager-mp4", "shaka-packager-mp4": "shaka-packager-mp4"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--smoke", action="store_true",
                   help="a 12-second 360p asset, one run, few key requests (checks the harness)")
    p.add_argument("--minutes", type=float, nargs="+", default=None,
                   help="asset length(s) in minutes (default 5); e.g. --minutes 5 50 also "
                        "checks that peak RSS does not grow with the asset")
    p.add_argument("--runs", type=int, default=None, help="runs per case; the median counts (3)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes of the pool and encrypt-vod --jobs (default: all cores)")
    p.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    p.add_argument("--output", type=Path, default=None,
                   help="results JSON (default benchmarks/results.json; with --smoke "
                        "benchmarks/.cache/results-smoke.json)")
    p.add_argument("--cache", type=Path, default=CACHE, help="asset cache directory")
    p.add_argument("--skip-keys", action="store_true", help="no key acquisition measurement")
    p.add_argument("--key-requests", type=int, default=None,
                   help="sequential SPEKE round trips for p50/p95 (200)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8],
                   help="concurrent clients for the key server's requests per second")
    p.add_argument("--profile", action="store_true",
                   help="also profile each scheme: cProfile of one single-core segment API run, "
                        "py-spy of one encrypt-vod run (top functions in the JSON)")
    p.add_argument("--profile-segments", type=int, default=10,
                   help="segments per stream in the profiled run (cProfile is slow; 10)")
    p.add_argument("--rss-baseline", type=Path, default=None,
                   help="an earlier results JSON (another asset length) to compare peak RSS with")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    live = p.add_argument_group("live packaging (--live runs only this)")
    live.add_argument("--live", action="store_true",
                      help="only the live benchmark: LivePackager segments per second and "
                           "added latency per segment (p50/p99), written to --output (default "
                           "benchmarks/.cache/results-live.json)")
    live.add_argument("--live-seconds", type=int, default=None,
                      help="media length in seconds (120; --smoke 20)")
    live.add_argument("--live-height", type=int, default=None,
                      help="picture height, 16:9 (720; --smoke 360)")
    live.add_argument("--live-rotation", type=float, default=10.0,
                      help="key rotation interval in seconds (10)")
    live.add_argument("--live-window", type=int, default=6, help="playlist window (6)")
    live.add_argument("--live-schemes", nargs="+", choices=LIVE_SCHEMES, default=list(LIVE_SCHEMES))
    from .batch import add_batch_arguments

    add_batch_arguments(p)
    return p


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return "missing"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def machine() -> dict[str, object]:
    """CPU, cores, memory and the versions of every tool in the run."""
    cpu, flags = "unknown", set[str]()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name") and cpu == "unknown":
                cpu = ln.split(":", 1)[1].strip()
            elif ln.startswith("flags") and not flags:
                flags = set(ln.split(":", 1)[1].split())
    except OSError:
        pass
    mem = "unknown"
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal"):
                mem = f"{int(ln.split()[1]) // 1024} MiB"
    except OSError:
        pass
    ffmpeg = find_tool("ffmpeg", required=False)
    packager = find_tool("packager", PACKAGER, required=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_flags": sorted(flags & {"aes", "vaes", "avx2", "avx512f", "pclmulqdq", "sha_ni"}),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ffmpeg": _first_line([ffmpeg, "-version"]) if ffmpeg else "missing",
        "packager": _first_line([packager, "--version"]) if packager else "missing",
        "openssl": _first_line(["openssl", "version"]),
        **_git(),
    }


def _git() -> dict[str, object]:
    """The commit measured, and whether the package had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False, cwd=HERE.parent, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "speke_packager"],
                               capture_output=True, text=True, check=False, cwd=HERE.parent,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": head or "unknown", "package_modified_since_commit": bool(dirty)}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("[bench] interrupted; nothing written", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.live:
        return _main_live(args, argv)
    if args.batch:  # encrypt-batch throughput only (benchmarks/batch.py)
        from .batch import run_batch_bench

        return run_batch_bench(args)
    runs = args.runs or (1 if args.smoke else 3)
    minutes = args.minutes or [5.0]
    specs = [AssetSpec.smoke()] if args.smoke else [AssetSpec(minutes=m) for m in minutes]
    output = args.output or (args.cache / "results-smoke.json" if args.smoke
                             else HERE / "results.json")
    log = not args.quiet
    started = time.time()
    load_start = os.getloadavg()

    scratch = args.cache / f"scratch-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        keys = BenchKeys.random()
        key_file = scratch / "keys.json"
        keys.save(key_file)
        if log:
            print("[bench] measuring the limits (openssl speed, memory copy, file I/O)", flush=True)
        limits = measure_limits(scratch, smoke=args.smoke)
        packager = find_tool("packager", PACKAGER, required=False)

        aes_rounds: dict[str, list[float]] = {
            k: [v] for k in AES_LIMITS if isinstance(v := limits.get(k), float)}
        per_asset: list[dict[str, object]] = []
        all_cases = _baseline(args.rss_baseline)
        for spec in specs:
            asset = ensure_asset(spec, args.cache, log=log)
            # one run of every case per round, rounds repeated: load from other processes on
            # the machine then hits every tool alike instead of one tool's three runs
            ctx = Context(asset, keys, key_file, scratch, 1, args.jobs, packager, log)
            merged: dict[tuple[str, str], CaseResult] = {}
            for _ in range(runs):
                # the AES limit again in every round: it moves with the machine's load too
                for name, cipher in AES_LIMITS.items():
                    v = openssl_speed(cipher, 1 if args.smoke else 2)
                    if v is not None:
                        aes_rounds.setdefault(name, []).append(v)
                for scheme in args.schemes:
                    for tool in args.tools:
                        prev = merged.get((scheme, tool))
                        if prev is not None and prev.status != "ok":
                            continue
                        one = _run_case(ctx, tool, scheme, args.jobs)
                        if prev is None or one.status != "ok":
                            merged[(scheme, tool)] = one
                        else:
                            prev.seconds += one.seconds
                            prev.rss_kb += one.rss_kb
                            prev.cores += one.cores
                            prev.extra.update(one.extra)
            results = list(merged.values())
            for name, vals in aes_rounds.items():  # median of the start and every round
                limits[name] = statistics.median(vals)
                limits[f"{name}_samples"] = vals
            all_cases += [(spec.minutes, r.tool, r.scheme, r.peak_rss_mb) for r in results]
            profiles: dict[str, str] = {}
            if args.profile:
                pdir = _mkdir(args.cache / "profiles")
                for scheme in args.schemes:
                    profiles[scheme] = cases.profile_segment_api(
                        ctx, scheme, pdir, limit=args.profile_segments)
                    profiles[f"encrypt-vod {scheme}"] = cases.pyspy_encrypt_vod(ctx, scheme, pdir)
            per_asset.append({"asset": asset.describe(),
                              "cases": [_with_ratios(r, results, limits) for r in results],
                              "profiles": profiles})

        keyres: dict[str, object] = {"status": "skipped"}
        if not args.skip_keys:
            if log:
                print("[bench] key acquisition (SPEKE v2 round trips, key server load)", flush=True)
            n = args.key_requests or (10 if args.smoke else 200)
            total = 20 if args.smoke else 400
            keyres = measure_keys(n, tuple(args.clients), total)

        doc: dict[str, object] = {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1),
            "command": " ".join(["python -m benchmarks", *(argv if argv is not None
                                                            else sys.argv[1:])]),
            "runs": runs,
            "jobs": args.jobs,
            "smoke": args.smoke,
            "machine": machine(),
            "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg()},
            "limits": limits,
            "assets": per_asset,
            "rss_vs_length": _rss_vs_length(all_cases),
            "keys": keyres,
        }
        doc["targets"] = targets(doc)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(output)
        print_report(doc)
        if log:
            print(f"[bench] results written to {output}")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _main_live(args: argparse.Namespace, argv: list[str] | None) -> int:
    output = args.output or args.cache / "results-live.json"
    scratch = args.cache / f"scratch-live-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    started = time.time()
    try:
        live = measure_live(
            args.cache, scratch, seconds=args.live_seconds or (20 if args.smoke else 120),
            height=args.live_height or (360 if args.smoke else 720),
            rotation=args.live_rotation, window=args.live_window,
            schemes=tuple(args.live_schemes), log=not args.quiet)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    doc = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
           "command": " ".join(["python -m benchmarks", *(argv if argv is not None
                                                           else sys.argv[1:])]),
           "machine": machine(), "load_average_1_5_15min": os.getloadavg(), "live": live}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(output)
    print_live(live)
    if not args.quiet:
        print(f"[bench] results written to {output}")
    return 0 if live.get("status") == "ok" else 1


def _run_case(ctx: Context, tool: str, scheme: str, jobs: int) -> CaseResult:
    if tool in ("shaka-packager", "shaka-packager-mp4"):
        return cases.shaka(ctx, scheme, from_mp4=tool == "shaka-packager-mp4")
    if tool == "segment-api-1core":
        return cases.segment_api(ctx, scheme, 1)
    if tool == "file-copy":
        return cases.segment_api(ctx, scheme, 1, copy=True)
    if tool == "segment-api-pool":
        return cases.segment_api(ctx, scheme, jobs)
    if tool == "segment-api-memory":
        return cases.segment_api(ctx, scheme, 1, memory=True)
    return cases.encrypt_vod(ctx, scheme, from_mp4=tool == "encrypt-vod-mp4")


def _with_ratios(r: CaseResult, results: list[CaseResult], limits: dict[str, object]
                 ) -> dict[str, object]:
    doc = r.to_json()
    ref_tool = REFERENCE.get(r.tool, "shaka-packager")
    ref = next((x for x in results if x.tool == ref_tool and x.scheme == r.scheme), None)
    mbps = r.mbps
    doc["x_shaka"] = mbps / ref.mbps if mbps and ref and ref.mbps else None
    lim_name = "aes_128_ctr_1thread" if r.scheme == "cenc" else "aes_128_cbc_1thread"
    lim = limits.get(lim_name)
    doc["aes_limit"] = lim_name
    doc["x_aes_limit"] = mbps / lim if mbps and isinstance(lim, float) and lim else None
    return doc


def _rss_vs_length(all_cases: list[tuple[float, str, str, float | None]]
                   ) -> list[dict[str, object]]:
    """Peak RSS of each (tool, scheme) per asset length, when more than one length ran.

    ``all_cases`` holds (minutes, tool, scheme, peak RSS MB) of this run and of any baseline."""
    lengths = sorted({m for m, *_ in all_cases})
    if len(lengths) < 2:
        return []
    rows = []
    for tool in TOOLS:
        for scheme in SCHEMES:
            per = {m: rss for m, t, sc, rss in sorted(all_cases)
                   if t == tool and sc == scheme and rss}
            if len(per) == len(lengths):
                vals = list(per.values())
                rows.append({"tool": tool, "scheme": scheme,
                             "peak_rss_mb": {f"{m:g}min": v for m, v in per.items()},
                             "growth": max(vals) / min(vals),
                             "median_mb": statistics.median(vals)})
    return rows


def _baseline(path: Path | None) -> list[tuple[float, str, str, float | None]]:
    """(minutes, tool, scheme, peak RSS MB) of every case in an earlier results file."""
    if path is None:
        return []
    doc = json.loads(path.read_text())
    return [(float(a["asset"]["minutes"]), str(c["tool"]), str(c["scheme"]), c["peak_rss_mb"])
            for a in doc["assets"] for c in a["cases"] if c["status"] == "ok"]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
