"""The README's encrypt-vod session is real: extract it and run it (on a free port)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _session() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("A session you can paste")
    start = text.index("```sh", start) + len("```sh")
    return text[start:text.index("```", start)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_readme_encrypt_vod_session_runs(tmp_path: Path) -> None:
    if not Path("/usr/bin/chromium").exists() and not os.environ.get("CI"):
        pytest.skip("no chromium")
    bin_dir = Path(sys.executable).parent
    script = _session().replace(". .venv/bin/activate", f". {bin_dir}/activate")
    script = script.replace("8099", str(_free_port()))
    # wait for the backgrounded key server's ready line before the first request
    script = script.replace("--key 33333333333333333333333333333333:44444444444444444444444444444444 &",
                            "--key 33333333333333333333333333333333:44444444444444444444444444444444 "
                            "> ks.log 2>&1 &\nfor i in $(seq 50); do grep -q listening ks.log && break; "
                            "sleep 0.2; done")
    full = f"set -euo pipefail\ntrap 'kill %1 2>/dev/null || true' EXIT\n{script}\n"
    proc = subprocess.run(["bash", "-c", full], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.stdout.count("renditions OK") == 2
    assert proc.stdout.count('"ok": true') == 3
    for d in ("out-both", "out-hls", "out-dash"):
        assert any((tmp_path / d).iterdir())
