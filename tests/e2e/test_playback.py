"""Real-browser playback of encrypted packages through `serve` (headless Chromium + players)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager.verify.serve import Browser, PackageServer

from .packages import (
    KEY,
    KEYS,
    KID,
    WRONG_KEYS,
    ffmpeg_hls_ts_aes128,
    shaka_dash,
    shaka_hls_fmp4,
    shaka_hls_ts_sample_aes,
)

pytestmark = pytest.mark.e2e
SECONDS = 4.0


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory, clear_mp4: Path,
             clear_ts: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e-packages")
    made: dict[str, Callable[[], Path]] = {
        "dash-cenc": lambda: shaka_dash(clear_mp4, root / "dash-cenc", "cenc"),
        "dash-cbcs": lambda: shaka_dash(clear_mp4, root / "dash-cbcs", "cbcs"),
        "hls-fmp4-cbcs": lambda: shaka_hls_fmp4(clear_mp4, root / "hls-fmp4-cbcs"),
        "hls-ts-sample-aes": lambda: shaka_hls_ts_sample_aes(clear_ts, root / "hls-ts-sa"),
        "hls-ts-aes128": lambda: ffmpeg_hls_ts_aes128(clear_ts, root / "hls-ts-aes",
                                                      root / "aes-tmp"),
    }
    return {name: make().parent for name, make in made.items()}


CASES = [
    ("shaka", "dash-cenc"),
    ("shaka", "dash-cbcs"),
    ("shaka", "hls-fmp4-cbcs"),
    ("hlsjs", "hls-ts-aes128"),
    ("hlsjs", "hls-ts-sample-aes"),
    ("dashjs", "dash-cenc"),
]


@pytest.mark.parametrize(("player", "package"), CASES)
def test_plays(browser: Browser, packages: dict[str, Path], player: str, package: str) -> None:
    with PackageServer(packages[package], keys=KEYS) as srv:
        result = browser.check(srv.player_url(player), SECONDS)
        seen = srv.requests
    assert result.errors == [], result.to_dict()
    assert result.frames >= 10, result.to_dict()
    assert result.current_time > 1.0, result.to_dict()
    # the key came from our endpoints (ClearKey licence or /keys), for the package's KID
    assert any(str(KID) in r["kids"] for r in seen), seen


@pytest.mark.parametrize(("player", "package"), CASES)
def test_wrong_key_does_not_play(browser: Browser, packages: dict[str, Path], player: str,
                                 package: str) -> None:
    with PackageServer(packages[package], keys=WRONG_KEYS) as srv:
        result = browser.check(srv.player_url(player), SECONDS)
        seen = srv.requests
    assert any(str(KID) in r["kids"] for r in seen), seen  # the wrong key was handed out
    assert not result.ok, result.to_dict()


def test_serve_check_cli(packages: dict[str, Path], browser: Browser) -> None:
    """`speke-packager serve --check` prints JSON and its exit status follows playback."""
    base = [sys.executable, "-m", "speke_packager", "serve", str(packages["dash-cenc"]),
            "--port", "0", "--player", "shaka", "--check", "--seconds", str(SECONDS)]
    good = subprocess.run([*base, "--key", f"{KID.hex}:{KEY.hex()}"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)
    assert report["ok"] and report["frames_decoded"] >= 10 and not report["errors"]
    assert KEY.hex() not in good.stdout + good.stderr
    bad = subprocess.run([*base, "--key", f"{KID.hex}:{'ab' * 16}"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert bad.returncode != 0
    assert json.loads(bad.stdout)["ok"] is False
    assert "playback failed" in bad.stderr
