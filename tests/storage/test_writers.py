"""The live writer interface: local folder and s3:// prefix behave alike (atomic per file)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from speke_packager.errors import UnsafeInputError
from speke_packager.storage import (
    LocalWriter,
    ObjectStore,
    ObjectWriter,
    PackageWriter,
    RangedReader,
    S3Options,
    S3Url,
    open_writer,
)

from .s3proxy import S3Proxy


def test_object_writer_writes_replaces_and_deletes(s3opts: S3Options, store: ObjectStore,
                                                   bucket: str, proxy: S3Proxy) -> None:
    w = open_writer(f"s3://{bucket}/live/ch1", s3opts)
    assert isinstance(w, ObjectWriter) and isinstance(w, PackageWriter)
    w.write("video/seg_1.m4s", b"a" * 100)
    w.write("index.m3u8", b"#EXTM3U\n")
    w.write("index.m3u8", b"#EXTM3U\n#v2\n")
    big = hashlib.shake_256(b"big").digest(11 << 20)  # above the part size: multipart
    w.write("video/big.m4s", big)
    with RangedReader(store, S3Url(bucket, "live/ch1/video/big.m4s")) as r:
        assert r.read() == big
    assert store.get_range(S3Url(bucket, "live/ch1/index.m3u8"), 0, 100) == b"#EXTM3U\n#v2\n"
    head = store.client.head_object(Bucket=bucket, Key="live/ch1/index.m3u8")
    assert head["ContentType"] == "application/vnd.apple.mpegurl"
    w.delete("video/seg_1.m4s")
    w.delete("video/never-written.m4s")  # no error
    keys = sorted(u.key for u, _ in store.list_objects(S3Url(bucket, "live/ch1/")))
    assert keys == ["live/ch1/index.m3u8", "live/ch1/video/big.m4s"]
    assert any("partNumber" in r.query for r in proxy.state.log)
    with pytest.raises(UnsafeInputError):
        w.write("../escape.m4s", b"x")


def test_local_writer_is_the_same_interface(tmp_path: Path) -> None:
    w = open_writer(str(tmp_path / "out"))
    assert isinstance(w, LocalWriter) and isinstance(w, PackageWriter)
    w.write("video/seg_1.m4s", b"abc")
    w.write("video/seg_1.m4s", memoryview(b"abcd"))
    assert (tmp_path / "out/video/seg_1.m4s").read_bytes() == b"abcd"
    w.delete("video/seg_1.m4s")
    w.delete("video/seg_1.m4s")
    assert not (tmp_path / "out/video/seg_1.m4s").exists()
    assert [p.name for p in (tmp_path / "out/video").iterdir()] == []  # no temporary left
    with pytest.raises(UnsafeInputError):
        w.write("../x", b"")


def test_object_writer_from_several_threads(s3opts: S3Options, store: ObjectStore,
                                            bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    w = ObjectWriter(S3Url(bucket, "live/mt"), store)
    blobs = {f"r{i % 3}/seg_{i}.m4s": hashlib.sha256(str(i).encode()).digest() * 1000
             for i in range(24)}
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda kv: w.write(*kv), blobs.items()))
    for rel, data in blobs.items():
        assert store.get_range(S3Url(bucket, f"live/mt/{rel}"), 0, len(data) + 1) == data
