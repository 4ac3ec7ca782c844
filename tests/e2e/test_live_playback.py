"""A real browser follows live key changes: FFmpeg encodes a test source in real time into clear
live HLS (fMP4, 1 s segments), ``speke-packager encrypt-live`` encrypts it as it comes with keys
rotating every 2 s over SPEKE (the local key server; cenc, then cbcs), and while it is live Shaka Player plays
the dynamic DASH MPD and hls.js the HLS playlists in headless Chromium, ClearKey licences
answered with the key server's keys. Each player must pass at least two key-period boundaries
with no error and ask licences for at least three KIDs; with wrong keys (the same KIDs, other
keys) it must not play."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from speke_packager._tools import find_tool
from speke_packager.keyserver import KeyServer, derive_key
from speke_packager.verify.serve import Browser, PackageServer, PlaybackResult

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SEED = "live-browser"
CONTENT_ID = "live-browser-1"
ROTATION = 2.0
SECONDS = 9.0  # of playback: the live edge moves 9 s, past four key-period boundaries
LIVE_SECONDS = 120  # the encoder's run: long enough for the four playbacks


@dataclass
class LiveStream:
    out: Path
    ks: KeyServer
    packager: subprocess.Popen[str]


def _published(out: Path) -> int:
    p = out / "video.m3u8"
    if not p.exists() or not (out / "manifest.mpd").exists():
        return 0
    return sum(1 for ln in p.read_text().splitlines() if ln and not ln.startswith("#"))


@pytest.fixture(scope="module", params=["cenc", "cbcs"])
def live(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStream]:
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    root = tmp_path_factory.mktemp("live-browser")
    src, out = root / "clear", root / "enc"
    src.mkdir()
    with KeyServer(host="127.0.0.1", port=0, seed=SEED) as ks:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        packager = subprocess.Popen(
            [sys.executable, "-m", "speke_packager", "encrypt-live", str(src), str(out),
             "--poll-interval", "0.1", "--speke-url", ks.speke_url, "--content-id", CONTENT_ID,
             "--drm", "clearkey,widevine", "--scheme", request.param, "--rotation", str(ROTATION),
             "--window", "30", "--clearkey-license-url", "/clearkey/license"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        enc = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
             "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={LIVE_SECONDS}",
             "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={LIVE_SECONDS}",
             "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
             "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
             "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1", "-hls_list_size", "40",
             "-hls_flags", "temp_file+delete_segments", "-hls_segment_type", "fmp4",
             "-var_stream_map", "v:0 a:0", "-hls_segment_filename", str(src / "s_%v_%d.m4s"),
             str(src / "live_%v.m3u8")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while _published(out) < 4:
                assert packager.poll() is None, packager.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "encrypt-live published nothing"
                time.sleep(0.2)
            yield LiveStream(out, ks, packager)
            assert packager.poll() is None  # still following when the playbacks are done
            packager.send_signal(signal.SIGTERM)
            _, err = packager.communicate(timeout=30)
            assert packager.returncode == 0, err[-2000:]
        finally:
            for p in (packager, enc):
                if p.poll() is None:
                    p.kill()
                    p.wait()


def _right(kid: UUID) -> bytes:
    return derive_key(SEED, CONTENT_ID, kid)


def _wrong(kid: UUID) -> bytes:
    return bytes(b ^ 0x5A for b in derive_key(SEED, CONTENT_ID, kid))


def _play(browser: Browser, live: LiveStream, player: str, manifest: str,
          lookup: object) -> tuple[PlaybackResult, set[str], float | None]:
    with PackageServer(live.out, key_lookup=lookup) as srv:  # type: ignore[arg-type]
        result = browser.check(srv.player_url(player, manifest), SECONDS, min_frames=25)
        kids = {k for r in srv.requests if r["type"] == "license" for k in r["kids"]}
    start = None
    for e in result.events:  # common.js: "playing @<currentTime>"
        m = re.match(r"playing @([0-9.]+)", e)
        if m:
            start = float(m.group(1))
            break
    return result, kids, start


@pytest.mark.parametrize(("player", "manifest"), [("shaka", "manifest.mpd"),
                                                  ("hlsjs", "master.m3u8")])
def test_player_follows_live_key_changes(browser: Browser, live: LiveStream, player: str,
                                         manifest: str) -> None:
    result, kids, start = _play(browser, live, player, manifest, _right)
    info = (result.to_dict(), sorted(kids))
    assert result.errors == [], info
    assert start is not None, info
    # key periods are [2k, 2k + 2) of media time; the player's position went past two of
    # their boundaries while it played
    boundaries = [b for b in range(0, 10_000, int(ROTATION)) if start < b <= result.current_time]
    assert len(boundaries) >= 2, info
    assert result.frames >= 25 * (result.current_time - start) * 0.5, info
    assert len(kids) >= 3, info  # a licence for each key period it played


@pytest.mark.parametrize(("player", "manifest"), [("shaka", "manifest.mpd"),
                                                  ("hlsjs", "master.m3u8")])
def test_wrong_keys_do_not_play(browser: Browser, live: LiveStream, player: str,
                                manifest: str) -> None:
    result, kids, _start = _play(browser, live, player, manifest, _wrong)
    assert kids, result.to_dict()  # licences were asked for and answered (wrongly)
    assert not result.ok or result.frames < 10, result.to_dict()
