"""``python -m benchmarks.markdown [results.json]``: the results as Markdown for the README."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _f(v: object, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def _load_line(doc: dict[str, Any]) -> str:
    la = doc.get("load_average_1_5_15min")
    if not la:
        return "Load average: not recorded."
    start = "/".join(f"{x:.1f}" for x in la["start"])
    end = "/".join(f"{x:.1f}" for x in la["end"])
    return (f"Load average (1/5/15 min): {start} at the start, {end} at the end "
            f"(on {doc['machine']['cores']} cores: other jobs shared the machine).")


def render(doc: dict[str, Any]) -> str:
    """Machine line, limits line, one table per asset, key acquisition lines."""
    m, lim = doc["machine"], doc["limits"]
    io = lim["file_io"]
    out = [
        f"Measured {doc['generated_at']} (`{doc['command']}`, median of {doc['runs']} "
        f"interleaved rounds, "
        f"pool/encrypt-vod jobs = {doc['jobs']}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (CPU flags: {', '.join(m['cpu_flags'])}), "
        f"{m['memory']} RAM, Linux {m['kernel']}; Python {m['python']}; "
        f"{m['ffmpeg'].split(' Copyright')[0]}; {m['packager']}; {m['openssl'].split(' (')[0]}; "
        f"speke-packager at commit {m.get('git_commit', 'unknown')}"
        f"{' (with uncommitted changes)' if m.get('package_modified_since_commit') else ''}.",
        "",
        _load_line(doc),
        "",
        f"Limits on one thread, same run (median of the start and of every round): `openssl speed -evp aes-128-ctr` "
        f"{_f(lim['aes_128_ctr_1thread'], '.0f')} MB/s, `aes-128-cbc` "
        f"{_f(lim['aes_128_cbc_1thread'], '.0f')} MB/s (16 KiB blocks); memory copy of 64 MiB "
        f"{_f(lim['memcpy_64MB'], '.0f')} MB/s; file write + fsync {_f(io['write_fsync'], '.0f')}"
        f" MB/s, cold read {_f(io['read_cold'], '.0f')} MB/s, warm read "
        f"{_f(io['read_warm'], '.0f')} MB/s.",
    ]
    for asset in doc["assets"]:
        a = asset["asset"]
        out += ["", f"{a['minutes']:g}-minute asset: {a['video']}, {a['audio']}; CMAF "
                f"{a['cmaf_bytes'] / 1e6:.0f} MB, HLS-TS {a['ts_bytes'] / 1e6:.0f} MB, "
                f"{a['segment_seconds']} s segments.", "",
                "| scheme | tool | MB/s | MB/s min-max | x Shaka | x Shaka per round "
                "| x Shaka CPU | x copy | x AES limit | peak RSS MB | cores | note |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for c in asset["cases"]:
            note = ""
            if c["status"] != "ok":
                note = ("not available yet" if str(c["note"]).startswith("not available yet")
                        else f"{c['status']}: {c['note']}")
            elif c.get("verified"):
                note = f"first segment decrypted independently: {c['verified']}"
            elif c.get("jobs", 1) > 1 and c.get("total_rss_estimate_kb"):
                note = (f"{c['jobs']} processes, all together "
                        f"~{c['total_rss_estimate_kb'] / 1024:.0f} MB")
            lo, hi = c.get("mb_per_s_min"), c.get("mb_per_s_max")
            span = f"{lo:.0f}-{hi:.0f}" if isinstance(lo, float) and isinstance(hi, float) else "-"
            per = " ".join(f"{x:.2f}" for x in c.get("x_shaka_rounds") or []) or "-"
            out.append(f"| {c['scheme']} | {c['tool']} | {_f(c['mb_per_s'], '.0f')} | {span} | "
                       f"{_f(c.get('x_shaka'), '.2f')} | {per} | {_f(c.get('x_shaka_cpu'), '.2f')} | "
                       f"{_f(c.get('x_copy'), '.2f')} | "
                       f"{_f(c.get('x_aes_limit'), '.2f')} | "
                       f"{_f(c['peak_rss_mb'], '.0f')} | {_f(c.get('cores_used'), '.1f')} | "
                       f"{note} |")
    rows = doc.get("rss_vs_length") or []
    if rows:
        heads = list(rows[0]["peak_rss_mb"])
        out += ["", "| tool | scheme | " + " | ".join(f"peak RSS {h}" for h in heads)
                + " | growth |", "|---|---|" + "---:|" * (len(heads) + 1)]
        for r in rows:
            out.append(f"| {r['tool']} | {r['scheme']} | "
                       + " | ".join(_f(v, ".0f") for v in r["peak_rss_mb"].values())
                       + f" | {_f(r['growth'], '.2f')} |")
    k = doc["keys"]
    out.append("")
    if k.get("status") == "ok":
        rt = k["round_trip"]
        out.append(f"Key acquisition ({k['contract']}, local key server in its own process): "
                   f"{rt['requests']} sequential round trips through `SpekeClient`, "
                   f"{rt['keys_per_response']} keys each: p50 {rt['p50_ms']:.1f} ms, "
                   f"p95 {rt['p95_ms']:.1f} ms.")
        for ld in k["load"]:
            out.append(f"Key server load: {ld['clients']} concurrent clients: "
                       f"{ld['rps']:.0f} requests/s (p50 {ld['p50_ms']:.1f} ms, "
                       f"p95 {ld['p95_ms']:.1f} ms, {ld['errors']} errors).")
    else:
        out.append(f"Key acquisition: {k.get('status')} ({k.get('note', '')}).")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else HERE / "results.json"
    sys.stdout.write(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
