"""``serve``: a package, a local key server and browser player pages on one loopback origin.

Routes:

- ``/package/<path>``            the package files (byte ranges supported; CORS ``*``)
- ``POST /clearkey/license``     W3C ClearKey licence for the keys given (EME JSON)
- ``GET /keys/<kid-hex>``        the raw 16-byte key (HLS AES-128 / SAMPLE-AES / identity)
- ``/player/<shaka|hlsjs|dashjs>.html?manifest=...``  player pages (``verify/static``)
- ``/lib/<player>.js``           the player from ``node_modules`` (never a CDN)

The two key routes answer only same-origin requests (``Origin`` and ``Sec-Fetch-Site`` when the
browser sends them) whose ``Host`` is a loopback name or the ``host`` the server was bound to,
with the server's port, and never send CORS headers: a page of another origin open in the same
browser, or a DNS-rebound name, gets 403. Limits (connections, request deadline, bodies) are
those of :mod:`speke_packager._httpd`; a licence request body is at most 64 KiB.

:func:`check_playback` opens a player page in headless Chromium (playwright driving the system
Chromium) and reports decoded frames, current time, errors and key-system events.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import mimetypes
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit
from uuid import UUID

from .._httpd import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    BoundedHandler,
    BoundedHTTPServer,
)
from ..errors import OutputError, ToolError, UsageError
from ..keyserver.clearkey import key_route_kid, license_response, parse_license_request
from ..keyserver.request import SpekeRequestError

log = logging.getLogger("speke_packager.serve")

STATIC = Path(__file__).resolve().parent / "static"
PLAYERS: Mapping[str, str] = {
    "shaka": "shaka-player/dist/shaka-player.compiled.js",
    "hlsjs": "hls.js/dist/hls.min.js",
    "dashjs": "dashjs/dist/dash.all.min.js",
}
NODE_MODULES_ENV = "SPEKE_PACKAGER_NODE_MODULES"
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)
_MIME = {".mpd": "application/dash+xml", ".m3u8": "application/vnd.apple.mpegurl",
         ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".ts": "video/mp2t",
         ".js": "text/javascript", ".html": "text/html; charset=utf-8",
         ".aac": "audio/aac", ".m4a": "audio/mp4", ".key": "application/octet-stream",
         ".bin": "application/octet-stream"}


def find_node_modules() -> Path:
    """The ``node_modules`` folder holding the players: ``$SPEKE_PACKAGER_NODE_MODULES``, else
    the nearest one above the package or the current folder. :class:`ToolError` if missing."""
    env = os.environ.get(NODE_MODULES_ENV)
    candidates = [Path(env)] if env else []
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        candidates.extend(p / "node_modules" for p in [start, *start.parents])
    for c in candidates:
        if all((c / rel).is_file() for rel in PLAYERS.values()):
            return c
    raise ToolError("the npm players (shaka-player, hls.js, dashjs) were not found: set "
                    f"{NODE_MODULES_ENV} to a node_modules folder holding them "
                    "(npm install shaka-player hls.js dashjs), or run `npm ci` (make node) in a "
                    "source checkout")


_KEY_ROUTES = ("/keys/", "/clearkey/license")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD = ("", "0.0.0.0", "::")  # noqa: S104 (names, not a bind)
MAX_LICENCE_BODY = 64 << 10


_MANIFESTS = (".m3u8", ".mpd")
_SEGMENTS = (".m4s", ".mp4", ".ts", ".aac", ".m4a", ".m4v", ".cmfv", ".cmfa", ".vtt", ".webvtt")


def cache_control(path: str, segment_max_age: int) -> str:
    """The ``Cache-Control`` of a response: manifests are never cached (a live playlist or MPD
    changes at every segment: ``no-cache, no-store``), package media segments may be cached
    ``segment_max_age`` seconds (their names are not reused within a live run; 0: not cached),
    everything else (keys, licences, pages) is ``no-store``. No ``ETag`` or ``Last-Modified``
    is ever sent, so no conditional request can answer an old manifest."""
    low = path.lower()
    if low.startswith("/package/"):
        if low.endswith(_MANIFESTS):
            return "no-cache, no-store, must-revalidate, max-age=0"
        if low.endswith(_SEGMENTS) and segment_max_age > 0:
            return f"public, max-age={segment_max_age}"
    return "no-store"


def _hostile(path: str) -> bool:
    """NUL, control characters or backslashes in a decoded path: refused before any lookup."""
    return any(ord(c) < 0x20 or c in "\x7f\\" for c in path)


class _Handler(BoundedHandler):
    server: _Server
    server_version = "speke-packager-serve"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: paths may carry KIDs, never keys, but keep stderr for the JSON report

    def _cors(self, path: str) -> None:
        """CORS for the package and player files only; never on the key routes (a page of
        another origin must not read keys). Caching: see :func:`cache_control`."""
        if not path.startswith(_KEY_ROUTES):
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Headers", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range")
        self.send_header("Cache-Control", cache_control(path, self.server.segment_max_age))

    def _path(self) -> str:
        return unquote(urlsplit(self.path).path)

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self._cors(self._path())
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: object) -> None:
        self._send(status, json.dumps(doc).encode("utf-8"), "application/json")

    def answer_error(self, status: int, reason: str) -> None:
        self._send(status, reason.encode("utf-8") + b"\n")

    def _guard(self, method: Callable[[], None]) -> None:
        """Run a method's handler; an unexpected error is a 500 line, never a traceback."""
        try:
            if _hostile(self._path()):
                self.close_connection = True
                self._send(400, b"bad path\n")
                return
            method()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.debug("error while answering %s", self.command, exc_info=True)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(500, b"internal server error\n")

    def _same_origin(self) -> bool:
        """Key routes answer only a request for one of our own names (a loopback name, or the
        --host given) from our own origin; else 403. Stops other web pages in the same browser
        and DNS rebinding from reading keys."""
        host = (self.headers.get("Host") or "").strip().lower()
        reason = None
        if host not in self.server.allowed_hosts:
            reason = "key routes answer only requests for this server's own host name"
        else:
            origin = self.headers.get("Origin")
            site = (self.headers.get("Sec-Fetch-Site") or "same-origin").strip().lower()
            if (origin is not None and origin.strip().lower() != f"http://{host}") \
                    or site not in ("same-origin", "none"):
                reason = "key routes answer only same-origin requests"
        if reason is None:
            return True
        self.close_connection = True
        self._send(403, reason.encode() + b"\n")
        return False

    def do_OPTIONS(self) -> None:
        self._guard(self._options)

    def _options(self) -> None:
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors(self._path())
        self.send_header("Allow", "GET, HEAD, POST, OPTIONS")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._guard(self._get)

    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

    def _get(self) -> None:
        path = self._path()
        srv = self.server
        if path in ("/", "/index.html"):
            self._send(200, srv.index_html().encode(), _MIME[".html"])
        elif path.startswith("/package/"):
            self._file(srv.root, path[len("/package/"):])
        elif path.startswith("/player/") or path.startswith("/static/"):
            self._file(STATIC, path.split("/", 2)[2])
        elif path.startswith("/lib/") and path[5:-3] in PLAYERS and path.endswith(".js"):
            rel = PLAYERS[path[5:-3]]
            self._file(srv.node_modules, rel)
        elif path.startswith("/keys/"):
            if self._same_origin():
                self._key(path[len("/keys/"):])
        else:
            self._send(404, b"not found\n")

    def _post(self) -> None:
        path = self._path()
        if path != "/clearkey/license":
            self.close_connection = True  # the body stays unread
            self._send(404, b"not found\n")
            return
        if not self._same_origin():
            return
        body = self.read_body(MAX_LICENCE_BODY)
        if body is None:
            return
        try:
            kids, session = parse_license_request(body)
        except SpekeRequestError as exc:
            self._json(exc.status, {"error": exc.reason})
            return
        self.server.note("license", [str(k) for k in kids])
        answer = license_response(kids, session, self.server.key)
        if answer is None:
            self._json(404, {"error": "unknown KID"})
            return
        self._send(200, answer, "application/json")

    def _key(self, name: str) -> None:
        kid = key_route_kid(name)
        if kid is None:
            self._send(400, b"expected /keys/<32 hex KID>\n")
            return
        self.server.note("key", [str(kid)])
        key = self.server.key(kid)
        if key is None:
            self._send(404, b"unknown KID\n")
        else:
            self._send(200, key, "application/octet-stream")

    def _file(self, base: Path, rel: str) -> None:
        try:
            root = base.resolve()  # node_modules may be a symbolic link
            target = (root / rel).resolve()
            if root not in target.parents or not target.is_file():
                raise FileNotFoundError(rel)
            size = target.stat().st_size
            fh = target.open("rb")
        except (OSError, ValueError):  # missing, outside, too long a name, unreadable
            self._send(404, b"not found\n")
            return
        with fh:
            self._send_file(fh, target, size)

    def _send_file(self, fh: BinaryIO, target: Path, size: int) -> None:
        ctype = _MIME.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or \
            "application/octet-stream"
        rng = self.headers.get("Range")
        start, end = 0, size - 1
        status = 200
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            try:
                if a:
                    start, end = int(a), min(int(b) if b else size - 1, size - 1)
                else:
                    start, end = max(0, size - int(b)), size - 1
            except ValueError:
                start, end = 0, size - 1
            if start > end or start < 0:
                self._send(416, b"", extra={"Content-Range": f"bytes */{size}"})
                return
            status = 206
        self.send_response(status)
        self._cors(self._path())
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(left, 1 << 16))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)


