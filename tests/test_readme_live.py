"""The README's encrypt-live commands are real: extract them and run them, on free ports, with
the encoder stopped after 8 s (the README's runs until Ctrl-C) and `serve --check` playing the
result in headless Chromium instead of waiting for a person."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### `encrypt-live`")
    start = text.index("```sh", start) + len("```sh")
    return text[start:text.index("```", start)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined, comments dropped."""
    out: list[str] = []
    cur = ""
    for line in block.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        cur += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            out.append(cur.strip())
            cur = ""
    return out


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_readme_encrypt_live_session_runs(tmp_path: Path) -> None:
    if not Path("/usr/bin/chromium").exists() and not os.environ.get("CI"):
        pytest.skip("no chromium")
    cmds = _commands(_block())
    ks, ffmpeg_set, mkdir, ffmpeg, encrypt, *serves = cmds
    assert ks.startswith("speke-packager keyserver") and ffmpeg.startswith("$FFMPEG")
    assert encrypt.startswith("speke-packager encrypt-live") and len(serves) == 2
    assert all(s.startswith("speke-packager serve") for s in serves)
    ks_port, web_port = _free_port(), _free_port()
    script = "\n".join([
        "set -euo pipefail",
        f". {Path(sys.executable).parent}/activate",
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
        ks.replace("8099", str(ks_port)) + " > ks.log 2>&1 &",
        "for i in $(seq 50); do grep -q listening ks.log && break; sleep 0.2; done",
        ffmpeg_set, mkdir,
        ffmpeg.replace(" -f hls ", " -t 8 -f hls ") + " &",
        encrypt.replace("8099", str(ks_port)),
        *(s.replace("8099", str(ks_port)).replace("8080", str(web_port))
          + " --check --seconds 4" for s in serves),
    ])
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "the encoder ended its stream" in proc.stderr
    assert proc.stdout.count('"ok": true') == 2  # hls.js and Shaka Player
    text = (tmp_path / "out-live" / "video.m3u8").read_text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert text.count('KEYFORMAT="org.w3.clearkey"') >= 1
    assert 'type="static"' in (tmp_path / "out-live" / "manifest.mpd").read_text()
