"""Headless Chromium + Shaka Player play DASH cenc media encrypted (by Shaka Packager) with a
SPEKE answer's ClearKey key and pssh, licensed by ``/clearkey/license`` from another origin.
Negative control: a licence server answering with the wrong key (fault ``wrong-kid``)."""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from fixtures.media import packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.keyserver import KeyServer

from . import _req
from ._check import check_answer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHAKA_JS = ROOT / "node_modules" / "shaka-player" / "dist" / "shaka-player.compiled.js"

PAGE = b"""<!doctype html><html><head><script src="shaka.js"></script></head>
<body><video id="v" muted playsinline width="320"></video></body></html>"""

PLAY_JS = """
async ([mpd, licence]) => {
  shaka.polyfill.installAll();
  const video = document.getElementById('v');
  const player = new shaka.Player();
  await player.attach(video);
  player.configure({drm: {servers: {'org.w3.clearkey': licence}}});
  const errors = [];
  player.addEventListener('error', (e) => errors.push(String(e.detail && e.detail.code)));
  try { await player.load(mpd); } catch (e) { return {ok: false, error: String(e.code)}; }
  video.muted = true;
  try { await video.play(); } catch (e) { errors.push(String(e)); }
  const t0 = performance.now();
  while (performance.now() - t0 < 15000) {
    if (video.currentTime > 1.5 && video.getVideoPlaybackQuality().totalVideoFrames > 10) {
      return {ok: true, time: video.currentTime,
              frames: video.getVideoPlaybackQuality().totalVideoFrames, errors};
    }
    if (video.error) { return {ok: false, error: 'media ' + video.error.code, errors}; }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {ok: false, error: 'stalled at ' + video.currentTime, errors};
}
"""


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    if not SHAKA_JS.exists():
        pytest.skip("shaka-player not installed")
    shutil.copy(SHAKA_JS, tmp_path / "shaka.js")
    (tmp_path / "index.html").write_bytes(PAGE)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _package(src: Path, out: Path, key: bytes, pssh: bytes) -> None:
    packager = find_tool("packager", PACKAGER)
    assert packager
    out.mkdir()
    subprocess.run(
        [packager, f"in={src},stream=video,init_segment={out}/init.mp4,"
                   f"segment_template={out}/$Number$.m4s",
         "--enable_raw_key_encryption", "--protection_scheme", "cenc",
         packager_key_flags(f"--keys=label=:key_id={_req.KID_V.hex}:key={key.hex()}"),
         "--pssh", pssh.hex(), "--clear_lead", "0", "--generate_static_live_mpd",
         "--mpd_output", f"{out}/out.mpd"],
        check=True, capture_output=True, timeout=300)


def test_shaka_player_plays_with_keyserver_licence(
        site: tuple[Path, str], media: Callable[[str], Path], playwright_instance: Any) -> None:
    folder, origin = site
    body = _req.v2_request(scheme="cenc", systems=(_req.CLEARKEY,), kids=((_req.KID_V, "VIDEO"),))
    results = {}
    with KeyServer(allow_fault_header=True, seed="playback") as ks, \
            KeyServer(allow_fault_header=True, seed="playback", faults=["wrong-kid"]) as bad_ks, \
            contextlib.nullcontext(playwright_instance) as p:
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          timeout=30)
        checked = check_answer(body, r.content, license_url=ks.clearkey_license_url)
        key = checked.keys[_req.KID_V]
        pssh = checked.signals[(_req.KID_V, uuid.UUID(_req.CLEARKEY), "PSSH")]
        _package(media("h264-fmp4"), folder / "dash", key, pssh)
        bad_ks.note_issued("chan-7", [_req.KID_V])
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            for name, licence in (("good", ks.clearkey_license_url),
                                  ("wrong", bad_ks.clearkey_license_url)):
                page = browser.new_page()
                page.goto(origin + "/index.html")
                results[name] = page.evaluate(PLAY_JS, [origin + "/dash/out.mpd", licence])
                page.close()
        finally:
            browser.close()
    assert results["good"]["ok"], results["good"]
    assert not results["wrong"]["ok"], results["wrong"]
