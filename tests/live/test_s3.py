# ruff: noqa: F811  (the object-storage fixtures are imported by name from tests/storage)
"""LivePackager publishing to object storage: a real S3-compatible server (moto, on 127.0.0.1)
behind the recording / fault-injecting proxy of tests/storage, keys from the local SPEKE server.

The proxy's log is replayed request by request: after every successful PUT or DELETE, each
manifest version then in the bucket names only objects then in the bucket (a segment goes up
before the playlist / MPD that names it, and is deleted only once no manifest names it). The
objects carry the Content-Type and Cache-Control a CDN needs; a period downloaded from the
bucket decrypts (FFmpeg 8) to the clear frames with its key and not with another period's; an
S3 failure beyond botocore's retries is a typed error from add_segment with nothing half
published."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from fixtures.media import framemd5
from speke_packager.constants import NS_MPD, DrmSystem, Scheme
from speke_packager.errors import OutputError, StorageError, StorageWriteError, UsageError
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.pipeline.live import (
    LivePackager,
    LiveRendition,
    LiveWriter,
    SpekeKeySource,
    object_writer,
)
from speke_packager.pipeline.live.writer import live_cache_control, live_content_type
from speke_packager.pipeline.rotation import RotationSchedule
from speke_packager.storage import ObjectStore, S3Options, S3Url
from tests.s3server import aws_env, bucket, moto_server, proxy  # noqa: F401
from tests.storage.s3proxy import Fault, S3Proxy

from .conftest import SEGMENT, Rendition
from .helpers import contract

pytestmark = pytest.mark.interop

M = f"{{{NS_MPD}}}"
DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY, DrmSystem.AES128)
PREFIX = "live/ch1"
MANIFESTS = ("master.m3u8", "video.m3u8", "audio.m3u8", "manifest.mpd")


@pytest.fixture(autouse=True)
def _aws(aws_env: None) -> None:
    """Fake credentials only, no user configuration (as in tests/storage)."""


def _source(ks: KeyServer, cid: str) -> SpekeKeySource:
    return SpekeKeySource(SpekeClient(ks.speke_url, retries=0),
                          contract(cid, Scheme.CBCS, DRMS))


def _renditions(media: dict[str, Rendition], names: tuple[str, ...]) -> list[LiveRendition]:
    return [LiveRendition(n, media[n].init.read_bytes())  # type: ignore[union-attr]
            for n in names]


def _named(rel: str, body: bytes) -> set[str]:
    """The package paths a manifest version names (segments, inits, media playlists)."""
    if rel.endswith(".m3u8"):
        out = set()
        for ln in body.decode().splitlines():
            if ln.startswith(("#EXT-X-MAP:", "#EXT-X-MEDIA:")):
                out.add(ln.split('URI="', 1)[1].split('"', 1)[0])
            elif ln and not ln.startswith("#"):
                out.add(ln)
        return out
    mpd = etree.fromstring(body)
    out = set()
    for st in mpd.iter(f"{M}SegmentTemplate"):
        out.add(st.get("initialization"))
        number = int(st.get("startNumber", "1"))
        for s in st.findall(f"{M}SegmentTimeline/{M}S"):
            for _ in range(int(s.get("r", "0")) + 1):
                out.add(st.get("media").replace("$Number$", str(number)))
                number += 1
    return out


def _replay(proxy: S3Proxy, bucket: str) -> tuple[set[str], dict[str, bytes], list[str]]:
    """Walk the proxy's log of successful PUTs and DELETEs in order; after each, every manifest
    in the bucket names only objects in the bucket. Returns the objects present at the end,
    the manifests' last versions and the order of writes."""
    base = f"/{bucket}/{PREFIX}/"
    present: set[str] = set()
    manifests: dict[str, bytes] = {}
    order: list[str] = []
    for r in proxy.state.log:
        if not r.key.startswith(base) or r.status not in (200, 204) or r.query:
            continue
        rel = r.key[len(base):]
        if r.method == "PUT":
            present.add(rel)
            order.append(rel)
            if rel in MANIFESTS:
                manifests[rel] = r.body
        elif r.method == "DELETE":
            present.discard(rel)
            order.append(f"-{rel}")
        else:
            continue
        for name, body in manifests.items():
            missing = _named(name, body) - present
            assert not missing, f"after {r.method} {rel}: {name} names {sorted(missing)}"
    return present, manifests, order


def _bucket_keys(store: ObjectStore, bucket: str) -> set[str]:
    return {u.key[len(PREFIX) + 1:] for u, _ in store.list_objects(S3Url(bucket, PREFIX + "/"))}


def _get(store: ObjectStore, bucket: str, rel: str) -> bytes:
    return store.get_range(S3Url(bucket, f"{PREFIX}/{rel}"), 0, 1 << 30)


