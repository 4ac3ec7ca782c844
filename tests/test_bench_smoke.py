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
    assert "targets (issue 9)" in proc.stdout
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
