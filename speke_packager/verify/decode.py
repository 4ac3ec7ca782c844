"""Independent decryption and decoding with FFmpeg >= 8: decoded-frame hashes per stream.

Keys never appear on a command line (which every local user can read in the process list):
they reach FFmpeg through files in a private (0700) temporary folder, mode 0600 — for fMP4 an
ffconcat script whose ``option decryption_key`` line the concat demuxer hands to the MP4
demuxer (:func:`keyed_input`), for HLS the key files its playlist points to. FFmpeg's messages
are scrubbed of key material before they reach an exception.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from uuid import UUID

from .._tools import FFMPEG_VERIFY, FFPROBE_VERIFY, find_tool
from ..errors import ToolError
from .keys import write_private

FFMPEG_TIMEOUT = 600


class DecodeError(ToolError):
    """FFmpeg ran but could not read or decode the (decrypted) input: a verification failure,
    not a set-up problem."""


def scrub(text: str, secrets: Sequence[bytes]) -> str:
    """``text`` with every secret (hex, either case) replaced by ``<key>``."""
    for s in secrets:
        for form in (s.hex(), s.hex().upper()):
            text = text.replace(form, "<key>")
    return text


def _run(cmd: list[str], secrets: Sequence[bytes], what: str) -> bytes:
    try:
        res = subprocess.run(cmd, capture_output=True, check=False, timeout=FFMPEG_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{what}: ffmpeg did not finish in {FFMPEG_TIMEOUT} s") from exc
    if res.returncode != 0:
        err = scrub(res.stderr.decode(errors="replace"), secrets).strip().splitlines()
        tail = err[-1] if err else f"exit status {res.returncode}"
        raise DecodeError(f"{what}: ffmpeg failed: {tail}")
    return res.stdout


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def keyed_input(media: Path, keys: Mapping[UUID, bytes], script: Path) -> list[str]:
    """FFmpeg input arguments that open the (encrypted) MP4 ``media`` with ``keys``.

    The keys go into ``script``, a new 0600 ffconcat file next to ``media`` in a private
    folder: FFmpeg's concat demuxer passes its ``option`` lines to the demuxer of the listed file
    (``decryption_key`` for one key, ``decryption_keys`` KID=KEY pairs for several), so the
    command line holds only the script's name. (FFmpeg's ``-/option FILE`` syntax does not
    reach demuxer options such as ``decryption_key``.)
    """
    if media.parent != script.parent or not _SAFE_NAME.fullmatch(media.name):
        raise ValueError("the media file and its ffconcat script share one private folder")
    if len(keys) == 1:
        option = f"decryption_key {next(iter(keys.values())).hex()}"
    else:
        option = "decryption_keys " + ":".join(f"{k.hex}={v.hex()}" for k, v in keys.items())
    write_private(script, f"ffconcat version 1.0\nfile {media.name}\noption {option}\n"
                  .encode())
    return ["-f", "concat", "-safe", "0", "-i", str(script)]  # safe=1 refuses "option"


def stream_kinds(input_args: Sequence[str], secrets: Sequence[bytes] = ()) -> list[str]:
    """Codec types ('video', 'audio', ...) of the streams of an input, in order."""
    ffprobe = find_tool("ffprobe", FFPROBE_VERIFY)
    assert ffprobe is not None
    out = _run([ffprobe, "-v", "error", *input_args, "-show_streams", "-of", "json"], secrets,
               "probe")
    try:
        streams = json.loads(out)["streams"]
        return [str(s.get("codec_type", "")) for s in streams]
    except (ValueError, KeyError, TypeError) as exc:
        raise ToolError("probe: ffprobe printed no stream list") from exc


def frame_hashes(input_args: Sequence[str], stream: str, *, secrets: Sequence[bytes] = (),
                 decode: bool = True, what: str = "decode") -> list[str]:
    """MD5 of each decoded frame (``decode=False``: of each packet) of ``stream`` (``v:0``)."""
    ffmpeg = find_tool("ffmpeg", FFMPEG_VERIFY)
    assert ffmpeg is not None
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *input_args,
           "-map", f"0:{stream}"]
    if not decode:
        cmd += ["-c", "copy"]
    cmd += ["-f", "framemd5", "-"]
    out = _run(cmd, secrets, what)
    # stream, dts, pts, duration, size, hash[, side data]: the frame/packet hash is column 5
    return [ln.split(",")[5].strip() for ln in out.decode().splitlines()
            if ln and not ln.startswith("#")]


def align(got: Sequence[str], ref: Sequence[str], max_shift: int = 3) -> tuple[int, int]:
    """Best (matched frames, shift) of ``got`` against ``ref`` for shifts up to ``max_shift``."""
    best = (0, 0)
    for shift in range(-max_shift, max_shift + 1):
        matched = sum(1 for i, h in enumerate(got)
                      if 0 <= i + shift < len(ref) and ref[i + shift] == h)
        if matched > best[0]:
            best = (matched, shift)
    return best
