"""The benchmark asset: an H.264 + AAC source made with ffmpeg, and its clear HLS-TS and CMAF.

Everything is generated once and cached under ``benchmarks/.cache/<label>/``; a directory is
complete when its ``asset.json`` exists (it is written last, after an atomic rename).

Layout of one asset directory::

    source.mp4                 progressive MP4 (input of ``encrypt-vod``)
    cmaf/video/init.mp4        CMAF: one track per file, 6 s segments (ffmpeg's HLS muxer)
    cmaf/video/seg_00000.m4s ...
    cmaf/video.mp4             init + segments concatenated (the input of Shaka Packager)
    cmaf/audio/...  cmaf/audio.mp4
    cmaf/master.m3u8           multivariant playlist of the two tracks (input of encrypt-vod)
    ts/seg_00000.ts ...        muxed HLS-TS, 6 s segments
    ts/index.m3u8              media playlist (input of encrypt-vod)
    ts/full.ts                 the segments concatenated (the input of Shaka Packager)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from speke_packager._tools import find_tool

CACHE = Path(__file__).resolve().parent / ".cache"
RECIPE_VERSION = 1
SEGMENT_SECONDS = 6


@dataclass(frozen=True)
class AssetSpec:
    """What to generate: duration, picture size, frame rate and video bitrate."""

    minutes: float
    width: int = 1920
    height: int = 1080
    fps: int = 25
    video_kbps: int = 5500
    audio_kbps: int = 128
    preset: str = "superfast"

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def label(self) -> str:
        mins = f"{self.minutes:g}".replace(".", "_")
        return (f"{self.height}p{self.fps}-{mins}min-{self.video_kbps}k-{self.preset}"
                f"-v{RECIPE_VERSION}")

    @classmethod
    def smoke(cls) -> AssetSpec:
        """A tiny asset (12 s, 640x360, 1 Mbit/s) for ``--smoke``."""
        return cls(minutes=0.2, width=640, height=360, video_kbps=1000, audio_kbps=96,
                   preset="ultrafast")


@dataclass(frozen=True)
class CmafTrack:
    """One CMAF track: its init segment, its media segments and their concatenation."""

    kind: str  # "video" | "audio"
    init: Path
    segments: tuple[Path, ...]
    full: Path

    @property
    def media_bytes(self) -> int:
        return self.init.stat().st_size + sum(p.stat().st_size for p in self.segments)


@dataclass(frozen=True)
class AssetSet:
    """Paths of a generated, complete asset directory."""

    spec: AssetSpec
    root: Path
    source: Path
    cmaf: tuple[CmafTrack, ...]
    ts_segments: tuple[Path, ...]
    ts_full: Path

    @property
    def cmaf_bytes(self) -> int:
        return sum(t.media_bytes for t in self.cmaf)

    @property
    def ts_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.ts_segments)

    def describe(self) -> dict[str, object]:
        return {
            "label": self.spec.label,
            "minutes": self.spec.minutes,
            "video": f"H.264 {self.spec.width}x{self.spec.height}p{self.spec.fps} "
                     f"~{self.spec.video_kbps} kbit/s x264 {self.spec.preset}, GOP 2 s",
            "audio": f"AAC-LC stereo 48 kHz {self.spec.audio_kbps} kbit/s",
            "segment_seconds": SEGMENT_SECONDS,
            "source_bytes": self.source.stat().st_size,
            "cmaf_bytes": self.cmaf_bytes,
            "cmaf_segments": {t.kind: len(t.segments) for t in self.cmaf},
            "ts_bytes": self.ts_bytes,
            "ts_segments": len(self.ts_segments),
            "path": str(self.root),
        }


def _ffmpeg(*args: str) -> None:
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                   check=True)


def _concat(parts: list[Path], out: Path) -> None:
    with out.open("wb") as dst:
        for p in parts:
            with p.open("rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)


def _encode_source(spec: AssetSpec, out: Path) -> None:
    secs = f"{spec.seconds:g}"
    gop = str(2 * spec.fps)
    # noise keeps the picture from compressing to nothing, so the bitrate is the requested one
    video = (f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}:duration={secs},"
             "noise=alls=12:allf=t")
    audio = f"sine=frequency=440:sample_rate=48000:duration={secs}"
    kbps = spec.video_kbps
    _ffmpeg("-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio,
            "-c:v", "libx264", "-preset", spec.preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-b:v", f"{kbps}k", "-maxrate", f"{kbps * 11 // 10}k", "-bufsize", f"{kbps * 2}k",
            "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", f"{spec.audio_kbps}k", "-ac", "2",
            "-movflags", "+faststart", str(out))


def _loop_source(base: Path, times: int, out: Path) -> None:
    """A long source made by repeating a shorter one (stream copy, no re-encode)."""
    _ffmpeg("-stream_loop", str(times - 1), "-i", str(base), "-map", "0", "-c", "copy",
            "-movflags", "+faststart", str(out))


def _segment(source: Path, root: Path) -> None:
    hls = ("-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod")
    for kind, sel in (("video", "0:v:0"), ("audio", "0:a:0")):
        d = root / "cmaf" / kind
        d.mkdir(parents=True)
        _ffmpeg("-i", str(source), "-map", sel, "-c", "copy", *hls,
                "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                "-hls_segment_filename", str(d / "seg_%05d.m4s"), str(d / "index.m3u8"))
        _concat([d / "init.mp4", *sorted(d.glob("seg_*.m4s"))], root / "cmaf" / f"{kind}.mp4")
    d = root / "ts"
    d.mkdir()
    _ffmpeg("-i", str(source), "-map", "0:v:0", "-map", "0:a:0", "-c", "copy", *hls,
            "-hls_segment_type", "mpegts", "-hls_segment_filename", str(d / "seg_%05d.ts"),
            str(d / "index.m3u8"))
    _concat(sorted(d.glob("seg_*.ts")), d / "full.ts")


def _multivariant(spec: AssetSpec, root: Path) -> None:
    """``cmaf/master.m3u8``: the two CMAF tracks as one HLS presentation (encrypt-vod input)."""
    path = root / "cmaf" / "master.m3u8"
    if path.exists():
        return
    kbps = spec.video_kbps + spec.audio_kbps
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,'
        'CHANNELS="2",URI="audio/index.m3u8"\n'
        f'#EXT-X-STREAM-INF:BANDWIDTH={kbps * 1100},CODECS="avc1.640028,mp4a.40.2",'
        f'RESOLUTION={spec.width}x{spec.height},FRAME-RATE={spec.fps},AUDIO="aud"\n'
        "video/index.m3u8\n")


def _load(spec: AssetSpec, root: Path) -> AssetSet:
    _multivariant(spec, root)
    tracks = []
    for kind in ("video", "audio"):
        d = root / "cmaf" / kind
        tracks.append(CmafTrack(kind, d / "init.mp4", tuple(sorted(d.glob("seg_*.m4s"))),
                                root / "cmaf" / f"{kind}.mp4"))
    return AssetSet(spec, root, root / "source.mp4", tuple(tracks),
                    tuple(sorted((root / "ts").glob("seg_*.ts"))), root / "ts" / "full.ts")


def ensure_asset(spec: AssetSpec, cache: Path = CACHE, *, log: bool = True) -> AssetSet:
    """Return the cached asset set for ``spec``, generating it first if needed."""
    root = cache / spec.label
    if (root / "asset.json").exists():
        return _load(spec, root)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{spec.label}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        base_minutes = 5.0
        if spec.minutes > base_minutes and spec.minutes % base_minutes == 0:
            # long assets repeat the 5-minute one: same bytes per second, minutes not hours
            base = ensure_asset(AssetSpec(**{**spec.__dict__, "minutes": base_minutes}), cache,
                                log=log)
            if log:
                print(f"[bench] looping the {base_minutes:g}-minute source to {spec.minutes:g} min")
            _loop_source(base.source, int(spec.minutes // base_minutes), tmp / "source.mp4")
        else:
            if log:
                print(f"[bench] encoding {spec.label} with ffmpeg (once; cached in {cache})")
            _encode_source(spec, tmp / "source.mp4")
        if log:
            print("[bench] segmenting into clear CMAF and HLS-TS")
        _segment(tmp / "source.mp4", tmp)
        asset = _load(spec, tmp)
        (tmp / "asset.json").write_text(json.dumps({**asset.describe(), "path": str(root)}, indent=2))
        shutil.rmtree(root, ignore_errors=True)
        tmp.replace(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _load(spec, root)
