"""``encrypt-live`` end to end: a real FFmpeg writes a clear live HLS stream in real time
(``-re``, 1 s segments), ``speke-packager encrypt-live`` follows it as a separate process, with
the local key server (SPEKE, keys rotating every 2 s) or raw keys, and ends cleanly on SIGTERM
or when the encoder ends. Every published segment decrypts, with its key period's key and with
an independent decryptor (FFmpeg's MP4 reader for fMP4, openssl for AES-128 TS), to the decoded
frames of the clear segment it came from; with another key it does not; no segment is clear."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest

from fixtures.media import framemd5
from speke_packager._tools import find_tool
from speke_packager.keyserver import KeyServer, derive_key, parse_faults
from speke_packager.verify.boxes import read_mp4_facts

from .helpers import keys_per_segment, openssl_decrypt

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.interop

RAW_KID = UUID("6c6976650000000000000000000000a1")
RAW_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
WRONG_KEY = bytes.fromhex("ffeeddccbbaa99887766554433221100")


def _ffmpeg_live(folder: Path, seconds: int, *, fmp4: bool) -> subprocess.Popen[bytes]:
    """FFmpeg's HLS muxer writing a clear live stream into ``folder`` in real time: fMP4 with
    video and audio in separate renditions (``live_0``, ``live_1``), or muxed MPEG-TS."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-map", "0:v", "-map", "1:a",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25",
           "-keyint_min", "25", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k",
           "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_flags", "temp_file"]
    if fmp4:
        cmd += ["-hls_segment_type", "fmp4", "-var_stream_map", "v:0 a:0",
                "-hls_fmp4_init_filename", "init.mp4",
                "-hls_segment_filename", str(folder / "seg_%v_%d.m4s"),
                str(folder / "live_%v.m3u8")]
    else:
        cmd += ["-hls_segment_filename", str(folder / "seg%d.ts"), str(folder / "live.m3u8")]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _encrypt_live(src: Path, out: Path | str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "speke_packager", "--log-level", "info",
                             "encrypt-live", str(src), str(out), "--poll-interval", "0.1",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _published(out: Path, playlist: str = "live.m3u8") -> list[str]:
    pl = out / playlist
    if not pl.exists():
        return []
    return [ln for ln in pl.read_text().splitlines() if ln and not ln.startswith("#")]


def _wait(cond: object, timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        if proc.poll() is not None:
            raise AssertionError(f"encrypt-live ended early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out")


def _stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _frames(path: Path, stream: str, key: bytes | None = None) -> list[str]:
    try:
        return framemd5(path, stream, keys=key)
    except RuntimeError:
        return []


def _ts_frames(path: Path, stream: str) -> list[str]:
    try:
        return framemd5(path, stream)
    except RuntimeError:
        return []


def _maps(text: str) -> dict[str, str]:
    """segment URI -> the EXT-X-MAP URI in effect for it."""
    out, cur = {}, ""
    for ln in text.splitlines():
        if ln.startswith("#EXT-X-MAP:"):
            cur = ln.split('URI="', 1)[1].split('"', 1)[0]
        elif ln and not ln.startswith("#"):
            out[ln] = cur
    return out


def test_speke_rotation_fmp4_sigterm(tmp_path: Path) -> None:
    """fMP4 (cenc) video + audio, SPEKE keys rotating every 2 s; SIGTERM ends the presentation
    (EXT-X-ENDLIST, static MPD) and exit 0; each segment decrypts with its own period's key
    only, behind the init the playlist names for it."""
    src, out = tmp_path / "clear", tmp_path / "enc"
    src.mkdir()
    with KeyServer(host="127.0.0.1", port=0, seed="encrypt-live-cli") as ks:
        packager = _encrypt_live(src, out, "--speke-url", ks.speke_url, "--content-id",
                                 "live-cli-1", "--drm", "widevine,playready,clearkey",
                                 "--scheme", "cenc", "--rotation", "2", "--window", "20")
        ffmpeg = _ffmpeg_live(src, 20, fmp4=True)
        try:
            _wait(lambda: len(_published(out, "video.m3u8")) >= 6, 60, packager)
            assert packager.poll() is None  # still following
            packager.send_signal(signal.SIGTERM)
            stdout, stderr = packager.communicate(timeout=30)
        finally:
            _stop(packager)
            _stop(ffmpeg)
        requests = ks.request_count("/speke")
    assert packager.returncode == 0, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr
    mpd = (out / "manifest.mpd").read_text()
    assert 'type="static"' in mpd and mpd.count("<Period ") >= 3  # a Period per key period
    assert "#EXT-X-STREAM-INF" in (out / "master.m3u8").read_text()
    per_rendition: dict[str, set[UUID]] = {}
    for rendition, enc_track in (("video", 0), ("audio", 1)):
        text = (out / f"{rendition}.m3u8").read_text()
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
        names = _published(out, f"{rendition}.m3u8")
        n = len(names)
        assert n >= 5 and names == [f"{rendition}/{i}.m4s" for i in range(n)]
        maps = _maps(text)
        clear_init = (src / f"init_{enc_track}.mp4").read_bytes()
        kids = []
        for name in names:
            init = (out / maps[name]).read_bytes()
            seg = (out / name).read_bytes()
            facts = read_mp4_facts(init + seg)
            assert facts.senc_fragments == facts.fragments == 1  # encrypted, never clear
            (kid,) = facts.kids
            kids.append(kid)
        # key periods of 2 s over 1 s segments: three at least, each with its own init
        assert len(set(kids)) >= 3 and len({maps[nm] for nm in names}) == len(set(kids))
        assert kids[0] != kids[-1]
        # each key change is announced in the playlist before its first segment
        tags = keys_per_segment(text)
        assert all(t.keyid == kids[i].bytes for i, nm in enumerate(names)
                   for t in tags[nm].values() if t.keyid is not None)
        per_rendition[rendition] = set(kids)
        stream = "v:0" if rendition == "video" else "a:0"
        for i, name in enumerate(names):
            key = derive_key("encrypt-live-cli", "live-cli-1", kids[i])
            other = derive_key("encrypt-live-cli", "live-cli-1",
                               next(k for k in kids if k != kids[i]))
            clear_f = tmp_path / f"clear-{rendition}{i}.mp4"
            clear_f.write_bytes(clear_init + (src / f"seg_{enc_track}_{i}.m4s").read_bytes())
            enc_f = tmp_path / f"enc-{rendition}{i}.mp4"
            enc_f.write_bytes((out / maps[name]).read_bytes() + (out / name).read_bytes())
            ref = _frames(clear_f, stream)
            assert ref, (rendition, i)
            assert _frames(enc_f, stream, key) == ref, (rendition, i)
            assert _frames(enc_f, stream, other) != ref, (rendition, i)
    # the default presets are SHARED: video and audio use the same key in each period, one
    # SPEKE request per key period (and at most one ahead for the next)
    assert per_rendition["video"] == per_rendition["audio"]
    assert len(per_rendition["video"]) <= requests <= len(per_rendition["video"]) + 2
    assert stdout == ""


def test_raw_key_ts_aes128_encoder_end(tmp_path: Path) -> None:
    """MPEG-TS, one raw key, AES-128: encrypt-live follows FFmpeg to the end of its stream
    (EXT-X-ENDLIST from the encoder) and exits 0; openssl decrypts every segment to the clear
    one, a wrong key does not."""
    src, out = tmp_path / "clear", tmp_path / "enc"
    src.mkdir()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{RAW_KID.hex}:{RAW_KEY.hex()}\n")
    key_file.chmod(0o600)
    iv = bytes(range(16))
    packager = _encrypt_live(src, out, "--key-file", str(key_file), "--scheme", "aes-128",
                             "--key-uri", "https://keys.example/{kid}", "--iv", iv.hex(),
                             "--window", "20")
    ffmpeg = _ffmpeg_live(src, 5, fmp4=False)
    try:
        assert ffmpeg.wait(60) == 0
        stdout, stderr = packager.communicate(timeout=60)
    finally:
        _stop(packager)
        _stop(ffmpeg)
    assert packager.returncode == 0, stderr[-2000:]
    assert "the encoder ended its stream" in stderr
    text = (out / "live.m3u8").read_text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert not (out / "manifest.mpd").exists()  # TS: HLS only
    tags = keys_per_segment(text)
    names = _published(out)
    assert len(names) >= 4 and names[0] == "live/0.ts"
    clear_names = _published(src)
    assert len(names) == len(clear_names)
    for name, clear_name in zip(names, clear_names, strict=True):
        (tag,) = tags[name].values()
        assert tag.method == "AES-128" and tag.uri == f"https://keys.example/{RAW_KID.hex}"
        assert tag.iv == iv
        enc = (out / name).read_bytes()
        clear = (src / clear_name).read_bytes()
        assert enc != clear and len(enc) % 16 == 0
        dec = openssl_decrypt(enc, RAW_KEY, iv)
        assert dec is not None
        dec_f, clear_f = tmp_path / f"dec-{name.replace('/', '-')}", src / clear_name
        dec_f.write_bytes(dec)
        ref = _ts_frames(clear_f, "v:0")
        assert ref and _ts_frames(dec_f, "v:0") == ref
        assert _ts_frames(dec_f, "a:0") == _ts_frames(clear_f, "a:0")
        assert openssl_decrypt(enc, WRONG_KEY, iv) != clear
    assert RAW_KEY.hex() not in stdout + stderr


def test_errors_one_line(tmp_path: Path) -> None:
    """Bad options: one line naming the cause, non-zero exit, nothing written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "in").mkdir()
    for args, needle in (
        (["--rotation", "2", "--key", f"{RAW_KID.hex}:{RAW_KEY.hex()}"], "--rotation needs"),
        ([], "no keys"),
        (["--window", "0", "--key", f"{RAW_KID.hex}:{RAW_KEY.hex()}"], "--window"),
        (["--speke-url", "http://127.0.0.1:9/speke", "--content-id", "c",
          "--key-periods-per-request", "2"], "--speke-version 1.0"),
    ):
        res = subprocess.run([sys.executable, "-m", "speke_packager", "encrypt-live",
                              str(tmp_path / "in"), str(tmp_path / "out"), "--idle-timeout",
                              "1", *args], env=env, capture_output=True, text=True, timeout=60,
                             check=False)
        assert res.returncode != 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], res.stderr


def test_key_outage_grace_then_typed_stop(tmp_path: Path) -> None:
    """The key server fails from the second key period on: the previous keys stand in for
    --key-grace seconds (logged at each segment), then encrypt-live stops publishing with one
    error line and a non-zero exit; the manifests are not ended, and every published segment
    is encrypted with a key its playlist announces."""
    src, out = tmp_path / "clear", tmp_path / "enc"
    src.mkdir()
    with KeyServer(host="127.0.0.1", port=0, seed="encrypt-live-cli") as ks:
        packager = _encrypt_live(src, out, "--speke-url", ks.speke_url, "--content-id",
                                 "live-cli-2", "--drm", "clearkey", "--rotation", "2",
                                 "--key-lead", "0.5", "--key-grace", "1", "--retries", "0",
                                 "--format", "hls")
        ffmpeg = _ffmpeg_live(src, 20, fmp4=True)
        try:
            _wait(lambda: len(_published(out, "video.m3u8")) >= 1, 60, packager)
            ks.faults = parse_faults(["status=503"])  # an outage from now on
            _, stderr = packager.communicate(timeout=60)
        finally:
            _stop(packager)
            _stop(ffmpeg)
    assert packager.returncode == 3  # keys
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("speke-packager: error: stopped publishing:") and "grace" in last
    assert "keys of an earlier key period" in stderr  # the grace segments were logged
    text = (out / "video.m3u8").read_text()
    assert "#EXT-X-ENDLIST" not in text
    names = _published(out, "video.m3u8")
    assert names == [f"video/{i}.m4s" for i in range(len(names))] and len(names) == 3
    tags = keys_per_segment(text)
    maps = _maps(text)
    for name in names:  # t = 0, 1 (period 0) and 2 (period 1 on period 0's keys, in grace)
        facts = read_mp4_facts((out / maps[name]).read_bytes() + (out / name).read_bytes())
        assert facts.senc_fragments == facts.fragments == 1
        (kid,) = facts.kids
        assert {t.keyid for t in tags[name].values()} == {kid.bytes}


def test_ffmpeg_dash_input_raw_key(tmp_path: Path) -> None:
    """FFmpeg's DASH muxer as the encoder (its run over when encrypt-live starts: a static MPD
    ends the presentation at once): both Representations published in HLS and DASH, cbcs
    with one raw key, every segment decrypting to the clear one's frames."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    src, out = tmp_path / "clear", tmp_path / "enc"
    src.mkdir()
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error",
                    "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
                    "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-f", "dash", "-seg_duration", "1", "-streaming", "0", "-use_template", "1",
                    "-use_timeline", "1", "-window_size", "0", str(src / "live.mpd")],
                   check=True, capture_output=True)
    packager = _encrypt_live(src, out, "--key", f"{RAW_KID.hex}:{RAW_KEY.hex()}",
                             "--drm", "clearkey", "--window", "20")
    _, stderr = packager.communicate(timeout=120)
    assert packager.returncode == 0, stderr[-2000:]
    assert 'type="static"' in (out / "manifest.mpd").read_text()
    for rendition, rep, stream in (("video", 0, "v:0"), ("audio", 1, "a:0")):
        names = _published(out, f"{rendition}.m3u8")
        assert len(names) >= 4
        init = (out / rendition / "init-0.mp4").read_bytes()
        clear_init = (src / f"init-stream{rep}.m4s").read_bytes()
        for i, name in enumerate(names):
            enc_f, clear_f = tmp_path / f"e-{rendition}{i}.mp4", tmp_path / f"c-{rendition}{i}.mp4"
            enc_f.write_bytes(init + (out / name).read_bytes())
            clear_f.write_bytes(clear_init + (src / f"chunk-stream{rep}-{i + 1:05d}.m4s"
                                              ).read_bytes())
            ref = _frames(clear_f, stream)
            assert ref and _frames(enc_f, stream, RAW_KEY) == ref, (rendition, i)
            if len(ref) >= 10:
                assert _frames(enc_f, stream, WRONG_KEY) != ref


