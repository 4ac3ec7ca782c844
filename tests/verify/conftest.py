"""Packages for the verify tests: independent tools' output and our own encrypt-vod output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.packages import (
    encrypt_vod,
    ffmpeg_hls_ts_aes128,
    shaka_dash,
    shaka_hls_fmp4,
    shaka_hls_ts_sample_aes,
)


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory,
             media: Callable[[str], Path]) -> dict[str, tuple[Path, Path]]:
    """name -> (package folder, clear reference)."""
    mp4, ts = media("h264-aac-mp4"), media("h264-aac-ts")
    root = tmp_path_factory.mktemp("verify-packages")
    shaka_dash(mp4, root / "shaka-dash-cenc", "cenc")
    shaka_dash(mp4, root / "shaka-dash-cbcs", "cbcs")
    shaka_hls_fmp4(mp4, root / "shaka-hls-fmp4-cbcs")
    shaka_hls_ts_sample_aes(ts, root / "shaka-hls-ts-sample-aes")
    ffmpeg_hls_ts_aes128(ts, root / "ffmpeg-hls-ts-aes128", root / "aes-tmp")
    encrypt_vod(mp4, root / "ours-dash-cenc", "cenc", "dash")
    encrypt_vod(mp4, root / "ours-both-cbcs", "cbcs", "both")
    encrypt_vod(mp4, root / "ours-hls-aes128", "aes-128", "hls")
    encrypt_vod(mp4, root / "ours-hls-sample-aes", "sample-aes", "hls")
    refs = {"shaka-hls-ts-sample-aes": ts, "ffmpeg-hls-ts-aes128": ts}
    return {p.name: (p, refs.get(p.name, mp4)) for p in root.iterdir() if p.name != "aes-tmp"}
