"""encrypt-vod failures: one line on stderr, a non-zero exit by error family, nothing partial;
SIGINT mid-run leaves no output (or the earlier output intact)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import KEY, KEYSPEC, cli, copy_tree, long_package, signal_mid_run


def _one_line_error(res: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("speke-packager: error: ")
    for w in words:
        assert w in lines[0], lines[0]
    assert KEY.hex() not in res.stderr + res.stdout


def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_missing_input(tmp_path: Path) -> None:
    res = cli("encrypt-vod", str(tmp_path / "nope.m3u8"), "-o", str(tmp_path / "out"),
              "--key", KEYSPEC)
    _one_line_error(res, 2, "does not exist")
    assert not (tmp_path / "out").exists()


def test_missing_segment(packages, tmp_path: Path) -> None:
    pkg = copy_tree(packages("hls-ts").parent, tmp_path / "pkg")
    (pkg / "seg_001.ts").unlink()
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(pkg / "index.m3u8"), "-o", str(out), "--scheme", "aes-128",
              "--key", KEYSPEC, "--key-uri", "https://k/key")
    _one_line_error(res, 5, "seg_001.ts", "missing")
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("body, word", [
    (b"not a playlist\n", "EXTM3U"),
    (b"#EXTM3U\n#EXTINF:abc,\nseg.ts\n", "EXTINF"),
    (b"#EXTM3U\n\xff\xfe\xfa\n", "UTF-8"),
])
def test_unreadable_playlist(body: bytes, word: str, tmp_path: Path) -> None:
    pl = tmp_path / "bad.m3u8"
    pl.write_bytes(body)
    res = cli("encrypt-vod", str(pl), "-o", str(tmp_path / "out"), "--scheme", "aes-128",
              "--key", KEYSPEC, "--key-uri", "https://k/key")
    _one_line_error(res, 5, word)
    assert not (tmp_path / "out").exists()


def test_unreadable_mpd(tmp_path: Path) -> None:
    mpd = tmp_path / "bad.mpd"
    mpd.write_bytes(b"<MPD><Period>")
    res = cli("encrypt-vod", str(mpd), "-o", str(tmp_path / "out"), "--key", KEYSPEC)
    _one_line_error(res, 5, "well-formed")


def test_key_server_down(media, tmp_path: Path) -> None:
    # (the key client logs each failed attempt as a warning; --log-level error keeps it out)
    res = cli("--log-level", "error", "encrypt-vod", str(media("h264-aac-mp4")), "-o",
              str(tmp_path / "out"), "--speke-url", f"http://127.0.0.1:{_free_port()}/speke",
              "--content-id", "c1", "--retries", "0", "--timeout", "2")
    _one_line_error(res, 3, "key server")
    assert not (tmp_path / "out").exists()
    _no_leftovers(tmp_path)


def test_key_server_invalid_answer(media, tmp_path: Path) -> None:
    from speke_packager.keyserver import KeyServer

    with KeyServer(allow_fault_header=True, host="127.0.0.1", port=0, seed="t", faults=["wrong-kid"]) as ks:
        res = cli("--log-level", "error", "encrypt-vod", str(media("h264-aac-mp4")), "-o",
                  str(tmp_path / "out"), "--speke-url", ks.speke_url, "--content-id", "c1",
                  "--retries", "0")
    _one_line_error(res, 3)
    assert not (tmp_path / "out").exists()


def test_sample_aes_fmp4_explains_cbcs(packages, tmp_path: Path) -> None:
    res = cli("encrypt-vod", str(packages("hls-fmp4")), "-o", str(tmp_path / "out"),
              "--scheme", "sample-aes", "--key", KEYSPEC, "--key-uri", "https://k/key")
    _one_line_error(res, 4, "cbcs")
    assert not (tmp_path / "out").exists()


def test_unsupported_combinations(packages, media, tmp_path: Path) -> None:
    res = cli("encrypt-vod", str(packages("hls-ts")), "-o", str(tmp_path / "o1"), "--format",
              "dash", "--key", KEYSPEC)
    _one_line_error(res, 2, "HLS")
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "o2"),
              "--scheme", "aes-128", "--format", "both", "--key", KEYSPEC)
    _one_line_error(res, 4, "DASH needs cenc or cbcs")
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "o3"),
              "--scheme", "cenc", "--speke-url", "http://127.0.0.1:9/x", "--content-id", "c",
              "--drm", "fairplay", "--format", "hls")
    _one_line_error(res, 2, "fairplay")
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "o4"),
              "--key", "00112233445566778899aabbccddeeff:zz")
    _one_line_error(res, 2, "32 hex digits")
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "o5"))
    _one_line_error(res, 2, "--key")
    # raw keys can be signalled as ClearKey only (was: --drm silently ignored)
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "o6"),
              "--key", KEYSPEC, "--drm", "clearkey,widevine")
    _one_line_error(res, 2, "--drm widevine needs a key server")
    res = cli("encrypt-vod", str(packages("hls-ts")), "-o", str(tmp_path / "o7"),
              "--scheme", "sample-aes", "--key", KEYSPEC, "--drm", "clearkey")
    _one_line_error(res, 2, "clearkey cannot be signalled")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))


def test_no_ffmpeg(media, tmp_path: Path) -> None:
    env = dict(os.environ, SPEKE_PACKAGER_FFMPEG=str(tmp_path / "no" / "ffmpeg"),
               SPEKE_PACKAGER_FFPROBE=str(tmp_path / "no" / "ffprobe"))
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "out"),
              "--key", KEYSPEC, "--segmenter", "ffmpeg", env=env)
    _one_line_error(res, 7, "SPEKE_PACKAGER_FFMPEG")
    assert not (tmp_path / "out").exists()
    _no_leftovers(tmp_path)
    # the native segmenter (the default for MP4 with cenc/cbcs) needs no FFmpeg
    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "out"),
              "--key", KEYSPEC, "--format", "dash", "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "manifest.mpd").exists()


def test_output_not_empty_and_force(packages, tmp_path: Path) -> None:
    manifest = packages("hls-fmp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    args = ["encrypt-vod", str(manifest), "-o", str(out), "--key", KEYSPEC, "--key-uri",
            "https://k/key", "--quiet"]
    _one_line_error(cli(*args), 6, "not empty")
    assert (out / "keep.txt").exists()
    # an error with --force leaves the earlier folder intact
    bad = copy_tree(manifest.parent, tmp_path / "bad")
    (bad / "seg_002.m4s").unlink()
    res = cli("encrypt-vod", str(bad / "index.m3u8"), "-o", str(out), "--key", KEYSPEC,
              "--key-uri", "https://k/key", "--force")
    _one_line_error(res, 5, "seg_002.m4s")
    assert (out / "keep.txt").read_text() == "earlier"
    res = cli(*args, "--force")
    assert res.returncode == 0, res.stderr
    assert not (out / "keep.txt").exists() and (out / "index.m3u8").exists()
    _no_leftovers(tmp_path)


_SIGNALS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)"),
            (signal.SIGHUP, 129, "terminated (SIGHUP)")]


def _interrupt_mid_run(packages, tmp_path: Path, out: Path, sig: int, *extra: str
                       ) -> tuple[int, str]:
    manifest = long_package(packages, tmp_path / "pkg")
    return signal_mid_run(["encrypt-vod", str(manifest), "-o", str(out), "--scheme",
                           "sample-aes", "--key", KEYSPEC, "--key-uri", "https://k/key",
                           "--jobs", "1", *extra], out, sig)


@pytest.mark.parametrize("sig, code, word", _SIGNALS, ids=str)
def test_signal_leaves_no_output(packages, tmp_path: Path, sig: int, code: int,
                                 word: str) -> None:
    """Ctrl-C, SIGTERM (timeout, systemd, container runtimes) and SIGHUP while segments are
    being written: the temporary folder is removed, exit status 128 + the signal."""
    out = tmp_path / "out"
    rc, err = _interrupt_mid_run(packages, tmp_path, out, sig)
    assert rc == code, err
    assert word in err and "Traceback" not in err
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("sig, code, word", _SIGNALS[:2], ids=str)
def test_signal_keeps_earlier_output(packages, tmp_path: Path, sig: int, code: int,
                                     word: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    rc, err = _interrupt_mid_run(packages, tmp_path, out, sig, "--force")
    assert rc == code, err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    _no_leftovers(tmp_path)
    shutil.rmtree(out)


@pytest.mark.parametrize("sig, code, word", _SIGNALS[:2], ids=str)
def test_signal_while_ffmpeg_segments_a_media_file(media, tmp_path: Path, sig: int, code: int,
                                                   word: str) -> None:
    """Ctrl-C or SIGTERM while ffmpeg is still segmenting the input: ffmpeg is stopped, the
    segments folder and the partial output are removed, and the exit status is 130 / 143
    (SIGTERM reaches our process only, as from ``kill`` or ``timeout``). ffmpeg is wrapped
    (``SPEKE_PACKAGER_FFMPEG``) only to read the input at real-time speed, so the run is still
    inside ffmpeg when the signal comes."""
    from speke_packager._tools import find_tool

    real = find_tool("ffmpeg")
    assert real
    work = tmp_path / "work"
    work.mkdir()
    pid_file = work / "ffmpeg.pid"
    wrapper = work / "slow-ffmpeg"
    # only the segmenting run (it has an input) records its pid, not the capability probes
    wrapper.write_text(f"#!/bin/sh\ncase \" $* \" in *\" -i \"*) echo $$ > '{pid_file}' ;; esac\n"
                       f"exec '{real}' -readrate 1 \"$@\"\n")
    wrapper.chmod(0o755)
    out = work / "out"
    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", "encrypt-vod",
                             str(media("h264-aac-mp4")), "-o", str(out), "--scheme", "cenc",
                             "--format", "dash", "--key", KEYSPEC, "--segmenter", "ffmpeg"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "SPEKE_PACKAGER_FFMPEG": str(wrapper)})
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "ffmpeg never started"
            time.sleep(0.02)
        time.sleep(0.5)  # ffmpeg is reading the input at 1x speed now
        ffmpeg_pid = int(pid_file.read_text())
        assert [p for p in work.iterdir() if p.name.startswith(".speke-segments-")]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert word.encode() in err
    assert not out.exists()
    assert sorted(p.name for p in work.iterdir()) == ["ffmpeg.pid", "slow-ffmpeg"]
    assert not _running(ffmpeg_pid), "ffmpeg was left running"


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a killed child that its exited parent
    could not reap any more waits for init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")
