"""The rich table and the issue's targets, both computed from the results document."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

SPEED_TARGET = 1.5  # x Shaka Packager's MB/s, every scheme (median of the rounds)
ROUND_TARGET = 1.2  # encrypt-vod: no single round below this x Shaka Packager
ROUND_TOOLS = ("encrypt-vod", "encrypt-vod-mp4")
AES128_TARGET = 0.5  # x one-thread openssl aes-128-cbc
RSS_TARGET_MB = 150.0
FLAT_TOLERANCE = 1.15  # peak RSS may differ this much between asset lengths and count as flat
OURS = ("segment-api-1core", "segment-api-pool", "segment-api-memory", "encrypt-vod",
        "encrypt-vod-mp4")


def _f(v: object, fmt: str, suffix: str = "") -> str:
    return format(v, fmt) + suffix if isinstance(v, (int, float)) else "-"


def _range(c: dict[str, Any]) -> str:
    """``min-max`` MB/s of a case's rounds."""
    lo, hi = c.get("mb_per_s_min"), c.get("mb_per_s_max")
    return f"{lo:.0f}-{hi:.0f}" if isinstance(lo, float) and isinstance(hi, float) else "-"


def _short(status: str, note: str) -> str:
    """The table's note for a case that did not run (the JSON keeps the whole message)."""
    if note.startswith("not available yet"):
        return "not available yet"
    return f"{status}: {note[:60]}"


def targets(doc: dict[str, Any]) -> list[dict[str, object]]:
    """Each target of issues 9 and 20 with the measured value and ``pass``/``fail``/``n/a``:
    the median ratio to Shaka Packager, for encrypt-vod also the worst round's, peak RSS and its
    growth with the asset's length."""
    out: list[dict[str, object]] = []
    for asset in doc["assets"]:
        label = f"{asset['asset']['minutes']:g} min"
        for c in asset["cases"]:
            if c["tool"] not in OURS:
                continue
            ok = c["status"] == "ok"
            x = c.get("x_shaka")
            out.append({"target": f">= {SPEED_TARGET}x Shaka Packager", "asset": label,
                        "tool": c["tool"], "scheme": c["scheme"], "value": x,
                        "result": "n/a" if not ok or x is None else
                        ("pass" if x >= SPEED_TARGET else "fail")})
            if c["tool"] in ROUND_TOOLS:
                lo = c.get("x_shaka_min")
                out.append({"target": f"no round below {ROUND_TARGET}x Shaka Packager",
                            "asset": label, "tool": c["tool"], "scheme": c["scheme"],
                            "value": lo, "result": "n/a" if not ok or lo is None else
                            ("pass" if lo >= ROUND_TARGET else "fail")})
            if c["scheme"] == "aes-128" and c["tool"] in ("segment-api-1core",
                                                          "segment-api-memory"):
                y = c.get("x_aes_limit")
                out.append({"target": f">= {AES128_TARGET:.0%} of openssl aes-128-cbc (1 thread)",
                            "asset": label, "tool": c["tool"], "scheme": c["scheme"], "value": y,
                            "result": "n/a" if not ok or y is None else
                            ("pass" if y >= AES128_TARGET else "fail")})
            rss = c.get("peak_rss_mb")
            out.append({"target": f"peak RSS <= {RSS_TARGET_MB:g} MB", "asset": label,
                        "tool": c["tool"], "scheme": c["scheme"], "value": rss,
                        "result": "n/a" if not ok or rss is None else
                        ("pass" if rss <= RSS_TARGET_MB else "fail")})
    for row in doc.get("rss_vs_length") or []:
        if row["tool"] in OURS:
            g = row["growth"]
            out.append({"target": f"peak RSS flat with asset length (<= {FLAT_TOLERANCE}x)",
                        "asset": "/".join(row["peak_rss_mb"]), "tool": row["tool"],
                        "scheme": row["scheme"], "value": g,
                        "result": "pass" if g <= FLAT_TOLERANCE else "fail"})
    return out


