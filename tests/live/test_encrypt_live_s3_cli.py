# ruff: noqa: F811  (the object-storage fixtures are imported by name from tests/storage)
"""``encrypt-live`` publishing to ``s3://``: a real FFmpeg writes a clear live HLS fMP4 stream
in real time, ``speke-packager encrypt-live ... s3://bucket/prefix --endpoint-url ...`` follows
it as a separate process and publishes to a real S3-compatible server (moto on 127.0.0.1)
through the recording / fault-injecting proxy of tests/storage.

SIGTERM: the bucket holds the ended presentation (EXT-X-ENDLIST, a static MPD), every manifest
version named only objects already up, and every segment downloaded from the bucket decrypts
(FFmpeg 8) to the clear segment's frames with the key and not with another. A non-empty prefix
is refused without --force. A store that cannot be reached, or a PUT failing beyond the
retries mid-stream: one error line, exit code 9, and the manifests in the bucket not ended."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from speke_packager.storage import ObjectStore, S3Options, S3Url
from speke_packager.verify.boxes import read_mp4_facts
from tests.s3server import aws_env, bucket, moto_server, proxy  # noqa: F401
from tests.storage.s3proxy import Fault, S3Proxy

from .test_encrypt_live_cli import (
    RAW_KEY,
    RAW_KID,
    ROOT,
    WRONG_KEY,
    _encrypt_live,
    _ffmpeg_live,
    _frames,
    _maps,
    _stop,
)
from .test_s3 import PREFIX, M, _replay

pytestmark = pytest.mark.interop

RAW = f"{RAW_KID.hex}:{RAW_KEY.hex()}"


@pytest.fixture(autouse=True)
def _aws(aws_env: None) -> None:
    """Fake credentials only, no user configuration (as in tests/storage)."""


def _get(store: ObjectStore, bucket: str, rel: str) -> bytes | None:
    url = S3Url(bucket, f"{PREFIX}/{rel}")
    try:
        return store.get_range(url, 0, 1 << 30)
    except Exception:  # not (yet) there
        return None


def _listed(store: ObjectStore, bucket: str, playlist: str) -> list[str]:
    body = _get(store, bucket, playlist)
    if body is None:
        return []
    return [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]


def _wait(cond: object, timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        if proc.poll() is not None:
            raise AssertionError(f"encrypt-live ended early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.3)
    raise AssertionError("timed out")


def _one_error_line(stderr: str, needle: str) -> None:
    """The command's failure is one line (the last), naming the cause; no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("speke-packager: error:")]
    assert len(errors) == 1 and needle in errors[0], stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == errors[0]


