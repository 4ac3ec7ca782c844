"""Real-browser playback of encrypted packages through `serve` (headless Chromium + players)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from speke_packager.verify.serve import Browser, PackageServer

from .packages import (
    KEY,
    KEYS,
    KID,
    WRONG_KEYS,
    encrypt_vod,
    ffmpeg_hls_ts_aes128,
    shaka_dash,
    shaka_hls_fmp4,
    shaka_hls_ts_sample_aes,
    speke_encrypt_vod,
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
        # our own product (encrypt-vod CLI, raw key, root-relative key and licence URLs)
        "ours-dash-cenc": lambda: encrypt_vod(clear_mp4, root / "ours-cenc", "cenc", "dash"),
        "ours-both-cbcs": lambda: encrypt_vod(clear_mp4, root / "ours-cbcs", "cbcs", "both"),
        "ours-hls-aes128": lambda: encrypt_vod(clear_ts, root / "ours-aes", "aes-128", "hls"),
        "ours-hls-sample-aes": lambda: encrypt_vod(clear_ts, root / "ours-sa", "sample-aes",
                                                   "hls"),
        "ours-hls-cbcs-clearkey": lambda: encrypt_vod(clear_mp4, root / "ours-ck", "cbcs", "hls",
                                                      clearkey_hls=True),
    }
    out = {}
    for name, make in made.items():
        p = make()
        out[name] = p if p.is_dir() else p.parent
    return out


CASES = [
    ("shaka", "dash-cenc", None),
    ("shaka", "dash-cbcs", None),
    ("shaka", "hls-fmp4-cbcs", None),
    ("hlsjs", "hls-ts-aes128", None),
    ("hlsjs", "hls-ts-sample-aes", None),
    ("dashjs", "dash-cenc", None),
]
OURS = [
    ("shaka", "ours-dash-cenc", None),
    ("shaka", "ours-both-cbcs", "manifest.mpd"),
    ("shaka", "ours-both-cbcs", "master.m3u8"),
    ("hlsjs", "ours-hls-aes128", None),
    ("hlsjs", "ours-hls-sample-aes", None),
    ("hlsjs", "ours-hls-cbcs-clearkey", "master.m3u8"),  # raw key, --drm clearkey
    ("dashjs", "ours-dash-cenc", None),
]


@pytest.mark.parametrize(("player", "package", "manifest"), CASES + OURS)
def test_plays(browser: Browser, packages: dict[str, Path], player: str, package: str,
               manifest: str | None) -> None:
    with PackageServer(packages[package], keys=KEYS) as srv:
        result = browser.check(srv.player_url(player, manifest), SECONDS)
        seen = srv.requests
    assert result.errors == [], result.to_dict()
    assert result.frames >= 10, result.to_dict()
    assert result.current_time > 1.0, result.to_dict()
    # the key came from our endpoints (ClearKey licence or /keys), for the package's KID
    assert any(str(KID) in r["kids"] for r in seen), seen


@pytest.mark.parametrize(("player", "package", "manifest"), CASES + OURS[:-1])
def test_wrong_key_does_not_play(browser: Browser, packages: dict[str, Path], player: str,
                                 package: str, manifest: str | None) -> None:
    with PackageServer(packages[package], keys=WRONG_KEYS) as srv:
        result = browser.check(srv.player_url(player, manifest), SECONDS)
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


def test_speke_multi_drm_dash_plays_with_package_laurl(browser: Browser, clear_mp4: Path,
                                                       tmp_path: Path, keyserver: object) -> None:
    """A Widevine + PlayReady + ClearKey package from the local SPEKE server (separate SD, HD
    and audio keys) plays in Shaka Player through the licence URL written in the MPD itself;
    the same package with wrong keys from our own licence endpoint does not."""
    import re
    from uuid import UUID

    from speke_packager.cli import main as cli_main

    out = tmp_path / "multi"
    assert cli_main(["encrypt-vod", str(clear_mp4), "--output", str(out), "--scheme", "cenc",
                     "--format", "dash", "--segment-duration", "2", "--quiet", "--jobs", "1",
                     "--speke-url", keyserver.speke_url, "--content-id", "e2e-multi",  # type: ignore[attr-defined]
                     "--drm", "widevine,playready,clearkey", "--video-preset", "PRESET-VIDEO-2",
                     "--audio-preset", "PRESET-AUDIO-1"]) == 0
    mpd = (out / "manifest.mpd").read_text()
    kids = {UUID(k) for k in re.findall(r'default_KID="([0-9a-f-]{36})"', mpd)}
    assert len(kids) >= 2 and keyserver.clearkey_license_url in mpd  # type: ignore[attr-defined]
    with PackageServer(out) as srv:  # no keys: the player must use the MPD's dashif:Laurl
        good = browser.check(srv.player_url("shaka"), SECONDS)
    assert good.ok, good.to_dict()
    with PackageServer(out, keys={k: WRONG_KEYS[KID] for k in kids}) as srv:
        bad = browser.check(srv.player_url("shaka"), SECONDS)
        assert srv.requests  # our (wrong) licence endpoint was asked, not the MPD's
    assert not bad.ok, bad.to_dict()


# Our HLS fMP4 cbcs with the key server's ClearKey signaling (EXT-X-KEY METHOD=SAMPLE-AES,
# KEYFORMAT="org.w3.clearkey", URI = data: KID): alone, and next to Widevine and PlayReady tags
# (hls.js must pick ClearKey, the one CDM headless Chromium has).
SPEKE_HLS = {"clearkey": "clearkey", "multi-drm": "widevine,playready,clearkey"}


@pytest.fixture(scope="session")
def speke_hls(tmp_path_factory: pytest.TempPathFactory,
              clear_mp4: Path) -> dict[str, tuple[Path, dict[UUID, bytes]]]:
    root = tmp_path_factory.mktemp("e2e-speke-hls")
    return {name: (root / name, speke_encrypt_vod(clear_mp4, root / name, "cbcs", "hls", drm))
            for name, drm in SPEKE_HLS.items()}


@pytest.mark.parametrize("package", list(SPEKE_HLS))
def test_hlsjs_plays_our_hls_fmp4_cbcs_clearkey(
        browser: Browser, speke_hls: dict[str, tuple[Path, dict[UUID, bytes]]],
        package: str) -> None:
    """hls.js plays it through EME ClearKey (the player page's generateRequest hook turns the
    playlist KID into "keyids" init data); with wrong keys from the same licence endpoint it
    does not. Both runs must have asked our licence endpoint for every KID of the package."""
    out, keys = speke_hls[package]
    with PackageServer(out, keys=keys) as srv:
        good = browser.check(srv.player_url("hlsjs"), SECONDS)
        seen = srv.requests
    assert good.errors == [], good.to_dict()
    assert good.frames >= 10 and good.current_time > 1.0, good.to_dict()
    asked = {k for r in seen if r["type"] == "license" for k in r["kids"]}
    assert asked == {str(k) for k in keys}, seen
    wrong = {k: bytes(b ^ 0xFF for b in v) for k, v in keys.items()}
    with PackageServer(out, keys=wrong) as srv:
        bad = browser.check(srv.player_url("hlsjs"), SECONDS)
        seen = srv.requests
    assert any(r["type"] == "license" for r in seen), seen  # the wrong keys were handed out
    assert not bad.ok, bad.to_dict()


def test_player_limitations_are_still_there(
        browser: Browser, speke_hls: dict[str, tuple[Path, dict[UUID, bytes]]],
        packages: dict[str, Path]) -> None:
    """Pins two player limitations documented in README (serve): when one goes away after an
    npm upgrade, this fails, and README and the OURS cases should be updated.

    - Shaka Player 4.12 has no HLS parser for KEYFORMAT="org.w3.clearkey"
      (hls_parser.js KEYFORMATS_TO_DRM_PARSERS_): error 4026 HLS_KEYFORMATS_NOT_SUPPORTED.
    - hls.js 1.5 cannot play identity-key SAMPLE-AES fMP4 (raw --key packages): its MP4
      demuxer rejects SAMPLE-AES (mp4demuxer.ts demuxSampleAes) and EME is not used for
      identity keys."""
    out, keys = speke_hls["clearkey"]
    with PackageServer(out, keys=keys) as srv:
        shaka = browser.check(srv.player_url("shaka"), SECONDS)
    assert not shaka.ok and any("4026" in e for e in shaka.errors), shaka.to_dict()
    with PackageServer(packages["ours-both-cbcs"], keys=KEYS) as srv:
        hlsjs = browser.check(srv.player_url("hlsjs", "master.m3u8"), SECONDS)
    assert not hlsjs.ok, hlsjs.to_dict()
    assert any("does not support SAMPLE-AES" in e for e in hlsjs.events + hlsjs.errors), \
        hlsjs.to_dict()
