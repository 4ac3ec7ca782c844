"""Headless Chromium (MSE + EME ClearKey) plays our cenc and cbcs H.264 segments.

Chromium's ClearKey CDM is another independent decryptor; the page appends the encrypted init
and segments, licenses the KID from the init's W3C common pssh and plays to the end. A wrong key
must not play cleanly (negative control)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speke_packager.constants import W3C_COMMON, Scheme
from speke_packager.drm.pssh import build_pssh
from speke_packager.media.mp4 import Mp4Encryptor
from speke_packager.model import ContentKey
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, KEY2, KID, KID2, WRONG

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"

PAGE = """<!doctype html><html><body><video muted></video><script>
function b64u(hex) {
  const bytes = new Uint8Array(hex.match(/../g).map(h => parseInt(h, 16)));
  return btoa(String.fromCharCode(...bytes)).replace(/\\+/g, '-').replace(/\\//g, '_')
    .replace(/=+$/, '');
}
window.play = async function (files, pairs, mime) {
  const video = document.querySelector('video');
  const errors = [];
  const access = await navigator.requestMediaKeySystemAccess('org.w3.clearkey', [{
    initDataTypes: ['cenc'], videoCapabilities: [{contentType: mime}]}]);
  const keys = await access.createMediaKeys();
  await video.setMediaKeys(keys);
  let licensed = 0;
  video.addEventListener('encrypted', async (e) => {
    const s = keys.createSession();
    s.addEventListener('message', async () => {
      const lic = {keys: pairs.map(([kid, k]) => ({kty: 'oct', kid: b64u(kid), k: b64u(k)})),
                   type: 'temporary'};
      await s.update(new TextEncoder().encode(JSON.stringify(lic)));
      licensed += 1;
    });
    await s.generateRequest(e.initDataType, e.initData);
  });
  video.addEventListener('error', () => errors.push(String(video.error && video.error.message)));
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  await new Promise(r => ms.addEventListener('sourceopen', r, {once: true}));
  const sb = ms.addSourceBuffer(mime);
  for (const f of files) {
    const data = await (await fetch(f)).arrayBuffer();
    try {
      sb.appendBuffer(data);
    } catch (e) {
      errors.push(String(e) + ' ' + (video.error && video.error.message));
      return {ended: false, errors, licensed, time: 0, frames: 0};
    }
    await new Promise(r => sb.addEventListener('updateend', r, {once: true}));
  }
  ms.endOfStream();
  video.playbackRate = 4;
  try { await video.play(); } catch (e) { errors.push(String(e)); }
  const start = performance.now();
  while (!video.ended && !video.error && performance.now() - start < 20000) {
    await new Promise(r => setTimeout(r, 100));
  }
  const q = video.getVideoPlaybackQuality();
  return {ended: video.ended, errors, licensed, time: video.currentTime,
          frames: q.totalVideoFrames, dropped: q.droppedVideoFrames,
          duration: ms.duration};
};
</script></body></html>"""


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("chromium")
    (root / "index.html").write_text(PAGE)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("mode", ["plain", "clear-lead", "rotation"])
@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
def test_chromium_clearkey_plays(scheme: Scheme, mode: str, asset: Callable[[str], Asset],
                                 page_server: tuple[str, Path], chromium: Any) -> None:
    """plain; clear lead (first segment clear, clear sample entry 2); rotation (segment 1
    under KID2 via seig, its pssh in the moof: Chromium reads traf seig groups)."""
    base, root = page_server
    a = asset("h264-fmp4")
    enc = Mp4Encryptor(a.init, scheme, {1: ContentKey(KID, KEY)}, iv_seed=b"chromium",
                       pssh=[build_pssh(W3C_COMMON, kids=[KID])],
                       clear_lead=mode == "clear-lead")
    tag = f"{scheme.value}-{mode}"
    names = [f"{tag}-init.mp4"]
    (root / names[0]).write_bytes(enc.encrypted_init())
    for i, s in enumerate(a.segments):
        names.append(f"{tag}-{i}.m4s")
        if mode == "rotation" and i == 1:
            out = enc.encrypt_segment(s, segment_index=i, keys={1: ContentKey(KID2, KEY2)},
                                      pssh=[build_pssh(W3C_COMMON, kids=[KID2])])
        else:
            out = enc.encrypt_segment(s, segment_index=i, clear=mode == "clear-lead" and i == 0)
        (root / names[-1]).write_bytes(out)
    mime = 'video/mp4; codecs="avc1.64000c"'
    results = {}
    runs = [("right", KEY, KEY2), ("wrong", WRONG, KEY2)]
    if mode == "rotation":
        runs.append(("wrong2", KEY, WRONG))
    for label, key, key2 in runs:
        pairs = [[KID.hex, key.hex()], [KID2.hex, key2.hex()]]
        page = chromium.new_page()
        try:
            page.goto(f"{base}/index.html")
            results[label] = page.evaluate("([f, pairs, mime]) => play(f, pairs, mime)",
                                           [names, pairs, mime])
        finally:
            page.close()
    good, bad = results["right"], results["wrong"]
    assert good["licensed"] >= 1 and not good["errors"], good
    assert good["ended"] and good["time"] >= 5.9, good
    assert good["frames"] >= 100, good
    # negative control: with the wrong key Chromium's decoder fails or the video never ends
    assert bad["errors"] or not bad["ended"], bad
    if mode == "rotation":  # segment 1 really needs KID2's key
        bad2 = results["wrong2"]
        assert bad2["errors"] or not bad2["ended"], bad2
        assert bad2["time"] < 4.5, bad2
