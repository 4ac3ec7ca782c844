"""`serve` on a live package: manifests never cached (no ETag/Last-Modified either), media
segments cacheable, files written after the server started served, a rewritten manifest served
new at the next request."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from speke_packager._io import write_text_atomic
from speke_packager.errors import ToolError, UsageError
from speke_packager.verify.serve import PackageServer, cache_control, find_node_modules


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture()
def pkg(tmp_path: Path) -> Path:
    try:
        find_node_modules()
    except ToolError as exc:
        pytest.skip(str(exc))
    d = tmp_path / "live"
    d.mkdir()
    return d


def _playlist(n: int) -> str:
    return "\n".join(["#EXTM3U", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0",
                      *[f"#EXTINF:1.000,\nlive_{i}.m4s" for i in range(n)]]) + "\n"


def test_live_manifests_not_cached_segments_cached(pkg: Path) -> None:
    write_text_atomic(pkg / "live.m3u8", _playlist(1))
    (pkg / "live_0.m4s").write_bytes(b"\0" * 100)
    with PackageServer(pkg) as srv:
        status, headers, body = _get(f"{srv.url}/package/live.m3u8")
        assert status == 200 and body.decode() == _playlist(1)
        cc = headers["Cache-Control"]
        assert "no-store" in cc and "no-cache" in cc
        assert "ETag" not in headers and "Last-Modified" not in headers
        status, headers, _ = _get(f"{srv.url}/package/live_0.m4s")
        assert status == 200 and headers["Cache-Control"] == "public, max-age=60"
        assert "ETag" not in headers and "Last-Modified" not in headers
        # the packager goes on: a new segment and a rewritten playlist, a new MPD
        assert _get(f"{srv.url}/package/live_1.m4s")[0] == 404
        (pkg / "live_1.m4s").write_bytes(b"\1" * 50)
        write_text_atomic(pkg / "live.m3u8", _playlist(2))
        (pkg / "live.mpd").write_text("<MPD/>")
        assert _get(f"{srv.url}/package/live_1.m4s")[2] == b"\1" * 50
        assert _get(f"{srv.url}/package/live.m3u8")[2].decode() == _playlist(2)
        status, headers, _ = _get(f"{srv.url}/package/live.mpd")
        assert status == 200 and "no-store" in headers["Cache-Control"]
        assert "live.mpd" in _get(f"{srv.url}/")[2].decode()  # the index lists it now
        # keys, licences and pages are never cached
        assert _get(f"{srv.url}/player/shaka.html")[1]["Cache-Control"] == "no-store"


def test_segment_max_age_option(pkg: Path) -> None:
    (pkg / "a.ts").write_bytes(b"G" * 188)
    with PackageServer(pkg, segment_max_age=0) as srv:
        assert _get(f"{srv.url}/package/a.ts")[1]["Cache-Control"] == "no-store"
    with pytest.raises(UsageError):
        PackageServer(pkg, segment_max_age=-1)
    assert cache_control("/package/x/Live.M3U8", 60).startswith("no-cache")
    assert cache_control("/keys/00", 60) == "no-store"
    assert cache_control("/package/seg.m4s", 5) == "public, max-age=5"


def test_key_lookup_for_kids_that_arrive_later(pkg: Path) -> None:
    """A live package's new key periods bring new KIDs: `key_lookup` answers them (licence and
    raw-key routes), an unknown KID is still 404."""
    import base64
    import json
    from uuid import UUID

    known = UUID("0123456789abcdef0123456789abcdef")
    key = bytes(range(16))

    def lookup(kid: UUID) -> bytes | None:
        return key if kid == known else None

    with PackageServer(pkg, key_lookup=lookup) as srv:
        status, _, body = _get(f"{srv.url}/keys/{known.hex}")
        assert status == 200 and body == key
        assert _get(f"{srv.url}/keys/{'ab' * 16}")[0] == 404
        kid64 = base64.urlsafe_b64encode(known.bytes).rstrip(b"=").decode()
        req = urllib.request.Request(
            srv.clearkey_license_url, method="POST",
            data=json.dumps({"kids": [kid64], "type": "temporary"}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = json.loads(r.read())
        assert base64.urlsafe_b64decode(answer["keys"][0]["k"] + "==") == key
        (pkg / "live.mpd").write_text("<MPD/>")
        assert "license=%2Fclearkey%2Flicense" in srv.player_url("shaka", "live.mpd")