def print_report(doc: dict[str, Any], console: Console | None = None) -> None:
    """Print the machine, the limits, one table per asset, key acquisition and the targets."""
    con = console or Console()
    if console is None and not con.is_terminal:
        con = Console(width=150)  # logs and pipes: do not fold the table into 80 columns
    m = doc["machine"]
    con.print(f"[bold]Machine[/]: {m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_flags'])}), "
              f"{m['memory']}; Python {m['python']}; {m['ffmpeg']}; {m['packager']}; "
              f"{m['openssl']}")
    la = doc.get("load_average_1_5_15min") or {}
    if la:
        start = "/".join(f"{x:.1f}" for x in la["start"])
        end = "/".join(f"{x:.1f}" for x in la["end"])
        con.print(f"[bold]Load average[/] (1/5/15 min): start {start}, end {end} "
                  f"(other jobs on the machine make every figure noisier)")
    lim = doc["limits"]
    io = lim["file_io"]
    con.print(f"[bold]Limits[/] (1 thread): openssl aes-128-ctr "
              f"{_f(lim['aes_128_ctr_1thread'], '.0f')} MB/s, aes-128-cbc "
              f"{_f(lim['aes_128_cbc_1thread'], '.0f')} MB/s; memory copy "
              f"{_f(lim['memcpy_64MB'], '.0f')} MB/s (bytes() {_f(lim['bytes_copy_64MB'], '.0f')}"
              f"); file write+fsync {_f(io['write_fsync'], '.0f')}, read cold "
              f"{_f(io['read_cold'], '.0f')}, read warm {_f(io['read_warm'], '.0f')} MB/s")
    for asset in doc["assets"]:
        a = asset["asset"]
        t = Table(title=f"{a['minutes']:g}-minute asset: {a['video']}; {a['audio']}; "
                        f"median (min-max) of {doc['runs']} interleaved round(s)")
        for col in ("scheme", "tool", "media MB", "MB/s", "MB/s min-max", "x Shaka",
                    "x Shaka min", "x Shaka CPU", "x copy", "x AES limit", "peak RSS MB", "cores",
                    "note"):
            t.add_column(col, justify="left" if col in ("scheme", "tool", "note") else "right")
        for c in asset["cases"]:
            note = c["note"] if c["status"] != "ok" else (
                f"jobs={c['jobs']}" if c.get("jobs", 1) != 1 else "")
            if c.get("verified"):
                note = f"decrypted: {c['verified']}"
            if c["status"] == "ok" and c.get("total_rss_estimate_kb") and c.get("jobs", 1) > 1:
                note += f", all processes ~{c['total_rss_estimate_kb'] / 1024:.0f} MB"
            t.add_row(c["scheme"], c["tool"], _f(c["media_bytes"] / 1e6, ".1f"),
                      _f(c["mb_per_s"], ".0f"), _range(c), _f(c.get("x_shaka"), ".2f"),
                      _f(c.get("x_shaka_min"), ".2f"), _f(c.get("x_shaka_cpu"), ".2f"),
                      _f(c.get("x_copy"), ".2f"),
                      _f(c.get("x_aes_limit"), ".2f"), _f(c["peak_rss_mb"], ".0f"),
                      _f(c.get("cores_used"), ".1f"),
                      note if c["status"] == "ok" else _short(c["status"], note))
        con.print(t)
    rows = doc.get("rss_vs_length") or []
    if rows:
        t = Table(title="peak RSS (MB) by asset length")
        t.add_column("tool")
        t.add_column("scheme")
        for k in rows[0]["peak_rss_mb"]:
            t.add_column(k, justify="right")
        t.add_column("growth", justify="right")
        for r in rows:
            t.add_row(r["tool"], r["scheme"], *(_f(v, ".0f") for v in r["peak_rss_mb"].values()),
                      _f(r["growth"], ".2f"))
        con.print(t)
    k = doc["keys"]
    if k.get("status") == "ok":
        rt = k["round_trip"]
        con.print(f"[bold]Key acquisition[/] ({k['contract']}): {rt['requests']} round trips, "
                  f"{rt['keys_per_response']} keys each: p50 {rt['p50_ms']:.1f} ms, "
                  f"p95 {rt['p95_ms']:.1f} ms")
        for ld in k["load"]:
            con.print(f"  key server: {ld['clients']} concurrent clients: {ld['rps']:.0f} req/s "
                      f"(p50 {ld['p50_ms']:.1f} ms, p95 {ld['p95_ms']:.1f} ms, "
                      f"{ld['errors']} errors)")
    else:
        con.print(f"[bold]Key acquisition[/]: {k.get('status')}: {k.get('note', '')}")
    t = Table(title="targets (issues 9 and 20): measured value per scheme")
    schemes = list(dict.fromkeys(str(r["scheme"]) for r in doc["targets"]))
    for col in ("target", "asset", "tool", *schemes):
        t.add_column(col, justify="left" if col in ("target", "asset", "tool") else "right")
    grid: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in doc["targets"]:
        cell = grid.setdefault((str(r["target"]), str(r["asset"]), str(r["tool"])), {})
        res = str(r["result"])
        style = {"pass": "green", "fail": "red"}.get(res, "dim")
        cell[str(r["scheme"])] = f"[{style}]{_f(r['value'], '.2f')} {res}[/]"
    for (target, asset, tool), cells in grid.items():
        t.add_row(target, asset, tool, *(cells.get(s, "") for s in schemes))
    con.print(t)