class _Server(BoundedHTTPServer):
    def __init__(self, addr: tuple[str, int], root: Path, keys: Mapping[UUID, bytes],
                 node_modules: Path, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 segment_max_age: int = 0,
                 key_lookup: Callable[[UUID], bytes | None] | None = None) -> None:
        super().__init__(addr, _Handler, max_connections=max_connections,
                         request_timeout=request_timeout)
        self.segment_max_age = segment_max_age
        self.key_lookup = key_lookup
        self.root = root
        self.keys = dict(keys)
        self.node_modules = node_modules
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        port = self.server_address[1]
        names = list(_LOOPBACK_NAMES)
        if addr[0] not in _WILDCARD:
            names.append(f"[{addr[0]}]" if ":" in addr[0] else addr[0])
        self.allowed_hosts = frozenset(
            {f"{n.lower()}:{port}" for n in names} | ({n.lower() for n in names} if port == 80
                                                      else set()))

    def key(self, kid: UUID) -> bytes | None:
        """The key handed out for ``kid``: the given keys, else ``key_lookup``'s."""
        key = self.keys.get(kid)
        if key is None and self.key_lookup is not None:
            key = self.key_lookup(kid)
            if key is not None and len(key) != 16:
                raise UsageError(f"the key lookup gave {len(key)} bytes for KID {kid}")
        return key

    def note(self, kind: str, kids: list[str]) -> None:
        with self._lock:
            self.requests.append({"type": kind, "kids": kids})

    def index_html(self) -> str:
        items = []
        for m in sorted([*self.root.rglob("*.mpd"), *self.root.rglob("*.m3u8")]):
            rel = quote(m.relative_to(self.root).as_posix())
            links = " ".join(f'<a href="/player/{p}.html?manifest=/package/{rel}">{p}</a>'
                             for p in PLAYERS)
            items.append(f"<li>{html.escape(rel)}: {links}</li>")
        return ("<!doctype html><title>speke-packager serve</title><h1>Package</h1><ul>"
                + "".join(items) + "</ul>")


