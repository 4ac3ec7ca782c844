"""encrypt-vod and verify with s3:// input and output, against a real S3-compatible server
(moto on 127.0.0.1): the package downloaded again and decrypted independently (ffmpeg) must
give the clear source's frames; segments are published before manifests; a failed upload
removes what the run wrote; a missing input object is one typed line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import ObjectNotFoundError, StorageError
from speke_packager.pipeline.keysource import RawKeys
from speke_packager.pipeline.options import OutputFormat, VodOptions
from speke_packager.pipeline.vod import encrypt_vod
from speke_packager.storage import (
    ObjectStore,
    S3Options,
    S3Url,
    download_tree,
    local_files,
    upload_file,
)
from speke_packager.verify import verify_package
from tests.vod.conftest import IV, KEY, KEYSPEC, KID, WRONG, concat, frames, make_package

from .s3proxy import Fault, S3Proxy

MANIFEST_SUFFIXES = (".m3u8", ".mpd")
KEY_URI = "https://keys.example/{kid}"


def _upload_folder(store: ObjectStore, root: Path, prefix: S3Url) -> None:
    for rel in local_files(root):
        upload_file(store, root / rel, prefix.join(rel))


def _keys() -> RawKeys:
    return RawKeys((KEYSPEC,))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speke_packager", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300,
                          check=False)


def _assert_manifests_last(writes: list[str], prefix: str, top: str) -> None:
    mine = [w for w in writes if w.startswith(prefix)]
    assert mine, "nothing was written"
    kinds = [w.endswith(MANIFEST_SUFFIXES) for w in mine]
    first_manifest = kinds.index(True)
    assert all(kinds[first_manifest:]), f"a segment after a manifest: {mine}"
    assert not any(kinds[:first_manifest])
    # the top manifest (master playlist or MPD) after the playlists it names
    assert mine[-1] == prefix + top


@pytest.fixture(scope="module")
def clear_src(media: Callable[[str], Path]) -> Path:
    return media("h264-aac-mp4")


def test_media_file_s3_to_s3_cenc(store: ObjectStore, s3opts: S3Options, bucket: str,
                                  proxy: S3Proxy, clear_src: Path, tmp_path: Path) -> None:
    src = S3Url(bucket, "in/movie.mp4")
    upload_file(store, clear_src, src)
    proxy.state.log.clear()
    out = f"s3://{bucket}/out/movie-cenc"
    result = encrypt_vod(VodOptions(input=str(src), output=out, scheme=Scheme.CENC,
                                    format=OutputFormat.DASH, jobs=2, segment_duration=2,
                                    storage=s3opts), _keys())
    assert result.output == out + "/"
    _assert_manifests_last(proxy.state.writes(), f"/{bucket}/out/movie-cenc/", "manifest.mpd")
    inv = store.inventory(S3Url.parse(out))
    assert "manifest.mpd" in inv and "0/init.mp4" in inv
    assert sum(size for size, _ in inv.values()) == result.bytes_out + sum(
        inv[m][0] for m in result.manifests)
    assert all(etag.strip('"') for _, etag in inv.values())
    local = tmp_path / "dl"
    got = download_tree(store, S3Url.parse(out), local)
    assert "manifest.mpd" in got
    for rep, stream in (("0", "v:0"), ("1", "a:0")):
        segs = sorted((local / rep).glob("segment_*.m4s"))
        assert len(segs) >= 2
        track = concat(tmp_path / f"t{rep}.mp4", [local / rep / "init.mp4", *segs])
        ref = frames(clear_src, stream)
        assert ref
        assert frames(track, stream, key=KEY) == ref
        assert frames(track, stream, key=WRONG) != ref  # negative control
    # the library's verify_package reads the package and the reference from s3:// itself
    report = verify_package(out, str(src), keys={KID: KEY}, storage=s3opts)
    assert report.ok and report.package == out and len(report.renditions) == 2
    bad = verify_package(out, str(src), keys={KID: WRONG}, storage=s3opts)
    assert not bad.ok


def test_hls_package_s3_to_s3_aes128_via_cli(store: ObjectStore, proxy: S3Proxy, bucket: str,
                                             media: Callable[[str], Path],
                                             tmp_path: Path) -> None:
    clear_ts = media("h264-aac-ts")
    pkg = make_package("hls-ts", clear_ts, tmp_path / "clear")
    _upload_folder(store, pkg.parent, S3Url(bucket, "clear/hls/"))
    proxy.state.log.clear()
    out = f"s3://{bucket}/enc/hls-aes"
    r = _cli("encrypt-vod", f"s3://{bucket}/clear/hls/index.m3u8", "-o", out, "--scheme",
             "aes-128", "--key", KEYSPEC, "--iv", IV.hex(), "--endpoint-url", proxy.url,
             "--key-uri", "https://keys.example/{kid}",
             "--json", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == out + "/"
    _assert_manifests_last(proxy.state.writes(), f"/{bucket}/enc/hls-aes/", "index.m3u8")
    # the input was read with ranged GETs, never written
    assert not [w for w in proxy.state.writes() if "/clear/" in w]
    local = tmp_path / "dl"
    download_tree(store, S3Url.parse(out), local)
    playlist = (local / "index.m3u8").read_text()
    assert "METHOD=AES-128" in playlist
    # independent decryption: openssl per segment, then the frames of the concatenation
    segs = sorted(local.glob("seg_*.ts"))
    assert len(segs) >= 2
    plain = []
    for s in segs:
        dec = subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", KEY.hex(), "-iv",
                              IV.hex(), "-in", str(s)], capture_output=True, check=True).stdout
        plain.append(dec)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(plain))
    clear_joined = concat(tmp_path / "clear.ts", sorted(pkg.parent.glob("seg_*.ts")))
    assert frames(joined, "v:0") == frames(clear_joined, "v:0")
    wrong = subprocess.run(["openssl", "enc", "-d", "-nopad", "-aes-128-cbc", "-K",
                            WRONG.hex(), "-iv", IV.hex(), "-in", str(segs[0])],
                           capture_output=True, check=True).stdout
    assert wrong[:len(plain[0])] != plain[0]  # negative control: the wrong key gives garbage
    # verify on s3:// (package and reference in object storage)
    v = _cli("verify", out, "--reference", f"s3://{bucket}/clear/hls/index.m3u8", "--key",
             KEYSPEC, "--endpoint-url", proxy.url, "--json", "--no-fetch-key-uris")
    assert v.returncode == 0, v.stderr + v.stdout
    report = json.loads(v.stdout)
    assert report["package"] == out and all(x["ok"] for x in report["renditions"])


def test_failure_mid_upload_removes_the_objects_of_the_run(
        store: ObjectStore, s3opts: S3Options, proxy: S3Proxy, bucket: str,
        clear_src: Path) -> None:
    src = S3Url(bucket, "in/movie.mp4")
    upload_file(store, clear_src, src)
    # the last manifest to go up fails for good (after the retries)
    proxy.state.faults.append(Fault("PUT", "/out/fail/master.m3u8", 500, "InternalError",
                                    times=100))
    with pytest.raises(StorageError, match="InternalError"):
        encrypt_vod(VodOptions(input=str(src), output=f"s3://{bucket}/out/fail",
                               scheme=Scheme.CBCS, format=OutputFormat.HLS, jobs=1, key_uri=KEY_URI,
                               segment_duration=2,
                               storage=S3Options(endpoint_url=proxy.url, max_attempts=2)),
                    _keys())
    written = [w for w in proxy.state.writes() if "/out/fail/" in w]
    assert len(written) > 3  # segments (and a playlist) were written, then removed
    assert list(store.list_objects(S3Url(bucket, "out/fail/"))) == []


def test_rollback_failure_names_the_objects_left(
        store: ObjectStore, proxy: S3Proxy, bucket: str, clear_src: Path) -> None:
    src = S3Url(bucket, "in/movie.mp4")
    upload_file(store, clear_src, src)
    proxy.state.faults += [
        Fault("PUT", "/out/stuck/master.m3u8", 500, "InternalError", times=100),
        Fault("POST", f"/{bucket}", 500, "InternalError", times=100, query="delete"),
    ]
    with pytest.raises(StorageError, match="could not be deleted") as info:
        encrypt_vod(VodOptions(input=str(src), output=f"s3://{bucket}/out/stuck",
                               scheme=Scheme.CBCS, format=OutputFormat.HLS, jobs=1, key_uri=KEY_URI,
                               segment_duration=2,
                               storage=S3Options(endpoint_url=proxy.url, max_attempts=1)),
                    _keys())
    msg = str(info.value)
    assert "\n" not in msg
    left = [u for u, _ in store.list_objects(S3Url(bucket, "out/stuck/"))]
    assert left
    assert str(left[0]) in msg


def test_missing_input_object_is_one_typed_line(s3opts: S3Options, bucket: str,
                                                proxy: S3Proxy) -> None:
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        encrypt_vod(VodOptions(input=f"s3://{bucket}/nope/movie.mp4",
                               output=f"s3://{bucket}/out/x", storage=s3opts),
                    _keys())
    r = _cli("encrypt-vod", f"s3://{bucket}/nope/index.m3u8", "-o", f"s3://{bucket}/o",
             "--key", KEYSPEC, "--endpoint-url", proxy.url)
    assert r.returncode == ObjectNotFoundError.exit_code
    line = r.stderr.strip()
    assert "\n" not in line and f"s3://{bucket}/nope/index.m3u8" in line
    assert "does not exist" in line
    assert not proxy.state.writes()


def test_missing_segment_of_an_s3_package(store: ObjectStore, s3opts: S3Options, bucket: str,
                                          media: Callable[[str], Path], tmp_path: Path) -> None:
    pkg = make_package("hls-fmp4", media("h264-aac-mp4"), tmp_path / "clear")
    _upload_folder(store, pkg.parent, S3Url(bucket, "clear/f/"))
    store.delete(S3Url(bucket, "clear/f/seg_001.m4s"))
    from speke_packager.errors import ManifestError

    with pytest.raises(ManifestError, match=r"seg_001\.m4s is missing"):
        encrypt_vod(VodOptions(input=f"s3://{bucket}/clear/f/index.m3u8",
                               output=f"s3://{bucket}/out/f", storage=s3opts, key_uri=KEY_URI),
                    _keys())
    assert list(store.list_objects(S3Url(bucket, "out/"))) == []


def test_non_empty_output_prefix_needs_force(store: ObjectStore, s3opts: S3Options,
                                             bucket: str, clear_src: Path) -> None:
    store.put(S3Url(bucket, "busy/old.txt"), b"old")
    opts = VodOptions(input=clear_src, output=f"s3://{bucket}/busy", scheme=Scheme.CBCS,
                      format=OutputFormat.HLS, jobs=1, key_uri=KEY_URI, segment_duration=2, storage=s3opts)
    with pytest.raises(StorageError, match="not empty"):
        encrypt_vod(opts, _keys())
    import dataclasses

    encrypt_vod(dataclasses.replace(opts, force=True), _keys())
    keys = [u.key for u, _ in store.list_objects(S3Url(bucket, "busy/"))]
    assert "busy/master.m3u8" in keys and "busy/old.txt" not in keys


def test_output_holding_the_input_is_refused(s3opts: S3Options, store: ObjectStore,
                                             bucket: str, clear_src: Path) -> None:
    from speke_packager.errors import UsageError

    upload_file(store, clear_src, S3Url(bucket, "a/in/movie.mp4"))
    with pytest.raises(UsageError, match="holds the input"):
        encrypt_vod(VodOptions(input=f"s3://{bucket}/a/in/movie.mp4",
                               output=f"s3://{bucket}/a", force=True, storage=s3opts),
                    _keys())
    assert store.exists(S3Url(bucket, "a/in/movie.mp4"))


@pytest.mark.parametrize("kind", ["dash-number", "hls-fmp4-byterange"])
def test_s3_package_input_gives_the_same_bytes_as_the_local_package(
        store: ObjectStore, s3opts: S3Options, bucket: str, proxy: S3Proxy,
        media: Callable[[str], Path], tmp_path: Path, kind: str) -> None:
    """The same clear package, once from local files and once from object storage (forked
    workers reading the fetched cache): byte-identical outputs with a fixed IV source."""
    pkg = make_package(kind, media("h264-aac-mp4"), tmp_path / "clear")
    _upload_folder(store, pkg.parent, S3Url(bucket, f"clear/{kind}/"))
    proxy.state.log.clear()

    def run(src: str | Path, out: Path) -> None:
        encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CBCS, jobs=2, iv=IV,
                               key_uri=KEY_URI, iv_source=lambda n: b"\x07" * n,
                               storage=s3opts), _keys())

    run(pkg, tmp_path / "from-local")
    run(f"s3://{bucket}/clear/{kind}/{pkg.name}", tmp_path / "from-s3")
    a = local_files(tmp_path / "from-local")
    assert a == local_files(tmp_path / "from-s3") and len(a) >= 2
    for rel in a:
        assert (tmp_path / "from-local" / rel).read_bytes() == \
            (tmp_path / "from-s3" / rel).read_bytes(), rel
    media_files = [r for r in a if not r.endswith((".m3u8", ".mpd"))]
    assert media_files and all(  # encrypted, not copied
        (tmp_path / "from-s3" / r).read_bytes() != (pkg.parent / r).read_bytes()
        for r in media_files)
    # read with ranged GETs only, nothing written to the store
    assert proxy.state.writes() == []
    assert all(r.method in ("GET", "HEAD") for r in proxy.state.log)


def test_sigterm_during_the_upload_removes_the_objects_of_the_run(
        store: ObjectStore, proxy: S3Proxy, bucket: str, clear_src: Path) -> None:
    import signal
    import time

    proxy.state.delay = ("PUT", "/out/term/", 0.4)  # a slow upload, to be interrupted
    proc = subprocess.Popen(
        [sys.executable, "-m", "speke_packager", "encrypt-vod", str(clear_src), "-o",
         f"s3://{bucket}/out/term", "--format", "hls", "--segment-duration", "1", "--key",
         KEYSPEC, "--key-uri", KEY_URI, "--endpoint-url", proxy.url, "--jobs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len([w for w in proxy.state.writes() if "/out/term/" in w]) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated" in err
    assert list(store.list_objects(S3Url(bucket, "out/term/"))) == []
    # the signal may land before or after the manifest stage began (the test only knows that
    # two objects went up): whichever, no segment was put after a manifest, and nothing stays
    writes = [w for w in proxy.state.writes() if "/out/term/" in w]
    first = next((i for i, w in enumerate(writes) if w.endswith((".m3u8", ".mpd"))),
                 len(writes))
    assert not any(w.endswith((".ts", ".m4s", ".mp4")) for w in writes[first:])


def test_segments_go_up_during_encryption_and_a_late_failure_removes_them(
        store: ObjectStore, s3opts: S3Options, proxy: S3Proxy, bucket: str,
        clear_src: Path) -> None:
    """Finished segments are uploaded while the others are still encrypted; an error after
    that (here: raised by the progress callback once a segment is up) removes them again."""
    import time

    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done == 3:
            deadline = time.monotonic() + 30
            while not [w for w in proxy.state.writes() if "/out/early/" in w]:
                assert time.monotonic() < deadline, "no segment was uploaded during encryption"
                time.sleep(0.02)
            raise RuntimeError("stopped by the test")

    with pytest.raises(RuntimeError, match="stopped by the test"):
        encrypt_vod(VodOptions(input=clear_src, output=f"s3://{bucket}/out/early",
                               scheme=Scheme.CBCS, format=OutputFormat.HLS, jobs=1,
                               key_uri=KEY_URI, segment_duration=1, progress=progress,
                               storage=s3opts), _keys())
    assert seen[-1] == 3
    early = [w for w in proxy.state.writes() if "/out/early/" in w]
    assert early and not any(w.endswith(".m3u8") for w in early)
    assert list(store.list_objects(S3Url(bucket, "out/early/"))) == []


def test_slow_uploads_still_running_when_the_local_build_completes(
        store: ObjectStore, s3opts: S3Options, proxy: S3Proxy, bucket: str,
        clear_src: Path, tmp_path: Path) -> None:
    """Segments uploaded during encryption may still be in flight when the local folder is
    complete (and renamed): they finish, nothing is sent twice, the package is whole."""
    proxy.state.delay = ("PUT", "/out/slow/", 0.25)
    out = f"s3://{bucket}/out/slow"
    encrypt_vod(VodOptions(input=clear_src, output=out, scheme=Scheme.CENC,
                           format=OutputFormat.DASH, jobs=2, segment_duration=1,
                           storage=s3opts), _keys())
    writes = [w for w in proxy.state.writes() if "/out/slow/" in w]
    assert len(writes) == len(set(writes)) >= 8
    assert writes[-1].endswith("manifest.mpd")
    local = tmp_path / "dl"
    download_tree(store, S3Url.parse(out), local)
    track = concat(tmp_path / "v.mp4", [local / "0" / "init.mp4",
                                        *sorted((local / "0").glob("segment_*.m4s"))])
    assert frames(track, "v:0", key=KEY) == frames(clear_src, "v:0")


def test_options_are_checked_before_the_input_is_downloaded(
        store: ObjectStore, s3opts: S3Options, proxy: S3Proxy, bucket: str,
        clear_src: Path) -> None:
    from speke_packager.errors import UnsupportedMediaError, UsageError

    upload_file(store, clear_src, S3Url(bucket, "in/movie.mp4"))
    proxy.state.log.clear()
    base = VodOptions(input=f"s3://{bucket}/in/movie.mp4", output=f"s3://{bucket}/out/chk",
                      storage=s3opts)
    import dataclasses

    with pytest.raises(UsageError, match="segment-duration"):
        encrypt_vod(dataclasses.replace(base, segment_duration=0), _keys())
    with pytest.raises(UnsupportedMediaError, match="DASH needs cenc or cbcs"):
        encrypt_vod(dataclasses.replace(base, scheme=Scheme.AES_128,
                                        format=OutputFormat.DASH), _keys())
    assert {r.method for r in proxy.state.log} == {"HEAD"}  # no byte of the input was read


def test_files_of_the_before_publish_hook_go_up_last(store: ObjectStore, s3opts: S3Options,
                                                     bucket: str, proxy: S3Proxy,
                                                     clear_src: Path) -> None:
    """What ``before_publish`` writes into the finished local folder (encrypt-batch's
    completion manifest) is stored after every segment and manifest."""
    seen: list[list[str]] = []

    def hook(folder: Path) -> None:
        seen.append(local_files(folder))
        (folder / "zz-last.json").write_text("{}")
        (folder / ".a-marker.json").write_text("{}")  # sorts before everything

    proxy.state.log.clear()
    out = f"s3://{bucket}/out/hooked"
    encrypt_vod(VodOptions(input=str(clear_src), output=out, scheme=Scheme.CBCS,
                           format=OutputFormat.BOTH, segment_duration=2, storage=s3opts,
                           key_uri=KEY_URI, before_publish=hook), _keys())
    prefix = f"/{bucket}/out/hooked/"
    mine = [w[len(prefix):] for w in proxy.state.writes() if w.startswith(prefix)]
    assert sorted(mine[-2:]) == [".a-marker.json", "zz-last.json"], mine
    assert sorted(mine[:-2]) == sorted(seen[0])  # everything else before, each once
    assert mine[-3] in ("master.m3u8", "manifest.mpd")
    # a failing hook publishes nothing
    proxy.state.log.clear()

    def broken(folder: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        encrypt_vod(VodOptions(input=str(clear_src), output=f"s3://{bucket}/out/broken",
                               scheme=Scheme.CBCS, format=OutputFormat.DASH, segment_duration=2,
                               storage=s3opts, before_publish=broken), _keys())
    assert not store.any_under(S3Url(bucket, "out/broken/"))