def test_raw_key_fmp4_to_s3_sigterm(proxy: S3Proxy, bucket: str, moto_server: str,
                                    tmp_path: Path) -> None:
    src = tmp_path / "clear"
    src.mkdir()
    store = ObjectStore(S3Options(endpoint_url=moto_server))
    url = f"s3://{bucket}/{PREFIX}"
    packager = _encrypt_live(src, url, "--key", RAW, "--drm", "clearkey", "--endpoint-url",
                             proxy.url, "--window", "30")
    ffmpeg = _ffmpeg_live(src, 20, fmp4=True)
    try:
        _wait(lambda: len(_listed(store, bucket, "video.m3u8")) >= 4
              and len(_listed(store, bucket, "audio.m3u8")) >= 4, 60, packager)
        mid = _get(store, bucket, "manifest.mpd")
        assert mid is not None and etree.fromstring(mid).get("type") == "dynamic"
        assert packager.poll() is None  # still following
        packager.send_signal(signal.SIGTERM)
        stdout, stderr = packager.communicate(timeout=30)
    finally:
        _stop(packager)
        _stop(ffmpeg)
    assert packager.returncode == 0, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and url in stderr
    assert stdout == ""

    # every manifest version in the bucket named only objects already up (PUT order replayed)
    present, manifests, _order = _replay(proxy, bucket)
    assert {"master.m3u8", "video.m3u8", "audio.m3u8", "manifest.mpd"} <= present
    mpd = etree.fromstring(_get(store, bucket, "manifest.mpd") or b"")
    assert mpd.get("type") == "static" and mpd.get("mediaPresentationDuration")
    assert mpd.findall(f"{M}Period")
    assert b"#EXT-X-STREAM-INF" in (_get(store, bucket, "master.m3u8") or b"")

    for rendition, enc_track, stream in (("video", 0, "v:0"), ("audio", 1, "a:0")):
        text = (_get(store, bucket, f"{rendition}.m3u8") or b"").decode()
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
        assert text == manifests[f"{rendition}.m3u8"].decode()
        names = _listed(store, bucket, f"{rendition}.m3u8")
        n = len(names)
        assert n >= 4 and names == [f"{rendition}/{i}.m4s" for i in range(n)]
        maps = _maps(text)
        clear_init = (src / f"init_{enc_track}.mp4").read_bytes()
        for i, name in enumerate(names):
            init, seg = _get(store, bucket, maps[name]), _get(store, bucket, name)
            assert init is not None and seg is not None
            facts = read_mp4_facts(init + seg)
            assert facts.senc_fragments == facts.fragments == 1  # encrypted, never clear
            (kid,) = facts.kids
            assert kid == RAW_KID
            enc_f = tmp_path / f"enc-{rendition}{i}.mp4"
            enc_f.write_bytes(init + seg)
            clear_f = tmp_path / f"clear-{rendition}{i}.mp4"
            clear_f.write_bytes(clear_init + (src / f"seg_{enc_track}_{i}.m4s").read_bytes())
            ref = _frames(clear_f, stream)
            assert ref, (rendition, i)
            assert _frames(enc_f, stream, RAW_KEY) == ref, (rendition, i)
            assert _frames(enc_f, stream, WRONG_KEY) != ref, (rendition, i)

    # the prefix now holds a package: a second run is refused without --force, before any work
    res = subprocess.run([sys.executable, "-m", "speke_packager", "encrypt-live", str(src), url,
                          "--key", RAW, "--endpoint-url", moto_server, "--idle-timeout", "1"],
                         env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 9
    _one_error_line(res.stderr, "is not empty (use --force")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_unreachable_endpoint_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store cannot be reached: the prefix check (the first request) fails at once with one
    line and exit code 9, before the encoder's folder is followed or any key fetched."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    (tmp_path / "in").mkdir()
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    res = subprocess.run([sys.executable, "-m", "speke_packager", "encrypt-live",
                          str(tmp_path / "in"), "s3://some-bucket/live/x", "--key", RAW,
                          "--endpoint-url", endpoint], env=_env(), capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 9
    _one_error_line(res.stderr, "cannot connect to")
    # a folder OUTPUT does not take storage options; a whole bucket is not a prefix
    for out, needle in ((str(tmp_path / "out"), "are for an s3:// OUTPUT"),
                        ("s3://some-bucket", "whole bucket")):
        res = subprocess.run([sys.executable, "-m", "speke_packager", "encrypt-live",
                              str(tmp_path / "in"), out, "--key", RAW, "--endpoint-url",
                              endpoint], env=_env(), capture_output=True, text=True,
                             timeout=60, check=False)
        assert res.returncode == 2, res.stderr
        _one_error_line(res.stderr, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["segment", "unreachable"])
def test_storage_failure_mid_stream_stops(where: str, proxy: S3Proxy, bucket: str,
                                          moto_server: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A PUT failing beyond botocore's retries while publishing (the 4th video segment
    answered 503 SlowDown; or, with --force skipping the prefix check, a store that cannot be
    reached at all): one error line naming the object, exit code 9, the failed segment named
    nowhere, and no manifest in the bucket claims the end (no EXT-X-ENDLIST, the MPD still
    dynamic)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    src = tmp_path / "clear"
    src.mkdir()
    store = ObjectStore(S3Options(endpoint_url=moto_server))
    url = f"s3://{bucket}/{PREFIX}"
    if where == "segment":
        proxy.state.faults.append(Fault("PUT", "video/3.m4s", 503, "SlowDown", times=100))
        extra = ["--endpoint-url", proxy.url]
    else:
        extra = ["--endpoint-url", f"http://127.0.0.1:{_closed_port()}", "--force"]
    packager = _encrypt_live(src, url, "--key", RAW, "--drm", "clearkey", "--window", "30",
                             *extra)
    ffmpeg = _ffmpeg_live(src, 15, fmp4=True)
    try:
        _stdout, stderr = packager.communicate(timeout=60)
    finally:
        _stop(packager)
        _stop(ffmpeg)
    assert packager.returncode == 9, stderr[-2000:]
    if where == "unreachable":
        _one_error_line(stderr, "cannot connect to")
        assert not list(store.list_objects(S3Url(bucket, PREFIX + "/")))
        return
    _one_error_line(stderr, "video/3.m4s")
    assert "SlowDown" in stderr.strip().splitlines()[-1]
    assert sum(r.key.endswith("video/3.m4s") for r in proxy.state.log) == 2  # retried, gave up
    present, _manifests, _order = _replay(proxy, bucket)
    assert "video/3.m4s" not in present
    assert {"video/0.m4s", "video/1.m4s", "video/2.m4s"} <= present
    for rendition in ("video", "audio"):
        text = (_get(store, bucket, f"{rendition}.m3u8") or b"").decode()
        assert "#EXTINF" in text and "#EXT-X-ENDLIST" not in text
        assert "video/3.m4s" not in text
    mpd = etree.fromstring(_get(store, bucket, "manifest.mpd") or b"")
    assert mpd.get("type") == "dynamic"
