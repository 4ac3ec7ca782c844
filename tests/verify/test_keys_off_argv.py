"""No content key on a child process's command line (which every local user can read in the
process list): FFmpeg, ffprobe and Shaka Packager are wrapped by scripts that log each argv and
the modes of the private folder it points into, then exec the real tool; the commands run as
real CLI subprocesses, and every logged argv is scanned for every key in hex and base64."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from speke_packager._tools import find_tool
from speke_packager.verify.decode import frame_hashes, keyed_input
from speke_packager.verify.package import discover
from speke_packager.verify.references import concat_rendition
from tests.e2e.packages import KEY, KID, WRONG_KEY

OTHER_KID = UUID("ffeeddcc-bbaa-9988-7766-554433221100")

_WRAPPER = """#!/bin/sh
{{ printf 'ARGV\\t%s' "$0"; for a in "$@"; do printf '\\t%s' "$a"; done; printf '\\n'; }} >> '{log}'
for a in "$@"; do
  case "$a" in
    */speke-verify-*/*) d=$(dirname "$a"); stat -c 'STAT %a %n' "$d" "$d"/* >> '{log}' ;;
  esac
done
exec '{real}' "$@"
"""


def _forms(key: bytes) -> list[str]:
    return [key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
            base64.b64encode(key).decode().rstrip("="),
            base64.urlsafe_b64encode(key).decode().rstrip("=")]


@pytest.fixture()
def wrapped(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment whose SPEKE_PACKAGER_{FFMPEG,FFPROBE,PACKAGER} are logging wrappers."""
    log = tmp_path / "argv.log"
    log.touch()
    env = dict(os.environ)
    for name in ("ffmpeg", "ffprobe", "packager"):
        real = find_tool(name)
        assert real
        w = tmp_path / "bin" / name
        w.parent.mkdir(exist_ok=True)
        w.write_text(_WRAPPER.format(log=log, real=real))
        w.chmod(0o700)
        env[f"SPEKE_PACKAGER_{name.upper()}"] = str(w)
    return env, log


def _argvs(log: Path) -> list[list[str]]:
    return [ln.split("\t")[1:] for ln in log.read_text().splitlines() if ln.startswith("ARGV")]


def _leaks(log: Path, keys: list[bytes]) -> list[str]:
    forms = [f for k in keys for f in _forms(k)]
    return [" ".join(a[1:]) for a in _argvs(log) if any(f in arg for arg in a for f in forms)]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speke_packager", *args], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_scanner_sees_a_key_on_argv(wrapped: tuple[dict[str, str], Path]) -> None:
    """Negative control: the wrappers and the scan catch a key passed the old way."""
    env, log = wrapped
    subprocess.run([env["SPEKE_PACKAGER_FFMPEG"], "-hide_banner", "-decryption_key", KEY.hex(),
                    "-version"], capture_output=True, check=True)
    assert _leaks(log, [KEY])


@pytest.mark.parametrize("name", ["ours-dash-cenc", "ours-both-cbcs", "ours-hls-aes128",
                                  "ours-hls-sample-aes", "shaka-hls-fmp4-cbcs",
                                  "ffmpeg-hls-ts-aes128"])
def test_verify_keeps_keys_off_argv(name: str, packages: dict[str, tuple[Path, Path]],
                                    wrapped: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, log = wrapped
    pkg, ref = packages[name]
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{KID}:{KEY.hex()}\n")
    key_file.chmod(0o600)
    res = _cli(env, "verify", str(pkg), "--reference", str(ref), "--key-file", str(key_file),
               "--no-fetch-key-uris")
    assert res.returncode == 0, res.stderr[-2000:]
    argvs = _argvs(log)
    assert any(Path(a[0]).name == "ffmpeg" for a in argvs)  # the wrappers really ran
    assert not _leaks(log, [KEY])
    # the keys lived in 0600 files inside 0700 folders that are gone now
    stats = [ln.split(" ", 2)[1:] for ln in log.read_text().splitlines()
             if ln.startswith("STAT ")]
    key_files = [(m, p) for m, p in stats if p.endswith((".ffconcat", ".bin"))]
    assert key_files, "no key file seen: keys must have reached ffmpeg some other way"
    assert all(m == "600" for m, _ in key_files), key_files
    folders = {p for m, p in stats if Path(p).name.startswith("speke-verify-")}
    assert folders and all(m == "700" for m, p in stats if p in folders)
    assert not any(Path(p).exists() for p in folders)


def test_encrypt_vod_keeps_keys_off_argv(media: Callable[[str], Path],
                                         wrapped: tuple[dict[str, str], Path],
                                         tmp_path: Path) -> None:
    """encrypt-vod of a media file runs FFmpeg to segment it: never with a key."""
    env, log = wrapped
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"{KID.hex}:{KEY.hex()}\n")
    key_file.chmod(0o600)
    for fmt, scheme, src in (("dash", "cenc", "h264-aac-mp4"),
                             ("hls", "sample-aes", "h264-aac-ts")):
        res = _cli(env, "encrypt-vod", str(media(src)), "--output",
                   str(tmp_path / fmt), "--format", fmt, "--scheme", scheme, "--key-file",
                   str(key_file), "--key-uri", "/k", "--segment-duration", "2", "--quiet")
        assert res.returncode == 0, res.stderr[-2000:]
    assert _argvs(log)
    assert not _leaks(log, [KEY])


def test_keyed_input_with_several_keys(packages: dict[str, tuple[Path, Path]],
                                       tmp_path: Path) -> None:
    """The several-keys form (``decryption_keys`` KID=KEY pairs) decrypts with the right KID's
    key and fails with a wrong one; the script is 0600 and holds the only copy of the keys."""
    pkg, ref = packages["shaka-dash-cenc"]
    video = next(r for r in discover(pkg).renditions if r.content_type == "video")
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    joined = concat_rendition(video, folder / "joined.mp4")
    want = frame_hashes(["-i", str(ref)], "v:0")

    good = keyed_input(joined, {OTHER_KID: WRONG_KEY, KID: KEY}, folder / "good.ffconcat")
    assert stat.S_IMODE((folder / "good.ffconcat").stat().st_mode) == 0o600
    assert not any(f in " ".join(good) for f in _forms(KEY))
    assert frame_hashes(good, "v:0") == want
    bad = keyed_input(joined, {OTHER_KID: KEY, KID: WRONG_KEY}, folder / "bad.ffconcat")
    assert frame_hashes(bad, "v:0") != want
