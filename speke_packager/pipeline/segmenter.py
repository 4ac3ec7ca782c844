"""Segment a single media file into a clear package with ffmpeg (stream copy, no re-encode).

TS output (for AES-128 / SAMPLE-AES): ffmpeg's HLS muxer, one rendition per stream.
CMAF output (for cenc / cbcs): ffmpeg's DASH muxer, which writes the MPD and HLS playlists over
the same fMP4 segments. ffmpeg's command line never carries a key: segmenting happens before
encryption.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._tools import FFMPEG_SEGMENT, FFPROBE_SEGMENT, TOOLS_EXTRA, find_tool
from ..errors import ToolError, UnsupportedMediaError, UsageError

MEDIA_SUFFIXES = frozenset({".mp4", ".m4v", ".m4a", ".mov", ".ts", ".mts", ".m2ts", ".mkv"})


def sniff_kind(name: str, head: Callable[[], bytes], shown: str) -> str:
    """'hls', 'dash' or 'media' from the suffix of the file name ``name``, else from the first
    512 bytes ``head()`` returns; :class:`UsageError` naming ``shown`` when neither tells."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in (".m3u8", ".m3u"):
        return "hls"
    if suffix == ".mpd":
        return "dash"
    if suffix in MEDIA_SUFFIXES:
        return "media"
    first = head()
    if first.lstrip(b"\xef\xbb\xbf").startswith(b"#EXTM3U"):
        return "hls"
    if b"<MPD" in first:
        return "dash"
    raise UsageError(f"{shown}: not an HLS playlist, DASH MPD or media file "
                     f"({', '.join(sorted(MEDIA_SUFFIXES))})")


@dataclass(frozen=True, slots=True)
class ClearPackage:
    directory: Path
    master: Path | None  # HLS multivariant playlist
    mpd: Path | None


def check_tools() -> None:
    """:class:`ToolError` now, before any key is fetched, unless ffmpeg and ffprobe can segment."""
    find_tool("ffmpeg", FFMPEG_SEGMENT)
    find_tool("ffprobe", FFPROBE_SEGMENT)


# ISO BMFF sample entry names for stream copy out of MPEG-TS, whose stream types ffmpeg keeps as
# codec tags the MP4 muxer refuses ("Tag [27][0][0][0] incompatible with output codec id")
_MP4_TAGS = {"h264": "avc1", "hevc": "hvc1", "aac": "mp4a", "ac3": "ac-3", "eac3": "ec-3"}


def _probe(path: Path) -> tuple[list[dict[str, str]], str]:
    """Every stream's (codec_type, codec_name) and the container's format name, from ffprobe."""
    ffprobe = find_tool("ffprobe", FFPROBE_SEGMENT)
    assert ffprobe is not None
    res = _spawn([ffprobe, "-v", "error", "-show_entries",
                  "stream=codec_type,codec_name:format=format_name", "-of", "json",
                  str(path)], None)
    if res.returncode != 0:
        msg = res.stderr.decode(errors="replace").strip().splitlines()
        raise UnsupportedMediaError(f"cannot read {path}: {msg[-1] if msg else 'ffprobe failed'}")
    try:
        info = json.loads(res.stdout or b"{}")
        streams = [s for s in info.get("streams", []) if isinstance(s, dict)]
        fmt = str((info.get("format") or {}).get("format_name", ""))
    except (ValueError, AttributeError):
        raise ToolError("ffprobe printed invalid JSON") from None
    if not any(s.get("codec_type") in ("video", "audio") for s in streams):
        raise UnsupportedMediaError(f"{path} has no audio or video stream")
    return streams, fmt


def _mp4_tags(streams: list[dict[str, str]], fmt: str) -> list[str]:
    """``-tag`` options that give streams copied out of MPEG-TS their ISO BMFF names (the
    mapped order: video streams, then audio streams); nothing for other containers, whose tags
    (avc1 or avc3, hvc1 or hev1) are kept as they are."""
    if "mpegts" not in fmt.split(","):
        return []
    out: list[str] = []
    for kind, letter in (("video", "v"), ("audio", "a")):
        of_kind = [s for s in streams if s.get("codec_type") == kind]
        for i, s in enumerate(of_kind):
            tag = _MP4_TAGS.get(str(s.get("codec_name", "")))
            if tag:
                out += [f"-tag:{letter}:{i}", tag]
    return out


def _spawn(cmd: list[str], cwd: Path | None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)
    except OSError as exc:
        raise ToolError(f"cannot run {cmd[0]}: {exc.strerror or exc} ({TOOLS_EXTRA})") from None


def _run(cmd: list[str], cwd: Path) -> None:
    res = _spawn(cmd, cwd)
    if res.returncode != 0:
        lines = res.stderr.decode(errors="replace").strip().splitlines()
        raise ToolError(f"ffmpeg could not segment the input: {lines[-1] if lines else 'failed'}")


def segment_media(src: Path, workdir: Path, *, ts: bool, seconds: float,
                  hls: bool = True) -> ClearPackage:
    """Segment ``src`` into ``workdir``: TS HLS when ``ts``, else CMAF with an MPD, plus HLS
    playlists over the same segments unless ``hls`` is False (a DASH-only job: ffmpeg's DASH
    muxer rewrites its HLS playlists after every segment, ~10 % of its time)."""
    ffmpeg = find_tool("ffmpeg", FFMPEG_SEGMENT)
    assert ffmpeg is not None
    streams, fmt = _probe(src)
    video = sum(1 for s in streams if s.get("codec_type") == "video")
    audio = sum(1 for s in streams if s.get("codec_type") == "audio")
    src_abs = str(src.resolve())
    base = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", src_abs]
    maps: list[str] = []
    for i in range(video):
        maps += ["-map", f"0:v:{i}"]
    for i in range(audio):
        maps += ["-map", f"0:a:{i}"]
    if ts:
        names = []
        for i in range(video):
            names.append(f"v:{i},name:video{i}" + (",agroup:audio" if audio else ""))
        for i in range(audio):
            names.append(f"a:{i},name:audio{i},agroup:audio" + (",default:yes" if i == 0 else ""))
        cmd = [*base, *maps, "-c", "copy", "-f", "hls", "-hls_time", f"{seconds:g}",
               "-hls_playlist_type", "vod", "-hls_segment_type", "mpegts",
               "-hls_flags", "independent_segments",
               "-master_pl_name", "master.m3u8", "-var_stream_map", " ".join(names),
               "-hls_segment_filename", "%v/segment_%05d.ts", "%v/index.m3u8"]
        _run(cmd, workdir)
        return ClearPackage(workdir, workdir / "master.m3u8", None)
    for i in range(video + audio):  # the DASH muxer does not create folders
        (workdir / str(i)).mkdir(parents=True, exist_ok=True)
    playlists = ["-hls_playlist", "1", "-hls_master_name", "master.m3u8"] if hls else []
    cmd = [*base, *maps, "-c", "copy", *_mp4_tags(streams, fmt), "-f", "dash",
           "-seg_duration", f"{seconds:g}",
           "-use_template", "1", "-use_timeline", "1", *playlists,
           "-init_seg_name", "$RepresentationID$/init.mp4",
           "-media_seg_name", "$RepresentationID$/segment_$Number%05d$.m4s",
           "manifest.mpd"]
    _run(cmd, workdir)
    return ClearPackage(workdir, workdir / "master.m3u8" if hls else None,
                        workdir / "manifest.mpd")
