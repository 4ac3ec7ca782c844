"""Encrypted test packages made by independent tools (Shaka Packager, FFmpeg's HLS muxer).

They prove the `verify`/`serve` harness on output we did not write; the e2e tests also run our
own encrypt-vod output once it is available. Keys here are throw-away test values.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from uuid import UUID

from fixtures.media import packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.cli import main as cli_main

KID = UUID("00112233445566778899aabbccddeeff")
KEY = bytes.fromhex("0123456789abcdef0123456789abcdef")
WRONG_KEY = bytes.fromhex("fedcba9876543210fedcba9876543210")
KEYS = {KID: KEY}
WRONG_KEYS = {KID: WRONG_KEY}
KEY_URI = f"/keys/{KID.hex}"  # root-relative: served by `serve` on the package's origin


def _packager(args: list[str], cwd: Path) -> None:
    exe = find_tool("packager", PACKAGER)
    assert exe
    cwd.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr[-2000:]


def _raw_key() -> list[str]:
    return ["--enable_raw_key_encryption",
            packager_key_flags(f"--keys=label=:key_id={KID.hex}:key={KEY.hex()}"),
            "--clear_lead", "0", "--segment_duration", "2"]


def shaka_dash(src: Path, out: Path, scheme: str) -> Path:
    """DASH (SegmentTimeline, static) with a W3C common pssh and a DASH-IF ClearKey descriptor."""
    _packager([
        f"in={src},stream=video,init_segment=v/init.mp4,segment_template=v/$Number$.m4s",
        f"in={src},stream=audio,init_segment=a/init.mp4,segment_template=a/$Number$.m4s",
        *_raw_key(), "--protection_scheme", scheme, "--mpd_output", "manifest.mpd",
        "--generate_static_live_mpd",
    ], out)
    mpd = out / "manifest.mpd"
    add_clearkey_descriptor(mpd)
    return mpd


def add_clearkey_descriptor(mpd: Path) -> None:
    """Shaka Packager's raw-key MPD lists only the W3C common pssh; dash.js 4.7 then fails in
    generateRequest. Our encrypt-vod writes the DASH-IF ClearKey descriptor, so add it here."""
    text = mpd.read_text()
    common = '<ContentProtection schemeIdUri="urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b">'
    assert common in text
    ck = ('<ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" '
          'value="ClearKey1.0"/>')
    mpd.write_text(text.replace(common, ck + "\n      " + common))


def shaka_hls_fmp4(src: Path, out: Path, scheme: str = "cbcs") -> Path:
    """HLS fMP4 (SAMPLE-AES cbcs) with an identity key URI served by `serve`."""
    _packager([
        f"in={src},stream=video,init_segment=v/init.mp4,segment_template=v/$Number$.m4s,"
        "playlist_name=v.m3u8",
        f"in={src},stream=audio,init_segment=a/init.mp4,segment_template=a/$Number$.m4s,"
        "playlist_name=a.m3u8,hls_group_id=audio",
        *_raw_key(), "--protection_scheme", scheme, "--hls_master_playlist_output", "master.m3u8",
        "--hls_key_uri", KEY_URI,
    ], out)
    return out / "master.m3u8"


def shaka_hls_ts_sample_aes(src_ts: Path, out: Path) -> Path:
    """HLS SAMPLE-AES on MPEG-TS (H.264 + AAC), key at /keys/KID."""
    _packager([
        f"in={src_ts},stream=video,segment_template=v/$Number$.ts,playlist_name=v.m3u8",
        f"in={src_ts},stream=audio,segment_template=a/$Number$.ts,playlist_name=a.m3u8,"
        "hls_group_id=audio",
        *_raw_key(), "--hls_master_playlist_output", "master.m3u8", "--hls_key_uri", KEY_URI,
    ], out)
    return out / "master.m3u8"


def ffmpeg_hls_ts_aes128(src_ts: Path, out: Path, tmp: Path) -> Path:
    """HLS AES-128 (whole-segment) TS made by FFmpeg's HLS muxer, plus a master playlist."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg
    out.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    keyfile = tmp / "aes.key"
    keyfile.write_bytes(KEY)
    info = tmp / "keyinfo"
    info.write_text(f"{KEY_URI}\n{keyfile}\n")
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(src_ts),
                    "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
                    "-hls_key_info_file", str(info), "-hls_segment_filename",
                    str(out / "seg%d.ts"), str(out / "media.m3u8")], check=True)
    (out / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000,CODECS=\"avc1.64000c,mp4a.40.2\"\n"
        "media.m3u8\n")
    return out / "master.m3u8"


def encrypt_vod(src: Path, out: Path, scheme: str, fmt: str, *, clearkey_hls: bool = False,
                extra: tuple[str, ...] = ()) -> Path:
    """Our own product, through its CLI, with a raw key (root-relative key URLs for `serve`).
    ``clearkey_hls``: the raw key signalled as ClearKey (``--drm clearkey``) and no identity
    key URI, so the HLS gets only the ClearKey tag."""
    keyuri = [] if clearkey_hls else ["--key-uri", KEY_URI]
    drm = ["--drm", "clearkey"] if clearkey_hls else []
    rc = cli_main(["encrypt-vod", str(src), "--output", str(out), "--scheme", scheme,
                   "--format", fmt, "--segment-duration", "2", "--key", f"{KID.hex}:{KEY.hex()}",
                   *keyuri, *drm, "--clearkey-license-url", "/clearkey/license",
                   "--quiet", "--jobs", "1", *extra])
    assert rc == 0
    return out


def speke_encrypt_vod(src: Path, out: Path, scheme: str, fmt: str,
                      drm: str) -> dict[UUID, bytes]:
    """Our product with keys from the local SPEKE key server (its own DRM signaling: e.g. HLS
    ``KEYFORMAT="org.w3.clearkey"`` tags with the KID in a data: URI). Returns the content keys
    (KID -> key) the package uses, so `serve` can hand them out (or wrong ones) itself."""
    import re

    from speke_packager.keyserver import KeyServer

    content_id = f"e2e-{out.name}"
    with KeyServer(allow_fault_header=True, host="127.0.0.1", port=0, seed="e2e") as ks:
        rc = cli_main(["encrypt-vod", str(src), "--output", str(out), "--scheme", scheme,
                       "--format", fmt, "--segment-duration", "2", "--quiet", "--jobs", "1",
                       "--speke-url", ks.speke_url, "--content-id", content_id, "--drm", drm,
                       "--video-preset", "PRESET-VIDEO-2", "--audio-preset", "PRESET-AUDIO-1"])
        assert rc == 0
        text = "".join(p.read_text() for p in sorted(out.glob("*.m3u8")))
        kids = {UUID(k) for k in re.findall(r"KEYID=0x([0-9a-fA-F]{32})", text)}
        assert kids, text[:2000]
        return {k: ks.key_for(content_id, k) for k in kids}