def test_live_cbcs_hls_and_dash_to_s3(ks: KeyServer, live_media: dict[str, Rendition],
                                      proxy: S3Proxy, bucket: str, tmp_path: Path,
                                      check_mpd: Callable[[Any], None]) -> None:
    opts = S3Options(endpoint_url=proxy.url)
    store = ObjectStore(opts)
    pk = LivePackager(_source(ks, "s3-live"), RotationSchedule(interval=4.0, lead=2.0),
                      Scheme.CBCS, f"s3://{bucket}/{PREFIX}",
                      _renditions(live_media, ("video", "audio")), storage=opts,
                      clearkey_license_url=ks.clearkey_license_url, window=2, retain=1)
    assert isinstance(pk.writer, LiveWriter) and "s3://" in repr(pk)
    pub: dict[str, list[Any]] = {"video": [], "audio": []}
    for i in range(6):
        for name in ("video", "audio"):
            pub[name].append(pk.add_segment(name, live_media[name].data(i),
                                            start_time=i * SEGMENT, duration=SEGMENT))
        if i == 3:  # mid-stream: a live, dynamic MPD in the bucket
            live_mpd = etree.fromstring(_get(store, bucket, "manifest.mpd"))
            check_mpd(live_mpd)
            assert live_mpd.get("type") == "dynamic"
    pk.close()

    present, manifests, order = _replay(proxy, bucket)
    assert present == _bucket_keys(store, bucket)
    for name in ("video", "audio"):
        # each period's init before its first segment (and, by the replay above, every
        # segment before the first manifest version naming it)
        for s in pub[name]:
            assert order.index(s.init_uri) < order.index(s.uri)
        # the sliding window (2 segments, 1 retained): 0..2 and the period-0 init are deleted
        assert {f"-{name}/{i}.m4s" for i in range(3)} | {f"-{name}/init-0.mp4"} <= set(order)
        assert {f"{name}/{i}.m4s" for i in range(3)}.isdisjoint(present)
        assert {f"{name}/{i}.m4s" for i in (3, 4, 5)} | {f"{name}/init-2.mp4"} <= present
        text = _get(store, bucket, f"{name}.m3u8").decode()
        assert text == manifests[f"{name}.m3u8"].decode()
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
        assert [ln for ln in text.splitlines() if ln and not ln.startswith("#")] == \
            [f"{name}/4.m4s", f"{name}/5.m4s"]
    mpd = etree.fromstring(_get(store, bucket, "manifest.mpd"))
    check_mpd(mpd)
    assert mpd.get("type") == "static" and mpd.get("mediaPresentationDuration")
    assert [p.get("id") for p in mpd.findall(f"{M}Period")] == ["p2"]

    # headers a CDN and a player go by
    for rel in sorted(present):
        head = store.client.head_object(Bucket=bucket, Key=f"{PREFIX}/{rel}")
        want = {".m3u8": ("application/vnd.apple.mpegurl", "max-age=1"),
                ".mpd": ("application/dash+xml", "max-age=1")}.get(
            Path(rel).suffix, (f"{rel.split('/')[0]}/mp4", "max-age=86400"))
        assert (head["ContentType"], head.get("CacheControl")) == want, rel

    # period 2 from the bucket: FFmpeg gives the clear frames with its key, not with period 1's
    for name, stream in (("video", "v:0"), ("audio", "a:0")):
        segs = pub[name]
        assert [s.period for s in segs] == [0, 0, 1, 1, 2, 2]
        enc = tmp_path / f"{name}-p2.mp4"
        enc.write_bytes(b"".join(_get(store, bucket, rel) for rel in
                                 (f"{name}/init-2.mp4", segs[4].uri, segs[5].uri)))
        clear = tmp_path / f"{name}-p2-clear.mp4"
        r = live_media[name]
        clear.write_bytes(r.init.read_bytes() + r.data(4) + r.data(5))  # type: ignore[union-attr]
        ref = framemd5(clear, stream)
        assert len(ref) > 50
        assert framemd5(enc, stream, keys=ks.key_for("s3-live", segs[4].kid)) == ref
        wrong = ks.key_for("s3-live", segs[2].kid)
        try:
            bad = framemd5(enc, stream, keys=wrong)
        except RuntimeError:
            bad = []
        assert bad != ref


