"""Live test media: clear HLS renditions cut by FFmpeg's HLS muxer at test time (12 s, 2 s
segments, a key frame every 2 s): muxed H.264 + AAC MPEG-TS, and demuxed H.264 / AAC fMP4."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures.media import framemd5
from speke_packager._tools import find_tool
from speke_packager.keyserver import KeyServer

SECONDS = 12
SEGMENT = 2.0
HLS_INPUT = ("-allowed_extensions", "ALL", "-protocol_whitelist", "file,crypto,data,http,tcp")

_SRC = ("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}")
_H264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50",
         "-keyint_min", "50", "-sc_threshold", "0", "-bf", "2")
_AAC = ("-c:a", "aac", "-b:a", "96k")


@dataclass(frozen=True)
class Rendition:
    """A clear HLS rendition: its playlist, init (fMP4) and segments in order."""

    playlist: Path
    segments: tuple[Path, ...]
    init: Path | None = None

    def data(self, i: int) -> bytes:
        return self.segments[i].read_bytes()


def _hls(out: Path, name: str, args: tuple[str, ...], *, fmp4: bool) -> Rendition:
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    ext = "m4s" if fmp4 else "ts"
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *_SRC, *args, "-f", "hls",
           "-hls_time", str(SEGMENT), "-hls_list_size", "0",
           "-hls_segment_filename", str(out / f"{name}%d.{ext}")]
    if fmp4:
        cmd += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", f"{name}_init.mp4"]
    cmd.append(str(out / f"{name}.m3u8"))
    subprocess.run(cmd, check=True, capture_output=True)
    segs = tuple(out / f"{name}{i}.{ext}" for i in range(int(SECONDS / SEGMENT)))
    assert all(s.exists() for s in segs)
    return Rendition(out / f"{name}.m3u8", segs, out / f"{name}_init.mp4" if fmp4 else None)


@pytest.fixture(scope="session")
def live_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendition]:
    out = tmp_path_factory.mktemp("live-media")
    return {
        "ts": _hls(out, "ts", ("-map", "0:v", "-map", "1:a", *_H264, *_AAC), fmp4=False),
        "video": _hls(out, "video", ("-map", "0:v", *_H264), fmp4=True),
        "audio": _hls(out, "audio", ("-map", "1:a", *_AAC), fmp4=True),
    }


@pytest.fixture()
def ks() -> Iterator[KeyServer]:
    """The local key server on an ephemeral port with a fixed seed."""
    with KeyServer(allow_fault_header=True, host="127.0.0.1", port=0, seed="live-tests") as server:
        yield server


@pytest.fixture(scope="session")
def clear_frames() -> Callable[..., list[str]]:
    """Cached framemd5 of clear inputs."""
    cache: dict[tuple[str, str, bool], list[str]] = {}

    def get(path: Path, stream: str = "v:0", *, decode: bool = True) -> list[str]:
        k = (str(path), stream, decode)
        if k not in cache:
            if decode:
                cache[k] = framemd5(path, stream)
            else:
                from .helpers import packet_hashes

                got = packet_hashes(path, stream)
                assert got is not None
                cache[k] = got
        return cache[k]

    return get