class PackageServer:
    """Serve ``directory`` with key endpoints and player pages on ``host:port`` (0 = any).

    Files are looked up at each request, so a live package's new segments and rewritten
    manifests are served as they appear; manifests are never cached, media segments for
    ``segment_max_age`` seconds (see :func:`cache_control`). ``key_lookup``: called for a KID
    that ``keys`` lacks (a live package whose key periods bring new KIDs while it is served).

    A context manager; ``url`` is the origin, :meth:`player_url` a player page for a manifest.
    """

    def __init__(self, directory: str | os.PathLike[str], *,
                 keys: Mapping[UUID, bytes] | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 node_modules: str | os.PathLike[str] | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 segment_max_age: int = 60,
                 key_lookup: Callable[[UUID], bytes | None] | None = None) -> None:
        if not 0 <= segment_max_age <= 31_536_000:
            raise UsageError("--segment-max-age must be between 0 and 31536000 seconds")
        if max_connections < 1 or not 0 < request_timeout <= 3600:
            raise UsageError("--max-connections must be at least 1 and --request-timeout "
                             "between 0 and 3600 seconds")
        self.root = Path(directory).resolve()
        if not self.root.is_dir():
            raise UsageError(f"{self.root} is not a directory")
        for k, v in (keys or {}).items():
            if len(v) != 16:
                raise UsageError(f"key for KID {k} must be 16 bytes")
        # resolved like the package root: _file compares resolved paths, so a node_modules
        # reached through a symlink would otherwise 404 every player script
        nm = (Path(node_modules) if node_modules else find_node_modules()).resolve()
        try:
            self._server = _Server((host, port), self.root, keys or {}, nm,
                                   max_connections=max_connections,
                                   request_timeout=request_timeout,
                                   segment_max_age=segment_max_age,
                                   key_lookup=key_lookup)
        except OSError as exc:
            raise OutputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        if host in _WILDCARD:
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def clearkey_license_url(self) -> str:
        return f"{self.url}/clearkey/license"

    def key_url(self, kid: UUID) -> str:
        return f"{self.url}/keys/{kid.hex}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Key requests seen so far (type and KIDs; never keys)."""
        return list(self._server.requests)

    def manifest(self, player: str, manifest: str | None = None) -> str:
        """The manifest path (relative to the package) a player should load."""
        if manifest:
            if not (self.root / manifest).is_file():
                raise UsageError(f"manifest {manifest} not found in {self.root}")
            return manifest
        mpds = sorted(self.root.rglob("*.mpd"))
        masters = [p for p in sorted(self.root.rglob("*.m3u8"))
                   if "#EXT-X-STREAM-INF" in p.read_text(errors="replace")]
        order = [*masters, *mpds] if player == "hlsjs" else [*mpds, *masters]
        if not order:
            raise UsageError(f"no MPD or master playlist in {self.root} for {player}")
        return order[0].relative_to(self.root).as_posix()

    def player_url(self, player: str, manifest: str | None = None, *,
                   license_url: str | None = None) -> str:
        """A player page for ``manifest``. The ClearKey licence URL is ours when keys were
        given (or ``license_url``); otherwise the player uses the package's own (Laurl)."""
        if player not in PLAYERS:
            raise UsageError(f"unknown player {player!r} (choose {', '.join(PLAYERS)})")
        rel = quote(self.manifest(player, manifest))
        url = f"{self.url}/player/{player}.html?manifest=/package/{rel}"
        lic = license_url or ("/clearkey/license" if self._server.keys or
                              self._server.key_lookup is not None else None)
        if lic:
            url += f"&license={quote(lic, safe='')}"
        return url

    def start(self) -> PackageServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.2},
                                            name="speke-serve", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: the accept loop ends, every open connection is shut down; returns
        without waiting for busy handlers."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.close()

    def serve_until_interrupted(self) -> None:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return

    def __enter__(self) -> PackageServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass(slots=True)
