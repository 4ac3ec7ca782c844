"""Shared helpers of the live tests: contracts, running a session over a clear rendition, the
key tags in effect per segment of a written playlist."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from fixtures.media import framemd5
from speke_packager._tools import find_tool
from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.keys import EncryptionContract
from speke_packager.manifests.hls import HlsKey
from speke_packager.pipeline.live import LivePlaylist, LiveSegment, LiveSession

from .conftest import HLS_INPUT, SEGMENT, Rendition


def contract(content_id: str, scheme: Scheme, drm: Sequence[DrmSystem], *,
             shared: bool = False, version: SpekeVersion = SpekeVersion.V2_0
             ) -> EncryptionContract:
    ts = scheme in (Scheme.SAMPLE_AES, Scheme.AES_128)
    return EncryptionContract(
        content_id=content_id, drm=tuple(drm),
        packaging=(Packaging.HLS_TS,) if ts else (Packaging.HLS_FMP4,), scheme=scheme,
        version=version, video_preset="SHARED" if shared else "PRESET-VIDEO-1",
        audio_preset="SHARED" if shared else "PRESET-AUDIO-1")


def run(session: LiveSession, name: str, r: Rendition, out: Path, *, window: int = 100,
        count: int | None = None, first: int = 0) -> tuple[list[LiveSegment], LivePlaylist]:
    """Hand the rendition's segments to ``session`` one at a time, write them and a playlist."""
    out.mkdir(parents=True, exist_ok=True)
    init_uri = None
    if r.init is not None:
        (out / f"{name}_init.mp4").write_bytes(session.encrypt_init(name))
        init_uri = f"{name}_init.mp4"
    pl = LivePlaylist(out / f"{name}.m3u8", window=window, init_uri=init_uri)
    segs = []
    n = len(r.segments) if count is None else count
    for i in range(first, first + n):
        seg = session.encrypt_segment(name, r.data(i), start_time=i * SEGMENT, sequence=i,
                                      duration=SEGMENT)
        ext = r.segments[i].suffix
        (out / f"{name}{i}{ext}").write_bytes(seg.data)
        pl.add(f"{name}{i}{ext}", SEGMENT, seg)
        segs.append(seg)
    return segs, pl


def keys_per_segment(text: str) -> dict[str, dict[str, HlsKey]]:
    """segment URI -> {KEYFORMAT: the EXT-X-KEY in effect}, read line by line."""
    current: dict[str, HlsKey] = {}
    out: dict[str, dict[str, HlsKey]] = {}
    for line in text.splitlines():
        if line.startswith("#EXT-X-KEY:"):
            k = HlsKey.parse(line)
            if k.method == "NONE":
                current = {}
            else:
                current[k.effective_keyformat] = k
        elif line and not line.startswith("#"):
            out[line] = dict(current)
    return out


def packet_hashes(path: Path, stream: str, extra: Sequence[str] = ()) -> list[str] | None:
    """MD5 of every packet of one stream (``-c copy``; the packet hash column, not a side-data
    hash), None when FFmpeg fails."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    res = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", *extra, "-i", str(path),
                          "-map", f"0:{stream}", "-c", "copy", "-f", "framemd5", "-"],
                         capture_output=True, check=False, timeout=300)
    if res.returncode != 0:
        return None
    return [ln.split(",")[5].strip() for ln in res.stdout.decode().splitlines()
            if ln and not ln.startswith("#")]


def hls_frames(playlist: Path, stream: str, *, decode: bool = True) -> list[str] | None:
    """FFmpeg 8's HLS reader on our playlist: decoded-frame (or packet) MD5s, None when it
    fails."""
    if not decode:
        return packet_hashes(playlist, stream, HLS_INPUT)
    try:
        return framemd5(playlist, stream, extra_input_args=HLS_INPUT)
    except RuntimeError:
        return None


def openssl_decrypt(data: bytes, key: bytes, iv: bytes) -> bytes | None:
    """AES-128-CBC + PKCS#7 by openssl (None on 'bad decrypt')."""
    res = subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", key.hex(), "-iv",
                          iv.hex()], input=data, capture_output=True, check=False)
    return res.stdout if res.returncode == 0 else None
