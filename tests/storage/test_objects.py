"""The storage layer against a real S3-compatible server (moto, on 127.0.0.1): ranged reads,
multipart writes, retries on throttling, errors, the credential and endpoint chain."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path

import pytest

from speke_packager.errors import ObjectNotFoundError, StorageError, UsageError
from speke_packager.storage import (
    MultipartWriter,
    ObjectStore,
    RangedReader,
    S3Options,
    S3Url,
    download_file,
    upload_file,
)

from .s3proxy import Fault, S3Proxy

MiB = 1 << 20


def _blob(n: int, seed: int = 1) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(n)


def test_ranged_reads_of_50_mb_in_chunks_with_bounded_memory(store: ObjectStore, bucket: str,
                                                             tmp_path: Path) -> None:
    data = _blob(50 * MiB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    url = S3Url(bucket, "media/big.bin")
    upload_file(store, src, url)
    del data
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        with RangedReader(store, url, read_ahead=2 * MiB) as r:
            assert r.size == 50 * MiB
            h = hashlib.sha256()
            while chunk := r.read(256 * 1024):
                h.update(chunk)
            _, peak = tracemalloc.get_traced_memory()
            requests = r.requests
    finally:
        tracemalloc.stop()
    assert h.hexdigest() == digest
    assert requests == 25  # one GET per 2 MiB window, nothing read twice
    assert peak < 8 * MiB, f"peak {peak} bytes for a 2 MiB window"


def test_reader_seeks_like_a_file(store: ObjectStore, bucket: str) -> None:
    data = _blob(3 * MiB + 17, seed=2)
    url = S3Url(bucket, "x/seek.bin")
    store.put(url, data)
    ref = io.BytesIO(data)
    with RangedReader(store, url, read_ahead=256 * 1024) as r:
        for pos, whence, n in [(0, 0, 10), (MiB, 0, 300_000), (-5, 2, 100), (123, 0, 1),
                               (-100, 1, 50), (2 * MiB, 0, MiB + 17), (0, 2, 5)]:
            assert r.seek(pos, whence) == ref.seek(pos, whence)
            assert r.read(n) == ref.read(n)
            assert r.tell() == ref.tell()
        r.seek(0)
        assert r.read() == data


def test_reader_refuses_an_object_replaced_while_read(store: ObjectStore, bucket: str) -> None:
    url = S3Url(bucket, "x/changing.bin")
    store.put(url, _blob(MiB, seed=3))
    with RangedReader(store, url, read_ahead=64 * 1024) as r:
        r.read(10)
        store.put(url, _blob(MiB, seed=4))
        r.seek(512 * 1024)
        with pytest.raises(StorageError, match="changed while it was read"):
            r.read(10)


@pytest.mark.parametrize("size", [0, 1000, 5 * MiB, 12 * MiB + 3])
def test_multipart_writer_is_byte_exact(store: ObjectStore, bucket: str, proxy: S3Proxy,
                                        size: int) -> None:
    data = _blob(size, seed=5)
    url = S3Url(bucket, f"out/obj-{size}")
    with MultipartWriter(store, url) as w:
        for i in range(0, size, 777_777):  # odd write sizes across part boundaries
            w.write(data[i:i + 777_777])
    with RangedReader(store, url) as r:
        assert r.read() == data
    parts = [x for x in proxy.state.log if "partNumber" in x.query and x.method == "PUT"]
    assert len(parts) == (0 if size <= 5 * MiB else -(-size // (5 * MiB)))


def test_multipart_writer_aborts_on_error(store: ObjectStore, bucket: str) -> None:
    url = S3Url(bucket, "out/aborted")
    with pytest.raises(RuntimeError), MultipartWriter(store, url) as w:
        w.write(_blob(11 * MiB, seed=6))  # two parts already sent
        raise RuntimeError("the producer failed")
    assert not store.exists(url)
    uploads = store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []


def test_an_abandoned_writer_publishes_nothing(store: ObjectStore, bucket: str) -> None:
    import gc

    w = MultipartWriter(store, S3Url(bucket, "out/abandoned"))
    w.write(b"half an object")
    del w
    gc.collect()
    assert not store.exists(S3Url(bucket, "out/abandoned"))


def test_upload_and_download_file_with_parallel_parts(store: ObjectStore, bucket: str,
                                                      tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(_blob(17 * MiB + 5, seed=7))
    url = S3Url(bucket, "files/in.bin")
    assert upload_file(store, src, url) == src.stat().st_size
    dst = tmp_path / "sub" / "out.bin"
    assert download_file(store, url, dst) == src.stat().st_size
    assert dst.read_bytes() == src.read_bytes()


def test_throttling_is_retried_with_backoff(store: ObjectStore, bucket: str,
                                            proxy: S3Proxy) -> None:
    url = S3Url(bucket, "slow/obj")
    proxy.state.faults.append(Fault("PUT", "slow/obj", 503, "SlowDown", times=2))
    store.put(url, b"payload")
    puts = [r.status for r in proxy.state.log if r.method == "PUT" and r.key.endswith("obj")]
    assert puts == [503, 503, 200]
    proxy.state.faults.append(Fault("GET", "slow/obj", 503, "SlowDown", times=1))
    assert store.get_range(url, 0, 7) == b"payload"


def test_throttling_beyond_the_attempts_is_one_typed_error(proxy: S3Proxy, bucket: str) -> None:
    store = ObjectStore(S3Options(endpoint_url=proxy.url, max_attempts=2))
    proxy.state.faults.append(Fault("PUT", "never/obj", 503, "SlowDown", times=5))
    with pytest.raises(StorageError) as info:
        store.put(S3Url(bucket, "never/obj"), b"x")
    assert info.value.code == "SlowDown"
    assert "\n" not in str(info.value) and f"s3://{bucket}/never/obj" in str(info.value)
    assert sum(r.status == 503 for r in proxy.state.log) == 2


def test_missing_object_and_bucket_are_typed(store: ObjectStore, bucket: str) -> None:
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        store.head(S3Url(bucket, "nope"))
    with pytest.raises(ObjectNotFoundError, match="bucket does not exist"):
        store.get_range(S3Url("no-such-bucket-xyz", "k"), 0, 10)
    assert not store.exists(S3Url(bucket, "nope"))


def test_endpoint_and_credentials_come_from_the_environment(
        proxy: S3Proxy, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMTHEENV")
    store = ObjectStore()  # no options: botocore's chain only
    store.put(S3Url(bucket, "env/obj"), b"abc")
    assert store.get_range(S3Url(bucket, "env/obj"), 0, 3) == b"abc"
    assert [r.access_key for r in proxy.state.log] == ["AKIDFROMTHEENV"] * 2
    # the option wins over the variable
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    ObjectStore(S3Options(endpoint_url=proxy.url)).head(S3Url(bucket, "env/obj"))
    assert len(proxy.state.log) == 3


def test_a_profile_gives_endpoint_credentials_and_region(
        proxy: S3Proxy, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(f"[profile minio]\nregion = eu-west-3\nendpoint_url = {proxy.url}\n")
    creds = tmp_path / "credentials"
    creds.write_text("[minio]\naws_access_key_id = AKIDFROMPROFILE\n"
                     "aws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_REGION")
    store = ObjectStore(S3Options(profile="minio"))
    store.put(S3Url(bucket, "prof/obj"), b"abc")
    assert [r.access_key for r in proxy.state.log] == ["AKIDFROMPROFILE"]
    assert store.client.meta.region_name == "eu-west-3"
    with pytest.raises(StorageError, match="AWS configuration"):
        ObjectStore(S3Options(profile="no-such-profile")).head(S3Url(bucket, "prof/obj"))


def test_no_credentials_is_one_line(moto_server: str, bucket: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no AWS credentials") as info:
        ObjectStore(S3Options(endpoint_url=moto_server)).head(S3Url(bucket, "k"))
    assert "testing" not in str(info.value)


def test_unreachable_endpoint(bucket: str) -> None:
    store = ObjectStore(S3Options(endpoint_url="http://127.0.0.1:9", max_attempts=1))
    with pytest.raises(StorageError, match="cannot connect"):
        store.head(S3Url(bucket, "k"))


def test_options_are_checked() -> None:
    with pytest.raises(UsageError):
        S3Options(part_size=MiB)
    with pytest.raises(UsageError):
        S3Options(endpoint_url="ftp://x")
    with pytest.raises(UsageError):
        S3Options(retry_mode="eager")
    with pytest.raises(UsageError):
        S3Url.parse("s3:///key")
    assert S3Url.parse("s3://bkt/a/b/c.m3u8").parent == S3Url("bkt", "a/b/")
    assert S3Url.parse("s3://bkt/a").join("x/../y") == S3Url("bkt", "a/y")


def test_store_pickles_as_its_options_only(store: ObjectStore, bucket: str) -> None:
    import pickle

    store.put(S3Url(bucket, "p/k"), b"v")  # a client exists now
    blob = pickle.dumps(store)
    assert b"testing" not in blob  # no credential travels
    again = pickle.loads(blob)
    assert again.options == store.options
    assert again.get_range(S3Url(bucket, "p/k"), 0, 1) == b"v"


def test_missing_botocore_names_the_extra(tmp_path: Path) -> None:
    """Without botocore importable, the first s3:// use is one line naming the extra."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['botocore'] = None\n"
            "from speke_packager.cli import main\n"
            "sys.exit(main(['verify', 's3://bucket/pkg/', '--reference', 'x.mp4']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, check=False, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert r.returncode == UsageError.exit_code, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "pip install 'speke-packager[s3]'" in r.stderr