class PlaybackResult:
    """What the page reported after ``seconds`` of playback."""

    url: str
    frames: int = 0
    dropped: int = 0
    current_time: float = 0.0
    errors: list[str] = field(default_factory=list)
    key_system_events: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    min_frames: int = 10

    @property
    def ok(self) -> bool:
        return not self.errors and self.frames >= self.min_frames and self.current_time > 0.2

    @property
    def reason(self) -> str:
        if self.errors:
            return self.errors[0]
        if self.ok:
            return "played"
        return f"only {self.frames} frames decoded, currentTime {self.current_time:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "frames_decoded": self.frames,
                "frames_dropped": self.dropped, "current_time": round(self.current_time, 3),
                "errors": self.errors, "key_system_events": self.key_system_events,
                "events": self.events}


class Browser:
    """One headless system Chromium driven by playwright; reuse it for several checks."""

    def __init__(self, chromium: str | None = None, *, playwright: Any = None) -> None:
        """``playwright``: an already started ``sync_playwright()`` instance to share (one
        process can run only one); by default this browser starts and stops its own."""
        exe = chromium or os.environ.get("SPEKE_PACKAGER_CHROMIUM") or "/usr/bin/chromium"
        if not (os.path.isfile(exe) or shutil.which(exe)):
            raise ToolError(f"Chromium not found at {exe}: install the Debian package chromium")
        self._own_pw = playwright is None
        if playwright is None:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError as exc:
                raise ToolError("playwright is not installed (pip install playwright)") from exc
            playwright = sync_playwright().start()
        self._pw = playwright
        self._profile = tempfile.mkdtemp(prefix="speke-chromium-")
        try:
            self._ctx = self._pw.chromium.launch_persistent_context(
                self._profile, executable_path=exe, headless=True, args=list(CHROMIUM_ARGS))
        except Exception as exc:
            if self._own_pw:
                self._pw.stop()
            shutil.rmtree(self._profile, ignore_errors=True)
            raise ToolError(f"Chromium did not start: {str(exc).splitlines()[0]}") from exc

    def check(self, url: str, seconds: float = 5.0, *, min_frames: int = 10) -> PlaybackResult:
        """Open ``url`` (a player page) and watch playback for ``seconds``."""
        from playwright.sync_api import Error as PlaywrightError

        page = self._ctx.new_page()
        res = PlaybackResult(url, min_frames=min_frames)
        try:
            page.on("pageerror", lambda e: res.errors.append(f"page error: {e}"))
            page.goto(url, wait_until="load", timeout=30_000)
            deadline = time.monotonic() + seconds
            state: dict[str, Any] = {}
            while True:
                state = page.evaluate("() => window.__speke ? window.__speke.snapshot() : null")
                if state and state.get("errors"):
                    break
                if time.monotonic() >= deadline:
                    break
                page.wait_for_timeout(250)
            if state:
                res.frames = int(state.get("frames", 0))
                res.dropped = int(state.get("dropped", 0))
                res.current_time = float(state.get("currentTime", 0.0))
                res.errors.extend(str(e) for e in state.get("errors", []))
                res.key_system_events = [str(e) for e in state.get("keySystem", [])]
                res.events = [str(e) for e in state.get("events", [])]
            else:
                res.errors.append("the player page did not start (window.__speke missing)")
        except PlaywrightError as exc:
            res.errors.append(f"browser: {str(exc).splitlines()[0]}")
        finally:
            page.close()
        return res

    def close(self) -> None:
        try:
            self._ctx.close()
        finally:
            if self._own_pw:
                self._pw.stop()
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def check_playback(
    url: str, *, seconds: float = 5.0, chromium: str | None = None
) -> PlaybackResult:
    """Play a player page in a fresh headless Chromium for ``seconds``; see :class:`Browser`."""
    with Browser(chromium) as b:
        return b.check(url, seconds)