def test_encoder_restart_continues(tmp_path: Path) -> None:
    """The encoder dies (SIGKILL, no ENDLIST) and a new run starts over in the same folder
    (sequence numbers and timestamps from 0 again, its files overwritten): encrypt-live goes on,
    one EXT-X-DISCONTINUITY in each media playlist, a new DASH Period, consecutive numbers."""
    src, out = tmp_path / "clear", tmp_path / "enc"
    src.mkdir()
    packager = _encrypt_live(src, out, "--key", f"{RAW_KID.hex}:{RAW_KEY.hex()}", "--drm",
                             "clearkey", "--idle-timeout", "10", "--window", "30")
    first = _ffmpeg_live(src, 30, fmp4=True)
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: len(_published(out, "video.m3u8")) >= 3, 60, packager)
        first.kill()
        first.wait()
        time.sleep(1)
        second = _ffmpeg_live(src, 3, fmp4=True)
        assert second.wait(60) == 0
        _, stderr = packager.communicate(timeout=60)
    finally:
        for p in (packager, first, second):
            if p is not None:
                _stop(p)
    assert packager.returncode == 0, stderr[-2000:]
    assert "the encoder restarted" in stderr
    for rendition in ("video", "audio"):
        text = (out / f"{rendition}.m3u8").read_text()
        assert text.count("#EXT-X-DISCONTINUITY\n") == 1 and text.rstrip().endswith(
            "#EXT-X-ENDLIST")
        names = _published(out, f"{rendition}.m3u8")
        assert names == [f"{rendition}/{i}.m4s" for i in range(len(names))]
        assert len(names) >= 5
        for name in names:
            facts = read_mp4_facts((out / rendition / "init-0.mp4").read_bytes()
                                   + (out / name).read_bytes())
            assert facts.senc_fragments == facts.fragments == 1
    assert (out / "manifest.mpd").read_text().count("<Period ") == 2


