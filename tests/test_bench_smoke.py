"""The benchmark harness runs end to end on a tiny asset and writes its JSON (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.cases import SCHEMES
from benchmarks.main import TOOLS

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_smoke_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--quiet", "--output", str(out),
         "--cache", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["smoke"] is True
    assert {"machine", "limits", "assets", "keys", "targets"} <= doc.keys()
    assert doc["machine"]["cores"] >= 1
    cases = doc["assets"][0]["cases"]
    assert {(c["tool"], c["scheme"]) for c in cases} == {(t, s) for t in TOOLS for s in SCHEMES}
    for c in cases:
        assert c["status"] in ("ok", "unavailable", "error"), c
        if c["status"] == "ok":
            assert c["mb_per_s"] > 0 and c["peak_rss_mb"] > 0
            assert c["mb_per_s_min"] <= c["mb_per_s"] <= c["mb_per_s_max"]
            assert c["x_copy"] is not None and c["x_copy"] > 0, c  # the copy-limit row ran
            if c["x_shaka"] is not None:  # one ratio per round (--smoke: one round)
                assert len(c["x_shaka_rounds"]) == doc["runs"] == 1
                assert c["x_shaka_min"] == min(c["x_shaka_rounds"])
    copies = [c for c in cases if c["tool"] == "copy-limit"]
    assert copies and all(c["status"] == "ok" for c in copies), copies
    assert all(c["x_copy"] == 1.0 for c in copies)
    assert doc["machine"]["bytecode_compiled"] is True
    vod = next(c for c in cases if c["tool"] == "encrypt-vod" and c["scheme"] == "cbcs")
    if vod["status"] == "ok" and vod["x_shaka"] is not None:
        assert vod["x_shaka_cpu"] > 0 and len(vod["cpu_seconds"]) == 1
    assert "targets (issues 9 and 20)" in proc.stdout
    assert not list((tmp_path / "cache").glob("scratch-*")), "scratch directory left behind"
    md = subprocess.run([sys.executable, "-m", "benchmarks.markdown", str(out)], cwd=ROOT,
                        capture_output=True, text=True, timeout=60, check=False)
    assert md.returncode == 0, md.stderr[-3000:]
    assert "| scheme | tool | MB/s |" in md.stdout


def test_live_benchmark_smoke_writes_results(tmp_path: Path) -> None:
    """``--live --smoke``: every live scheme runs LivePackager and reports segments per second
    and latency percentiles (no timing asserts)."""
    out = tmp_path / "live.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--live", "--smoke", "--quiet", "--output",
         str(out), "--cache", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    live = json.loads(out.read_text())["live"]
    assert live["status"] == "ok"
    assert [r["scheme"] for r in live["schemes"]] == ["cbcs", "cenc", "aes-128", "sample-aes"]
    for r in live["schemes"]:
        assert r["status"] == "ok", r
        assert r["segments_per_s"] > 0 and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] > 0
        assert r["speke_requests"] >= 2  # key periods of 10 s over 20 s, plus the prefetch
    assert "Live packaging" in proc.stdout
    assert not list((tmp_path / "cache").glob("scratch-*")), "scratch directory left behind"
