"""Shaka Packager command lines for the reference runs (raw-key encryption, no clear lead).

Keys go into a 0600 ``--flagfile``, never into argv (they would show in ``ps``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .assets import SEGMENT_SECONDS, AssetSet
from .keys import BenchKeys

# scheme -> (input kind, Shaka --protection_scheme)
SHAKA_SCHEME = {
    "cenc": ("cmaf", "cenc"),
    "cbcs": ("cmaf", "cbcs"),
    "sample-aes": ("ts", "cbcs"),
    "aes-128": ("ts", "aes128"),
}


def shaka_command(packager: str, asset: AssetSet, scheme: str, keys: BenchKeys,
                  out: Path, *, from_mp4: bool = False) -> list[str]:
    """The packager argv for ``scheme``; writes the key flagfile into ``out``. ``from_mp4``:
    read the progressive MP4 source (Shaka demuxes and segments it itself), as encrypt-vod-mp4
    does, instead of the clear CMAF / TS; for cenc / cbcs it then writes HLS and DASH, like
    encrypt-vod's default for a media file."""
    kind, protection = SHAKA_SCHEME[scheme]
    out.mkdir(parents=True, exist_ok=True)
    streams: list[str] = []
    flags = [
        "--enable_raw_key_encryption",
        f"--protection_scheme={protection}",
        "--clear_lead=0",
        f"--segment_duration={SEGMENT_SECONDS}",
    ]
    if kind == "cmaf":
        for track in asset.cmaf:
            label = track.kind.upper()
            d = out / track.kind
            src = asset.source if from_mp4 else track.full
            hls = f",playlist_name={track.kind}.m3u8" if from_mp4 else ""
            streams.append(f"in={src},stream={track.kind},init_segment={d}/init.mp4,"
                           f"segment_template={d}/$Number%05d$.m4s,drm_label={label}{hls}")
        key_v, key_a = keys.video, keys.audio
        flags.append(f"--keys=label=VIDEO:key_id={key_v.kid.hex}:key={key_v.key.hex()},"
                     f"label=AUDIO:key_id={key_a.kid.hex}:key={key_a.key.hex()}")
        iv = keys.cbcs_iv if scheme == "cbcs" else keys.cenc_iv
        flags += [f"--iv={iv.hex()}", f"--mpd_output={out}/manifest.mpd"]
        if from_mp4:  # HLS + DASH, as encrypt-vod-mp4 writes with its default options
            flags += [f"--hls_master_playlist_output={out}/master.m3u8",
                      "--hls_key_uri=https://127.0.0.1/key"]
    else:
        for sel in ("video", "audio"):
            src = asset.source if from_mp4 else asset.ts_full
            streams.append(f"in={src},stream={sel},"
                           f"segment_template={out}/{sel}_$Number%05d$.ts,"
                           f"playlist_name={sel}.m3u8")
        k = keys.ts
        flags += [f"--keys=key_id={k.kid.hex}:key={k.key.hex()}", f"--iv={keys.ts_iv.hex()}",
                  f"--hls_master_playlist_output={out}/master.m3u8",
                  "--hls_key_uri=https://127.0.0.1/key"]
    flagfile = out / "shaka.flags"
    fd = os.open(flagfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(flags) + "\n")
    return [packager, *streams, f"--flagfile={flagfile}", "--quiet"]
