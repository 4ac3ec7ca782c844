"""``python -m benchmarks --batch`` runs end to end on the tiny asset (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_batch_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "batch.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--batch", "--smoke", "--quiet", "--batch-assets",
         "2", "--batch-workers", "1", "2", "--output", str(out), "--cache",
         str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [(r["executor"], r["workers"]) for r in doc["runs"]] == [("local", 1), ("local", 2)]
    for r in doc["runs"]:
        assert r["done"] == 2 and r["mb_per_s"] > 0 and r["assets_per_minute"] > 0
    assert doc["asset_bytes"] > 0 and "| local | 2 |" in proc.stdout
    assert not list((tmp_path / "cache").glob("batch-scratch-*"))
