"""`serve`'s HTTP side without a browser: CORS, ClearKey licence JSON, raw keys, safe paths."""

from __future__ import annotations

import base64
import json
import socket
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
            assert "Access-Control-Allow-Origin" not in r.headers  # never CORS on key routes
            answer = json.loads(r.read())
        assert answer == {"keys": [{"kty": "oct", "kid": _b64url(KID.bytes), "k": _b64url(KEY)}],
                          "type": "temporary"}
        assert "=" not in answer["keys"][0]["k"]  # Chromium rejects padding
        status, headers, raw = _get(srv.key_url(KID))
        assert status == 200 and raw == KEY and "Access-Control-Allow-Origin" not in headers
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


def _raw(srv: PackageServer, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", srv._server.server_address[1]),
                                  timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:100]
    return int(answer.split(b" ", 2)[1])


def test_key_routes_same_origin_and_loopback_host_only(served: PackageServer) -> None:
    """Another web page in the same browser (Origin / Sec-Fetch-Site cross-site) or a DNS
    rebinding name (Host) cannot read keys; the page's own origin and curl can."""
    licence = json.dumps({"kids": [_b64url(KID.bytes)]}).encode()
    with served as srv:
        port = srv._server.server_address[1]
        own = f"http://127.0.0.1:{port}"
        key_url = srv.key_url(KID)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
            assert _get(key_url, {"Host": host})[0] == 200, host
        assert _get(key_url, {"Origin": own, "Sec-Fetch-Site": "same-origin"})[0] == 200
        refused = [
            {"Host": f"evil.example:{port}"},  # DNS rebinding
            {"Host": "127.0.0.1:1"},  # another port
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Origin": own, "Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
        ]
        for headers in refused:
            status, answer_headers, body = _get(key_url, headers)
            assert status == 403, headers
            assert KEY not in body and "Access-Control-Allow-Origin" not in answer_headers
            req = urllib.request.Request(srv.clearkey_license_url, data=licence, method="POST",
                                         headers={"Content-Type": "application/json", **headers})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == 403, headers
        req = urllib.request.Request(srv.clearkey_license_url, data=licence, method="POST",
                                     headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["keys"][0]["k"] == _b64url(KEY)
        # a preflight gets no CORS grant on the key routes (package files keep theirs)
        opt = urllib.request.Request(key_url, method="OPTIONS",
                                     headers={"Origin": "http://evil.example"})
        with urllib.request.urlopen(opt, timeout=10) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        status, headers, _ = _get(f"{srv.url}/package/manifest.mpd",
                                  {"Origin": "http://evil.example"})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"


def test_bound_host_is_allowed(tmp_path: Path) -> None:
    """--host says which other name the key routes answer to (here 127.0.0.2, loopback too)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    with PackageServer(pkg, keys=KEYS, host="127.0.0.2", node_modules=tmp_path) as srv:
        assert srv.url.startswith("http://127.0.0.2:")
        assert _get(srv.key_url(KID))[0] == 200


@pytest.mark.parametrize("path", ["/package/%00", "/package/a%00b.mpd", "/%00",
                                  "/package/%0d%0aSet-Cookie:x", "/package/" + "a" * 5000,
                                  "/package/..%5c..%5csecret.txt", "/player/%00.html",
                                  "/keys/%00", "/package/%ff%fe"])
def test_hostile_paths(served: PackageServer, path: str) -> None:
    with served as srv:
        answer = _raw(srv, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(answer) in (400, 404), answer[:200]
        assert b"Traceback" not in answer
        assert _get(f"{srv.url}/package/manifest.mpd")[0] == 200


@pytest.mark.parametrize(("length", "status"), [
    (None, 411), (b"-1", 400), (b"abc", 400), (b"1e3", 400), (b"+5", 400),
    (b"65537", 413), (b"99999999999999999999999", 413),
])
def test_licence_content_length(served: PackageServer, length: bytes | None,
                                status: int) -> None:
    """Content-Length required, digits only, at most 64 KiB: 411 / 400 / 413, never a read
    to EOF or a traceback (a negative length once read the whole stream into memory)."""
    with served as srv:
        port = srv._server.server_address[1]
        head = f"POST /clearkey/license HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        if length is not None:
            head += b"Content-Length: " + length + b"\r\n"
        answer = _raw(srv, head + b"\r\n" + b"x" * 1000)
        assert _status(answer) == status, answer[:200]
        assert b"Traceback" not in answer


def test_licence_errors_are_json(served: PackageServer) -> None:
    with served as srv:
        for body in (b"not json", b'{"kids": "x"}', b'{"kids": ["\\"]}'):
            req = urllib.request.Request(srv.clearkey_license_url, data=body, method="POST")
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == 400
            assert isinstance(json.loads(err.value.read())["error"], str)
