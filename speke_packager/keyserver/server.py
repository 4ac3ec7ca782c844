"""The HTTP side of the local key server: routing, limits, auth, faults, :class:`KeyServer`."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from .._httpd import (
    DEFAULT_BODY_BUDGET,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    BoundedHandler,
    BoundedHTTPServer,
)
from .._io import warn_if_exposed
from ..constants import SPEKE_VERSION_HEADER
from ..errors import UsageError
from .answer import AnswerUrls, build_answer
from .clearkey import key_route_kid, license_response, parse_license_request
from .derive import derive_key
from .faults import FaultError, Faults, parse_faults
from .request import ReceivedRequest, SpekeRequestError, parse_request
from .sigv4 import SigV4Failure, verify_sigv4

__all__ = ["KeyServer"]

log = logging.getLogger("speke_packager.keyserver")

USER_AGENT = "speke-packager-keyserver/0.1"
MAX_ISSUED = 100_000
MAX_RECEIVED = 256
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
    ("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Fault"),
    ("Access-Control-Max-Age", "600"),
)
_CORS_PATHS = ("/clearkey/license", "/keys/")
# the only shape of X-Speke-Version we echo (a folded or hostile header is never copied back)
_VERSION = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){1,2}")


class _Server(BoundedHTTPServer):
    keyserver: KeyServer
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # The handshake runs in the request's thread (BoundedHandler.setup, bounded by the
            # request deadline), so a slow or broken client never blocks the accept loop.
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr


class _Handler(BoundedHandler):
    server: _Server
    server_version = "speke-packager-keyserver"
    sys_version = ""

    # --- plumbing ---------------------------------------------------------------------------
    @property
    def ks(self) -> KeyServer:
        return self.server.keyserver

    def log_message(self, format: str, *args: Any) -> None:
        if self.ks.log_requests:
            log.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
        *,
        truncate: bool = False,
        partial: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        if truncate:
            body = body[: len(body) // 2]
        self.send_header("Content-Length", str(len(body)))
        if partial:  # announce the whole body, send half, close the connection
            self.close_connection = True
            body = body[: len(body) // 2]
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        self._send(status, reason.encode("utf-8") + b"\n", headers=headers)

    def _cors(self, path: str) -> Sequence[tuple[str, str]]:
        return CORS_HEADERS if path.startswith(_CORS_PATHS) else ()

    def _reset(self) -> None:
        """Close the connection abruptly (TCP RST) without an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass

    def _faults(self) -> Faults | None:
        """Server-wide faults merged with the request's ``x-fault`` header (read only when the
        server allows it, ``allow_fault_header``); None after a 400."""
        spec = (self.headers.get_all("x-fault") or []) if self.ks.allow_fault_header else []
        try:
            own = parse_faults(spec)
        except FaultError as exc:
            self._text(400, f"bad x-fault header: {exc}")
            return None
        return self.ks._server_faults().merged(own)

    def _pre_faults(self, faults: Faults, path: str) -> bool:
        """Apply reset/delay/status; True when the request is already answered."""
        if faults.has("reset"):
            self._reset()
            return True
        if faults.delay:
            time.sleep(faults.delay)
        if faults.status is not None:
            self._text(faults.status, f"fault injected: HTTP {faults.status}", self._cors(path))
            return True
        return False

    def answer_error(self, status: int, reason: str) -> None:
        self._text(status, reason, self._cors(urlsplit(self.path).path))

    def _admit(self, path: str, body: bytes) -> bool:
        """The one access rule of every route that hands out key material (SPEKE, ``/keys``,
        the ClearKey licence): a client certificate when the server has a client CA, a valid
        SigV4 signature with ``require_sigv4``. False after answering 401/403."""
        ks = self.ks
        if ks.client_ca is not None:
            conn = self.connection
            if not (isinstance(conn, ssl.SSLSocket) and conn.getpeercert()):
                self.close_connection = True
                self._text(403, "client certificate required", self._cors(path))
                return False
        if ks.require_sigv4:
            assert ks.sigv4_credentials is not None
            try:
                verify_sigv4(self.command, self.path, _Headers(self.headers), body,
                             access_key=ks.sigv4_credentials[0],
                             secret_key=ks.sigv4_credentials[1])
            except SigV4Failure as exc:
                self._json(exc.status, {"message": exc.reason}, self._cors(path))
                return False
        return True

    def _json(self, status: int, doc: object, headers: Sequence[tuple[str, str]] = ()) -> None:
        self._send(status, json.dumps(doc).encode("utf-8"), "application/json", headers)

    def _guard(self, method: str) -> None:
        self.ks._count(method.upper(), urlsplit(self.path).path)
        try:
            getattr(self, f"_{method}")()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            log.exception("internal error while answering %s %s", method,
                          urlsplit(self.path).path)
            self.close_connection = True
            try:
                self._text(500, "internal server error")
            except OSError:
                pass

    # --- methods ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._guard("get")

    def do_HEAD(self) -> None:
        self._guard("get")

    def do_POST(self) -> None:
        self._guard("post")

    def do_OPTIONS(self) -> None:
        self._guard("options")

    def _not_allowed(self) -> None:
        path = urlsplit(self.path).path
        allow = "GET, OPTIONS" if path.startswith("/keys/") else "POST, OPTIONS"
        if path == "/healthz":
            allow = "GET"
        self._text(405, "method not allowed", [("Allow", allow), *self._cors(path)])

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _options(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith(_CORS_PATHS):
            self.send_response(204)
            for name, value in CORS_HEADERS:
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(204, b"", headers=[("Allow", "GET, POST, OPTIONS")])

    def _get(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        if path == "/healthz":
            self._text(200, "ok")
            return
        if path.endswith("/heartbeat"):
            self._send(200, b'{"statusMessage":"ok"}', "application/json")
            return
        if path.startswith("/keys/"):
            faults = self._faults()
            if faults is None or not self._admit(path, b"") or self._pre_faults(faults, path):
                return
            self._get_key(path[len("/keys/"):], split.query, faults)
            return
        if path in ("/clearkey/license",) or path.startswith(("/speke", "/copyProtection")) \
                or path.endswith("/copyProtection"):
            self._not_allowed()
            return
        self._text(404, "not found")

    def _get_key(self, kid_text: str, query: str, faults: Faults) -> None:
        kid = key_route_kid(kid_text)
        if kid is None:
            self._text(404, "not a KID", CORS_HEADERS)
            return
        content_id = _query_content_id(query)
        lookup_kid = _other_kid(kid) if faults.has("wrong-kid") else kid
        key = self.ks.lookup_key(lookup_kid, content_id, fallback_kid=kid)
        if key is None:
            self._text(404, f"unknown KID {kid}", CORS_HEADERS)
            return
        self._send(200, key, "application/octet-stream",
                   [*CORS_HEADERS, ("Cache-Control", "no-store")],
                   truncate=faults.has("truncate"))

    def _post(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        if path.startswith("/keys/") or path == "/healthz":
            self._not_allowed()
            return
        faults = self._faults()
        if faults is None:
            return
        # read the body before anything answers, so a kept-alive connection stays in step (an
        # unread body would be parsed as the next request); the signature covers it
        body = self.read_body(self.ks.max_body)
        if body is not None and path != "/clearkey/license":
            self._record(path, body)
        if body is None or not self._admit(path, body) or self._pre_faults(faults, path):
            return
        if path == "/clearkey/license":
            self._license(body, split.query, faults)
        else:
            self._speke(body, faults)

    def _record(self, path: str, body: bytes) -> None:
        self.ks._record(ReceivedRequest(path, self.headers.get(SPEKE_VERSION_HEADER), body))

    def _license(self, body: bytes, query: str, faults: Faults) -> None:
        try:
            kids, session = parse_license_request(body)
        except SpekeRequestError as exc:
            self._text(exc.status, exc.reason, CORS_HEADERS)
            return
        content_id = _query_content_id(query)

        def lookup(kid: UUID) -> bytes | None:
            asked = _other_kid(kid) if faults.has("wrong-kid") else kid
            return self.ks.lookup_key(asked, content_id, fallback_kid=kid)

        answer = license_response(kids, session, lookup)
        if answer is None:
            self._text(404, "no key known for the requested KIDs", CORS_HEADERS)
            return
        self._send(200, answer, "application/json", [*CORS_HEADERS, ("Cache-Control", "no-store")],
                   truncate=faults.has("truncate"))

    def _speke(self, body: bytes, faults: Faults) -> None:
        version_header = self.headers.get(SPEKE_VERSION_HEADER)
        echo: list[tuple[str, str]] = []
        if version_header is not None:
            if faults.version is None and _VERSION.fullmatch(version_header.strip()):
                echo.append(("X-Speke-Version", version_header.strip()))
            if not faults.has("no-user-agent"):
                echo.append(("X-Speke-User-Agent", USER_AGENT))
        elif not faults.has("no-user-agent"):
            echo.append(("Speke-User-Agent", USER_AGENT))
        if faults.version:
            echo.append(("X-Speke-Version", faults.version))
        ks = self.ks
        try:
            req = parse_request(body, version_header, max_bytes=ks.max_body)
            answer = build_answer(
                req,
                key_for=lambda kid: ks.key_for(req.content_id, kid),
                urls=AnswerUrls(key_url=ks.key_url, license_url=ks.clearkey_license_url,
                                playready_la_url=ks.playready_la_url),
                faults=faults,
                mac_layout=ks.mac_layout,
            )
        except SpekeRequestError as exc:
            self._text(exc.status, exc.reason, echo)
            return
        ks.note_issued(req.content_id, [k.kid for k in req.keys])
        self._send(200, answer, "application/xml", echo, truncate=faults.has("truncate"),
                   partial=faults.has("partial"))


def _query_content_id(query: str) -> str | None:
    values = parse_qs(query).get("content_id")
    return values[0] if values else None


def _other_kid(kid: UUID) -> UUID:
    raw = bytearray(kid.bytes)
    raw[15] ^= 0xFF
    return UUID(bytes=bytes(raw))


class _Headers:
    """Case-insensitive, typed view of the request headers for SigV4."""

    def __init__(self, msg: Any) -> None:
        self._msg = msg

    def get(self, name: str) -> str | None:
        values = self._msg.get_all(name)
        return ",".join(values) if values else None


class KeyServer:
    """The local SPEKE v1/v2.0/v2.1 test key server; a context manager.

    Threaded (one daemon thread per connection, at most ``max_connections``; more get 503).
    Every request must arrive within ``request_timeout`` seconds (see
    :mod:`speke_packager._httpd`). Keys are :func:`derive_key` of the seed, the request's content
    ID and the KID. ``require_sigv4`` / ``client_ca`` guard every route that hands out key
    material. The ``x-fault`` request header is honoured only with ``allow_fault_header=True``
    (tests); ``faults`` apply to every request. See :mod:`speke_packager.keyserver` for
    endpoints and fault switches.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: str = "speke-packager",
        faults: Sequence[str] = (),
        require_sigv4: bool = False,
        sigv4_credentials: tuple[str, str] | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        client_ca: str | None = None,
        log_requests: bool = False,
        max_body: int = 4 << 20,
        default_content_id: str | None = None,
        mac_layout: str = "B",
        allow_fault_header: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        if isinstance(faults, str):
            faults = [faults]
        self.faults = parse_faults(faults)
        if require_sigv4 and not sigv4_credentials:
            raise UsageError("require_sigv4 needs sigv4_credentials (access key, secret)")
        if (tls_cert is None) != (tls_key is None):
            raise UsageError("TLS needs both a certificate and a key")
        if client_ca is not None and tls_cert is None:
            raise UsageError("a client CA needs TLS (tls_cert and tls_key)")
        if tls_key is not None:
            warn_if_exposed(tls_key, "TLS private key")
        if mac_layout.upper() not in ("A", "B"):
            raise UsageError("mac_layout must be 'A' or 'B'")
        if max_body < 1024:
            raise UsageError("max_body must be at least 1024 bytes")
        if max_connections < 1:
            raise UsageError("max_connections must be at least 1")
        if not 0 < request_timeout <= 3600:
            raise UsageError("request_timeout must be between 0 and 3600 seconds")
        self.host = host
        self._port = port
        self._seed = seed
        self.require_sigv4 = require_sigv4
        self.sigv4_credentials = sigv4_credentials
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.client_ca = client_ca
        self.log_requests = log_requests
        self.max_body = max_body
        self.default_content_id = default_content_id
        self.mac_layout = mac_layout.upper()
        self.allow_fault_header = allow_fault_header
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self._issued: OrderedDict[UUID, str] = OrderedDict()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._faulted = 0
        self._registered: dict[UUID, bytes] = {}
        self._received: deque[ReceivedRequest] = deque(maxlen=MAX_RECEIVED)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server else "stopped"
        return f"KeyServer({state})"

    # --- addresses --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise UsageError("the key server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (``https`` with TLS)."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def speke_url(self) -> str:
        return self.url + "/speke"

    @property
    def clearkey_license_url(self) -> str:
        return self.url + "/clearkey/license"

    @property
    def playready_la_url(self) -> str:
        """LA_URL written into PlayReady headers (not served: no PlayReady licences here)."""
        return self.url + "/playready/rightsmanager.asmx"

    def key_url(self, kid: UUID) -> str:
        """HLS identity key URI serving the raw 16 bytes of ``kid``'s key."""
        return f"{self.url}/keys/{kid.hex}"

    # --- request counting -------------------------------------------------------------------
    def _count(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[(method, path)] += 1

    def _server_faults(self) -> Faults:
        """The server-wide faults for the next request (``times=N``: only the first N)."""
        if self.faults.times is None:
            return self.faults
        with self._lock:
            self._faulted += 1
            return self.faults if self._faulted <= self.faults.times else Faults()

    def request_count(self, path: str | None = None, method: str | None = "POST") -> int:
        """Requests received so far (every attempt, faulted or not), optionally only those for
        ``path`` and/or ``method`` (None: any); lets tests count client retries server-side."""
        with self._lock:
            return sum(n for (m, p), n in self._counts.items()
                       if (path is None or p == path) and (method is None or m == method))

    def reset_counts(self) -> None:
        """Forget the request counts and the received requests."""
        with self._lock:
            self._counts.clear()
            self._received.clear()

    def _record(self, req: ReceivedRequest) -> None:
        with self._lock:
            self._received.append(req)

    def speke_requests(self) -> list[ReceivedRequest]:
        """The SPEKE requests received so far (every attempt, faulted ones too; the last
        256), oldest first."""
        with self._lock:
            return list(self._received)

    # --- keys -------------------------------------------------------------------------------
    def key_for(self, content_id: str, kid: UUID) -> bytes:
        """The deterministic key this server issues for (content ID, KID)."""
        return derive_key(self._seed, content_id, kid)

    def register_key(self, kid: UUID, key: bytes) -> None:
        """Serve ``key`` for ``kid`` on ``/keys/{kid}`` and the ClearKey licence endpoint."""
        if len(key) != 16:
            raise UsageError(f"key for KID {kid} must be 16 bytes")
        with self._lock:
            self._registered[kid] = bytes(key)

    def note_issued(self, content_id: str, kids: Sequence[UUID]) -> None:
        """Remember which content ID each KID was issued for (bounded, oldest dropped)."""
        with self._lock:
            for kid in kids:
                self._issued[kid] = content_id
                self._issued.move_to_end(kid)
            while len(self._issued) > MAX_ISSUED:
                self._issued.popitem(last=False)

    def lookup_key(self, kid: UUID, content_id: str | None = None, *,
                   fallback_kid: UUID | None = None) -> bytes | None:
        """Key for ``kid``: registered, else derived from ``content_id``, the content ID it was
        issued for, or the default content ID; None when unknown."""
        with self._lock:
            if kid in self._registered:
                return self._registered[kid]
            issued = self._issued.get(kid)
            if issued is None and fallback_kid is not None:
                issued = self._issued.get(fallback_kid)
        cid = content_id or issued or self.default_content_id
        return self.key_for(cid, kid) if cid else None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> KeyServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        try:
            server = _Server((self.host, self._port), _Handler,
                             max_connections=self.max_connections,
                             request_timeout=self.request_timeout,
                             body_budget=max(DEFAULT_BODY_BUDGET, 2 * self.max_body))
        except OSError as exc:
            raise UsageError(f"cannot listen on {self.host}:{self._port}: {exc}") from exc
        server.keyserver = self
        if self.tls_cert and self.tls_key:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
                if self.client_ca:
                    ctx.load_verify_locations(self.client_ca)
                    ctx.verify_mode = ssl.CERT_OPTIONAL
            except (OSError, ssl.SSLError) as exc:
                server.server_close()
                raise UsageError(f"cannot load TLS files: {exc}") from exc
            server.ssl_context = ctx
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="speke-keyserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # the accept loop ends within its 0.2 s poll interval
        server.close()  # listening socket and every open connection; busy handlers not awaited
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_until(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set (CLI helper)."""
        while not stop.wait(0.5):
            pass

    def __enter__(self) -> KeyServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