def test_speke_v1_several_periods_per_request(tmp_path: Path) -> None:
    """SPEKE v1 with --key-periods-per-request 4: 1 s key periods, a request for every four."""
    src, out = tmp_path / "clear", tmp_path / "enc"
    src.mkdir()
    with KeyServer(host="127.0.0.1", port=0, seed="encrypt-live-cli") as ks:
        packager = _encrypt_live(src, out, "--speke-url", ks.speke_url, "--content-id",
                                 "live-cli-v1", "--drm", "clearkey", "--scheme", "cenc",
                                 "--rotation", "1", "--speke-version", "1.0",
                                 "--key-periods-per-request", "4", "--window", "20")
        ffmpeg = _ffmpeg_live(src, 8, fmp4=True)
        try:
            assert ffmpeg.wait(60) == 0
            _, stderr = packager.communicate(timeout=60)
        finally:
            _stop(packager)
            _stop(ffmpeg)
        requests = ks.request_count("/speke")
    assert packager.returncode == 0, stderr[-2000:]
    text = (out / "video.m3u8").read_text()
    maps = _maps(text)
    kids = {next(iter(read_mp4_facts((out / init).read_bytes()).kids))
            for init in set(maps.values())}
    assert len(kids) >= 7  # a key per 1 s period
    assert requests <= len(kids) // 4 + 2


def test_ctrl_c_ends_cleanly(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) ends the presentation like SIGTERM: EXT-X-ENDLIST, exit 0."""
    src, out = tmp_path / "clear", tmp_path / "enc"
    src.mkdir()
    packager = _encrypt_live(src, out, "--key", f"{RAW_KID.hex}:{RAW_KEY.hex()}",
                             "--key-uri", "https://keys.example/{kid}")
    ffmpeg = _ffmpeg_live(src, 30, fmp4=False)
    try:
        _wait(lambda: len(_published(out)) >= 2, 60, packager)
        packager.send_signal(signal.SIGINT)
        _, stderr = packager.communicate(timeout=30)
    finally:
        _stop(packager)
        _stop(ffmpeg)
    assert packager.returncode == 0, stderr[-2000:]
    assert "stopped by SIGINT" in stderr
    assert (out / "live.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
