"""Real-browser playback of ``encrypt-vod movie.mp4 --single-file`` packages: Shaka Player and
dash.js read the DASH SegmentBase (init range, then the sidx to find the fragments), Shaka
Player the HLS byte ranges; a wrong key does not play."""

from __future__ import annotations

from pathlib import Path

import pytest

from speke_packager.verify.serve import Browser, PackageServer

from .packages import KEYS, KID, WRONG_KEYS, encrypt_vod

pytestmark = pytest.mark.e2e
SECONDS = 4.0


@pytest.fixture(scope="module")
def single_file_packages(tmp_path_factory: pytest.TempPathFactory, clear_mp4: Path
                         ) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e-single-file")
    return {scheme: encrypt_vod(clear_mp4, root / scheme, scheme, "both",
                                extra=("--single-file",))
            for scheme in ("cenc", "cbcs")}


@pytest.mark.parametrize(("player", "scheme", "manifest"), [
    ("shaka", "cenc", "manifest.mpd"),
    ("dashjs", "cenc", "manifest.mpd"),
    ("shaka", "cbcs", "manifest.mpd"),
    ("shaka", "cbcs", "master.m3u8"),
])
def test_single_file_plays(browser: Browser, single_file_packages: dict[str, Path],
                           player: str, scheme: str, manifest: str) -> None:
    with PackageServer(single_file_packages[scheme], keys=KEYS) as srv:
        result = browser.check(srv.player_url(player, manifest), SECONDS)
        seen = srv.requests
    assert result.errors == [], result.to_dict()
    assert result.frames >= 10, result.to_dict()
    assert result.current_time > 1.0, result.to_dict()
    assert any(str(KID) in r["kids"] for r in seen), seen


def test_single_file_wrong_key_does_not_play(browser: Browser,
                                             single_file_packages: dict[str, Path]) -> None:
    with PackageServer(single_file_packages["cenc"], keys=WRONG_KEYS) as srv:
        result = browser.check(srv.player_url("shaka", "manifest.mpd"), SECONDS)
        seen = srv.requests
    assert any(str(KID) in r["kids"] for r in seen), seen
    assert not result.ok, result.to_dict()
