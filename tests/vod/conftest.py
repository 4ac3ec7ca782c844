"""Helpers for encrypt-vod tests: clear packages made by ffmpeg / Shaka Packager at test time,
independent decryption (FFmpeg 8, openssl) and an independent reader for the signaling."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from uuid import UUID

import pytest

from fixtures.media import RECIPES, Recipe, framemd5
from speke_packager._tools import PACKAGER, find_tool

KID = UUID("00112233-4455-6677-8899-aabbccddeeff")
KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
WRONG = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1ff")
KEYSPEC = f"{KID.hex}:{KEY.hex()}"
IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")

# A source with two video resolutions (SD and HD) and one stereo audio track, for multi-key.
# Registered at run time from this conftest (tests/vod owns it); 4 s, GOP 2 s.
if "h264-2res-aac-mp4" not in RECIPES:
    _x264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50",
             "-keyint_min", "50", "-sc_threshold", "0")
    RECIPES["h264-2res-aac-mp4"] = Recipe("h264-2res-aac-mp4", (
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=4",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
        "-map", "0:v", "-map", "1:v", "-map", "2:a", *_x264, "-c:a", "aac", "-b:a", "96k",
        "-movflags", "+faststart"), ".mp4")


def ffmpeg() -> str:
    path = find_tool("ffmpeg")
    assert path
    return path


def run(cmd: Sequence[str], cwd: Path | None = None) -> None:
    subprocess.run(list(cmd), cwd=cwd, check=True, capture_output=True)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-m", "speke_packager", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


def frames(path: Path, stream: str, *, key: bytes | None = None, hls: bool = False
           ) -> list[str] | None:
    """Decoded-frame MD5s (None if FFmpeg fails, e.g. with a wrong key)."""
    extra: tuple[str, ...] = ()
    if hls:
        extra += ("-allowed_extensions", "ALL", "-protocol_whitelist",
                  "file,crypto,data,http,tcp")
    try:
        return framemd5(path, stream, extra_input_args=extra, keys=key)
    except RuntimeError:
        return None


def concat(out: Path, parts: Sequence[Path]) -> Path:
    with out.open("wb") as fh:
        for p in parts:
            fh.write(p.read_bytes())
    return out


# --- an independent reader for what we check --------------------------------------------------
_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attrs(line: str) -> dict[str, str]:
    body = line.split(":", 1)[1]
    return {k: v.strip('"') for k, v in _ATTR.findall(body)}


def key_lines(text: str, tag: str = "#EXT-X-KEY") -> list[dict[str, str]]:
    return [attrs(ln) for ln in text.splitlines() if ln.startswith(tag + ":")]


def version(text: str) -> int:
    m = re.search(r"^#EXT-X-VERSION:(\d+)$", text, re.M)
    assert m, "no EXT-X-VERSION"
    return int(m.group(1))


def tenc(init: bytes) -> dict[str, object]:
    """kid, iv_size, constant_iv, crypt/skip from the (first) tenc box of an init segment."""
    i = init.find(b"tenc")
    assert i > 0, "no tenc box"
    ver = init[i + 4]
    pattern = init[i + 9]
    iv_size = init[i + 11]
    kid = UUID(bytes=init[i + 12:i + 28])
    const = None
    if iv_size == 0:
        n = init[i + 28]
        const = init[i + 29:i + 29 + n]
    return {"version": ver, "kid": kid, "iv_size": iv_size, "constant_iv": const,
            "crypt": pattern >> 4, "skip": pattern & 15,
            "scheme": init[init.find(b"schm") + 8:init.find(b"schm") + 12]}


def pssh_boxes(init: bytes) -> list[bytes]:
    out = []
    pos = init.find(b"pssh")
    while pos > 0:
        size = int.from_bytes(init[pos - 4:pos], "big")
        out.append(init[pos - 4:pos - 4 + size])
        pos = init.find(b"pssh", pos + 4)
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- clear packages ----------------------------------------------------------------------------
def make_package(kind: str, src: Path, out: Path) -> Path:
    """A clear package of ``kind`` made from ``src`` by ffmpeg / Shaka Packager; returns its
    manifest."""
    out.mkdir(parents=True, exist_ok=True)
    ff = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src)]
    hls = ["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"]
    if kind == "hls-ts":
        run([*ff, "-map", "0:v", "-map", "0:a", "-c", "copy", *hls, "-hls_segment_filename",
             "seg_%03d.ts", "index.m3u8"], cwd=out)
        return out / "index.m3u8"
    if kind == "hls-ts-byterange":
        run([*ff, "-map", "0:v", "-map", "0:a", "-c", "copy", *hls, "-hls_flags", "single_file",
             "index.m3u8"], cwd=out)
        return out / "index.m3u8"
    if kind == "hls-fmp4":
        run([*ff, "-map", "0:v", "-map", "0:a", "-c", "copy", *hls, "-hls_segment_type", "fmp4",
             "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", "seg_%03d.m4s",
             "index.m3u8"], cwd=out)
        return out / "index.m3u8"
    if kind == "hls-fmp4-byterange":
        run([*ff, "-map", "0:v", "-c", "copy", *hls, "-hls_segment_type", "fmp4",
             "-hls_flags", "single_file", "index.m3u8"], cwd=out)
        return out / "index.m3u8"
    if kind == "hls-multivariant-ts":
        run([*ff, "-map", "0:v", "-map", "0:a", "-c", "copy", *hls, "-master_pl_name",
             "master.m3u8", "-var_stream_map", "v:0,agroup:aud a:0,agroup:aud",
             "-hls_segment_filename", "v%v/seg_%03d.ts", "v%v/index.m3u8"], cwd=out)
        return out / "master.m3u8"
    dash = ["-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "dash", "-seg_duration", "2"]
    if kind == "dash-number":
        run([*ff, *dash, "-use_template", "1", "-use_timeline", "0", "manifest.mpd"], cwd=out)
        return out / "manifest.mpd"
    if kind == "dash-time":  # video only: ffmpeg names AAC segments by the pre-roll time
        dash = ["-map", "0:v", *dash[4:]]
        run([*ff, *dash, "-use_template", "1", "-use_timeline", "1", "-media_seg_name",
             "chunk-$RepresentationID$-$Time$.m4s", "manifest.mpd"], cwd=out)
        return out / "manifest.mpd"
    if kind == "dash-list":
        run([*ff, *dash, "-use_template", "0", "-use_timeline", "0", "manifest.mpd"], cwd=out)
        return out / "manifest.mpd"
    if kind == "dash-list-ranges":
        run([*ff, *dash, "-single_file", "1", "manifest.mpd"], cwd=out)
        return out / "manifest.mpd"
    if kind == "dash-base":
        pk = find_tool("packager", PACKAGER)
        assert pk
        run([pk, f"in={src},stream=video,output=video.mp4",
             f"in={src},stream=audio,output=audio.mp4", "--segment_duration", "2",
             "--mpd_output", "manifest.mpd", "--quiet"], cwd=out)
        return out / "manifest.mpd"
    raise AssertionError(kind)


@pytest.fixture(scope="session")
def packages(media: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[[str], Path]:
    """``packages("dash-time")`` -> the manifest of a clear package (cached per run)."""
    root = tmp_path_factory.mktemp("clear-packages")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            src = media("h264-aac-ts" if "ts" in kind.split("-") else "h264-aac-mp4")
            made[kind] = make_package(kind, src, root / kind)
        return made[kind]

    return get


@pytest.fixture()
def key_file(tmp_path: Path) -> Path:
    p = tmp_path / "keys" / "key.bin"
    p.parent.mkdir()
    p.write_bytes(KEY)
    return p


@pytest.fixture()
def wrong_key_file(tmp_path: Path) -> Path:
    p = tmp_path / "keys" / "wrong.bin"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(WRONG)
    return p


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def long_package(packages: Callable[[str], Path], dst: Path, n: int = 600) -> Path:
    """The clear hls-ts package plus a playlist of ``n`` segments (symbolic links to one segment,
    inside the package, so they are allowed): encrypting it takes seconds, long enough to signal
    a run while its segments are being written. Returns the playlist."""
    pkg = copy_tree(packages("hls-ts").parent, dst)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2",
             "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(n):
        name = f"long_{i:04d}.ts"
        (pkg / name).symlink_to("seg_001.ts")
        lines += ["#EXTINF:2.0,", name]
    (pkg / "long.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return pkg / "long.m3u8"


def signal_mid_run(args: Sequence[str], out: Path, sig: int) -> tuple[int, str]:
    """Run the CLI with ``args``; once the temporary output folder beside ``out`` holds an
    encrypted segment, send ``sig``. Returns (exit status, stderr)."""
    import os
    import time

    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never wrote a segment"
            parts = [p for p in out.parent.iterdir() if p.name.endswith(".partial")]
            if parts and any(parts[0].glob("long_*.ts")):
                break
            time.sleep(0.01)
        assert not out.exists() or not (out / "long.m3u8").exists()
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode()
