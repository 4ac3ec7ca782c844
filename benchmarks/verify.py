"""Check that what was timed is real encryption: decrypt one output segment independently.

cenc/cbcs: FFmpeg decrypts encrypted init + first video segment (its key in a 0600 ffconcat
script, ``option decryption_key``), decoded frame hashes equal to the clear ones, and a wrong key
must not give them. AES-128 and SAMPLE-AES: FFmpeg's HLS demuxer decrypts a one-segment playlist
with a 0600 key file; frame hashes as above. Keys never go on a command line (``ps``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from uuid import UUID

from speke_packager._tools import find_tool
from speke_packager.verify.decode import keyed_input

from .keys import BenchKeys


def _framemd5(path: Path, extra: tuple[str, ...] = (),
              input_args: list[str] | None = None) -> list[str] | None:
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg
    res = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "quiet", "-nostdin", *extra,
                          *(input_args or ["-i", str(path)]), "-map", "0:v:0", "-f", "framemd5",
                          "-"],
                         capture_output=True, check=False, timeout=300)
    if res.returncode != 0:
        return None
    lines = [ln.split(",")[5].strip() for ln in res.stdout.decode().splitlines()
             if ln and not ln.startswith("#")]
    return lines or None


def _wrong(key: bytes) -> bytes:
    return bytes([key[0] ^ 0xFF]) + key[1:]


def verify_mp4(work: Path, clear_init: Path, clear_seg: Path, enc_init: Path, enc_seg: Path,
               key: bytes) -> str:
    """'ok' when FFmpeg decrypts the first encrypted video segment to the clear frames."""
    work.chmod(0o700)
    clear = work / "clear.mp4"
    enc = work / "enc.mp4"
    clear.write_bytes(clear_init.read_bytes() + clear_seg.read_bytes())
    enc.write_bytes(enc_init.read_bytes() + enc_seg.read_bytes())
    want = _framemd5(clear)
    kid = UUID(int=0)  # one key: decryption_key applies to any KID
    got = _framemd5(enc, input_args=keyed_input(enc, {kid: key}, work / "good.ffconcat"))
    bad = _framemd5(enc, input_args=keyed_input(enc, {kid: _wrong(key)}, work / "bad.ffconcat"))
    if not want:
        return "clear segment does not decode"
    if got != want:
        return "FAILED: decrypted frames differ from the clear ones"
    if bad == want:
        return "FAILED: a wrong key gives the clear frames (not encrypted?)"
    return "ok"


def _one_segment_playlist(d: Path, key_line: str) -> Path:
    # FFmpeg's HLS reader leaves the last video PES of a playlist encrypted (it decrypts a PES
    # when the next one starts), so the segment is listed twice and only the first copy counts
    (d / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:7\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"{key_line}#EXTINF:6.0,\nseg.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:6.0,\nseg.ts\n"
        "#EXT-X-ENDLIST\n")
    return d / "index.m3u8"


_HLS_IN = ("-allowed_extensions", "ALL", "-protocol_whitelist", "file,crypto,data")


def verify_hls(method: str, work: Path, clear_seg: Path, enc_seg: Path, key: bytes,
               iv: bytes) -> str:
    """'ok' when FFmpeg's HLS demuxer decrypts the AES-128 or SAMPLE-AES segment to the clear
    frames and a wrong key does not."""
    work.chmod(0o700)
    c = work / "clear"
    c.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clear_seg, c / "seg.ts")
    ref = _framemd5(_one_segment_playlist(c, ""), _HLS_IN)
    if not ref or len(ref) % 2:
        return "clear segment does not decode"
    want = ref[: len(ref) // 2]
    results = []
    for name, k in (("good", key), ("bad", _wrong(key))):
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(enc_seg, d / "seg.ts")
        fd = os.open(d / "key.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(k)
        line = f'#EXT-X-KEY:METHOD={method},URI="key.bin",IV=0x{iv.hex()}\n'
        got = _framemd5(_one_segment_playlist(d, line), _HLS_IN)
        results.append(got[: len(want)] if got else None)
    if results[0] != want:
        return "FAILED: decrypted frames differ from the clear ones"
    if results[1] == want:
        return "FAILED: a wrong key gives the clear frames (not encrypted?)"
    return "ok"


def verify_output(scheme: str, keys: BenchKeys, out: Path, work: Path,
                  cmaf_video: tuple[Path, Path] | None, ts_first: Path | None) -> str:
    """Verify the first segment our segment API wrote into ``out`` for ``scheme``."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        if scheme in ("cenc", "cbcs"):
            assert cmaf_video
            init, seg = cmaf_video
            return verify_mp4(work, init, seg, out / "video" / "init.mp4",
                              out / "video" / seg.name, keys.video.key)
        assert ts_first
        enc = out / ts_first.name
        if scheme == "aes-128":
            from speke_packager.media.aes128 import iv_from_sequence

            return verify_hls("AES-128", work, ts_first, enc, keys.ts.key, iv_from_sequence(0))
        return verify_hls("SAMPLE-AES", work, ts_first, enc, keys.ts.key, keys.ts_iv)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not verified ({type(exc).__name__}: {exc})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
