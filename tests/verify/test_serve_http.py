"""`serve`'s HTTP side without a browser: CORS, ClearKey licence JSON, raw keys, safe paths."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from speke_packager.errors import ToolError, UsageError
from speke_packager.verify.serve import PackageServer, find_node_modules
from tests.e2e.packages import KEY, KEYS, KID


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@pytest.fixture()
def served(tmp_path: Path) -> PackageServer:
    pkg = tmp_path / "pkg"
    (pkg / "v").mkdir(parents=True)
    (pkg / "manifest.mpd").write_text("<MPD/>")
    (pkg / "v" / "1.m4s").write_bytes(bytes(range(256)))
    (tmp_path / "secret.txt").write_text("outside the package")
    try:
        find_node_modules()
    except ToolError as exc:
        pytest.skip(str(exc))
    return PackageServer(pkg, keys=KEYS)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_licence_and_keys(served: PackageServer) -> None:
    with served as srv:
        body = json.dumps({"kids": [_b64url(KID.bytes)], "type": "temporary"}).encode()
        req = urllib.request.Request(srv.clearkey_license_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            answer = json.loads(r.read())
        assert answer == {"keys": [{"kty": "oct", "kid": _b64url(KID.bytes), "k": _b64url(KEY)}],
                          "type": "temporary"}
        assert "=" not in answer["keys"][0]["k"]  # Chromium rejects padding
        status, headers, raw = _get(srv.key_url(KID))
        assert status == 200 and raw == KEY and headers["Access-Control-Allow-Origin"] == "*"
        other = "ffeeddccbbaa99887766554433221100"
        assert _get(f"{srv.url}/keys/{other}")[0] == 404
        bad = urllib.request.Request(srv.clearkey_license_url, data=b"not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 400
        assert [r["type"] for r in srv.requests] == ["license", "key", "key"]


def test_files_ranges_and_traversal(served: PackageServer) -> None:
    with served as srv:
        status, headers, data = _get(f"{srv.url}/package/v/1.m4s", {"Range": "bytes=10-19"})
        assert status == 206 and data == bytes(range(10, 20))
        assert headers["Content-Range"] == "bytes 10-19/256"
        assert _get(f"{srv.url}/package/manifest.mpd")[1]["Content-Type"] == \
            "application/dash+xml"
        assert _get(f"{srv.url}/package/..%2Fsecret.txt")[0] == 404
        assert _get(f"{srv.url}/package/../secret.txt")[0] == 404
        status, _, js = _get(f"{srv.url}/lib/shaka.js")
        assert status == 200 and len(js) > 100_000
        assert _get(f"{srv.url}/lib/../../etc/passwd.js")[0] == 404
        url = srv.player_url("dashjs")
        assert "manifest=/package/manifest.mpd" in url and "license=" in url
        assert _get(url)[0] == 200


def test_missing_node_modules_is_a_clear_error(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEKE_PACKAGER_NODE_MODULES", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    import speke_packager.verify.serve as serve_mod

    monkeypatch.setattr(serve_mod, "__file__", str(tmp_path / "x" / "serve.py"))
    with pytest.raises(ToolError, match="npm ci"):
        find_node_modules()


def test_unknown_player_and_manifest(served: PackageServer) -> None:
    with served as srv:
        with pytest.raises(UsageError):
            srv.player_url("vlc")
        with pytest.raises(UsageError):
            srv.player_url("shaka", "missing.mpd")