def test_s3_failures_mid_stream(ks: KeyServer, live_media: dict[str, Rendition],
                                proxy: S3Proxy, bucket: str) -> None:
    """A segment PUT failing beyond the retries: StorageWriteError (an OutputError) from
    add_segment, that segment absent and named nowhere, and the same segment can be given again.
    An MPD PUT failing: the error too, the segment is up and the older MPD names only what is
    up. A failed delete does not fail the segment; it is done after the next one."""
    opts = S3Options(endpoint_url=proxy.url, max_attempts=3)
    store = ObjectStore(opts)
    video = live_media["video"]
    pk = LivePackager(_source(ks, "s3-fail"), RotationSchedule(interval=4.0, lead=2.0),
                      Scheme.CBCS, f"s3://{bucket}/{PREFIX}", _renditions(live_media, ("video",)),
                      storage=opts, window=2, retain=1)

    def add(i: int) -> Any:
        return pk.add_segment("video", video.data(i), start_time=i * SEGMENT, duration=SEGMENT)

    for i in range(3):
        add(i)
    proxy.state.faults.append(Fault("PUT", "video/3.m4s", 503, "SlowDown", times=3))
    with pytest.raises(StorageWriteError) as err:
        add(3)
    assert isinstance(err.value, OutputError) and isinstance(err.value, StorageError)
    assert err.value.code == "SlowDown" and "video/3.m4s" in str(err.value)
    assert sum(r.key.endswith("video/3.m4s") for r in proxy.state.log) == 3  # retried, gave up
    assert "video/3.m4s" not in _bucket_keys(store, bucket)
    assert b"video/3.m4s" not in _get(store, bucket, "video.m3u8")
    _replay(proxy, bucket)

    # the same segment again, with a delete of an old one failing: published all the same
    proxy.state.faults.append(Fault("DELETE", "video/0.m4s", 503, "SlowDown", times=3))
    assert add(3).uri == "video/3.m4s"
    keys = _bucket_keys(store, bucket)
    assert {"video/0.m4s", "video/3.m4s"} <= keys  # 0 could not be deleted yet

    # the MPD cannot be written: an error, the segment is up, the older MPD stays consistent
    proxy.state.faults.append(Fault("PUT", "manifest.mpd", 500, "InternalError", times=3))
    with pytest.raises(StorageWriteError):
        add(4)
    assert "video/4.m4s" in _bucket_keys(store, bucket)
    assert b"video/4.m4s" not in _get(store, bucket, "manifest.mpd")
    _replay(proxy, bucket)

    add(5)  # the next segment brings the MPD up to date and does the deletes left over
    present, manifests, _order = _replay(proxy, bucket)
    assert present == _bucket_keys(store, bucket)
    assert {"video/0.m4s", "video/1.m4s", "video/2.m4s"}.isdisjoint(present)
    assert _named("manifest.mpd", manifests["manifest.mpd"]) >= {"video/4.m4s", "video/5.m4s"}
    pk.close()
    assert _get(store, bucket, "video.m3u8").rstrip().endswith(b"#EXT-X-ENDLIST")


def test_object_writer_headers_and_errors(proxy: S3Proxy, bucket: str) -> None:
    """object_writer on its own: types per extension and rendition kind (MPEG-TS included),
    a missing bucket is the writer contract's error type, storage options need s3://."""
    opts = S3Options(endpoint_url=proxy.url, max_attempts=1)
    ctype = live_content_type(["audio"])
    assert [ctype(p) for p in ("video/1.m4s", "audio/init-0.mp4", "ts/1.ts", "a.m3u8",
                               "manifest.mpd")] == [
        "video/mp4", "audio/mp4", "video/mp2t", "application/vnd.apple.mpegurl",
        "application/dash+xml"]
    assert live_cache_control("x/1.ts") == "max-age=86400"
    assert live_cache_control("x.m3u8", manifests="no-cache") == "no-cache"
    w = object_writer(f"s3://{bucket}/{PREFIX}", opts, media_cache=None)
    w.write("ts/1.ts", b"\x47" * 188)
    head = ObjectStore(opts).client.head_object(Bucket=bucket, Key=f"{PREFIX}/ts/1.ts")
    assert head["ContentType"] == "video/mp2t" and "CacheControl" not in head
    with pytest.raises(StorageWriteError) as err:
        object_writer(f"s3://{bucket}-missing/x", opts).write("a.m3u8", b"#EXTM3U\n")
    assert isinstance(err.value, OutputError) and "does not exist" in str(err.value)
    with pytest.raises(UsageError):
        LivePackager(None, RotationSchedule(interval=4.0), Scheme.CBCS,  # type: ignore[arg-type]
                     "out", [LiveRendition("v", b"")], storage=opts)


def test_two_renditions_from_two_threads_to_s3(ks: KeyServer, live_media: dict[str, Rendition],
                                               proxy: S3Proxy, bucket: str,
                                               check_mpd: Callable[[Any], None]) -> None:
    """Video and audio handed over from two threads at once over one shared botocore client:
    the replayed log still never shows a manifest naming a missing object, and every
    segment is in the bucket and in both manifests at the end."""
    import threading

    opts = S3Options(endpoint_url=proxy.url)
    errors: list[BaseException] = []
    with LivePackager(_source(ks, "s3-thr"), RotationSchedule(interval=4.0, lead=2.0),
                      Scheme.CBCS, f"s3://{bucket}/{PREFIX}",
                      _renditions(live_media, ("video", "audio")), storage=opts,
                      window=100) as pk:
        def feed(name: str) -> None:
            try:
                for i in range(6):
                    pk.add_segment(name, live_media[name].data(i), start_time=i * SEGMENT,
                                   duration=SEGMENT)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=feed, args=(n,)) for n in ("video", "audio")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    present, manifests, _order = _replay(proxy, bucket)
    assert present == _bucket_keys(ObjectStore(opts), bucket)
    check_mpd(etree.fromstring(manifests["manifest.mpd"]))
    for name in ("video", "audio"):
        segs = {f"{name}/{i}.m4s" for i in range(6)}
        assert segs <= present
        assert segs <= _named(f"{name}.m3u8", manifests[f"{name}.m3u8"])
        assert segs <= _named("manifest.mpd", manifests["manifest.mpd"])
