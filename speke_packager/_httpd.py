"""A bounded, threaded HTTP/1.1 server base for the two local servers (``keyserver``, ``serve``).

What it bounds, so that no client can hold the server hostage:

- **connections**: at most ``max_connections`` are served at once (one thread each). A
  connection beyond that gets ``503`` (written without blocking; TLS connections, which would
  need a handshake first, are closed) and the accept loop never waits for a free slot;
- **time per request**: the request line, the headers and the body must all arrive within
  ``request_timeout`` seconds, counted from when the server starts waiting for the request (so
  it is also the keep-alive idle limit and covers the TLS handshake). This is a deadline for the
  whole request, not a timeout per socket read: a client trickling one byte a second is cut
  off like an idle one. Answers are written with a per-send timeout of the same length;
- **size of a request**: the request line and the header block are at most 64 KiB each (414 /
  431 beyond, as are more than 100 headers); a body only with ``Content-Length`` (digits only,
  one header, at most the route's limit), else 411 / 400 / 413; chunked bodies are refused (411).
  All bodies held at once share a budget of ``body_budget`` bytes (64 MiB): a request that would
  exceed it gets 503, so the server's memory stays bounded whatever the number of clients. A
  request that carries a body on a method that takes none is answered and its connection closed
  (the body is never parsed as the next request);
- **shutdown**: :meth:`BoundedHTTPServer.close` stops the accept loop, closes the listening
  socket and shuts down every open connection (their threads wake up and end); it does not wait
  for handlers that are busy, so it returns in well under a second.

Handler exceptions never reach the wire or stderr as a traceback (see ``handle_error``).
"""

from __future__ import annotations

import http.client
import io
import logging
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .constants import HTTP_DEFAULT_MAX_CONNECTIONS, HTTP_DEFAULT_REQUEST_TIMEOUT

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT",
    "BoundedHTTPServer",
    "BoundedHandler",
]

log = logging.getLogger("speke_packager.httpd")

DEFAULT_MAX_CONNECTIONS = HTTP_DEFAULT_MAX_CONNECTIONS
DEFAULT_REQUEST_TIMEOUT = HTTP_DEFAULT_REQUEST_TIMEOUT
DEFAULT_BODY_BUDGET = 64 << 20
MAX_HEADER_BYTES = 64 << 10
_MAX_LENGTH_DIGITS = 18  # longer Content-Length values are over any limit (and int() is slow)
_BUSY_BODY = b"too many connections, try again\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
         + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)
_BODY_METHODS = frozenset({"POST"})
# lingering close: after its answer, a connection closed by the server (an error answer with
# request bytes still unread, a body on a GET) is half-closed and its input drained for at most
# this long / this much, so the peer reads the answer instead of a reset
_LINGER_SECONDS = 0.5
_LINGER_BYTES = 1 << 20


class _DeadlineReader(io.RawIOBase):
    """Socket reads that share one deadline (the handler's ``deadline``)."""

    def __init__(self, sock: socket.socket, handler: BoundedHandler) -> None:
        super().__init__()
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        left = self._handler.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(memoryview(buf))


class _Writer(io.BufferedIOBase):
    """Unbuffered writes with ``sendall`` (a raw socket file may write only part)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes


class _HeaderBudget:
    """``readline`` for http.client's header parser with a budget for the whole header block."""

    def __init__(self, fp: io.BufferedIOBase, budget: int) -> None:
        self._fp = fp
        self._left = budget

    def readline(self, limit: int = -1) -> bytes:
        cap = self._left + 1 if limit < 0 else min(limit, self._left + 1)
        line = self._fp.readline(cap)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong("header block")
        return line


class BoundedHTTPServer(ThreadingHTTPServer):
    """:class:`ThreadingHTTPServer` with a connection cap, request deadlines and a fast close."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[BoundedHandler], *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 body_budget: int = DEFAULT_BODY_BUDGET) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not request_timeout > 0:
            raise ValueError("request_timeout must be positive")
        self.max_connections = max_connections
        self.request_timeout = float(request_timeout)
        self.refused = 0  # connections answered 503 because every slot was taken
        self.body_budget = body_budget
        self._body_bytes = 0  # bytes of request bodies currently held
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._closing = False
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    # --- the cap --------------------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        if self._closing or not self._slots.acquire(blocking=False):
            with self._open_lock:
                self.refused += 1
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread could be started: give the slot back, answer busy
            self._slots.release()
            log.debug("cannot start a handler thread", exc_info=True)
            self._refuse(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            if self._closing:
                self.shutdown_request(request)
                return
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._slots.release()

    def shutdown_request(self, request: Any) -> None:
        """Half-close, drain what the peer still sends (bounded), then close: closing a socket
        with unread input sends a reset, which can destroy the answer before the peer reads
        it. Not while the server closes, and not for TLS (no half-close)."""
        if not self._closing and not isinstance(request, ssl.SSLSocket):
            try:
                request.shutdown(socket.SHUT_WR)
                end = time.monotonic() + _LINGER_SECONDS
                drained = 0
                while drained < _LINGER_BYTES and not self._closing:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    request.settimeout(left)
                    chunk = request.recv(65536)
                    if not chunk:
                        break
                    drained += len(chunk)
            except OSError:
                pass
        super().shutdown_request(request)

    def _refuse(self, sock: socket.socket) -> None:
        """503 without blocking the accept loop (a TLS connection is closed: no handshake)."""
        try:
            if not isinstance(sock, ssl.SSLSocket):
                sock.setblocking(False)
                try:  # read what already arrived so close() sends FIN, not RST, when possible
                    for _ in range(4):
                        if not sock.recv(65536):
                            break
                except OSError:
                    pass
                try:
                    sock.send(_BUSY)
                except OSError:
                    pass
        finally:  # (no lingering here: this runs in the accept loop)
            super().shutdown_request(sock)

    def reserve_body(self, n: int) -> bool:
        with self._open_lock:
            if self._body_bytes + n > self.body_budget:
                return False
            self._body_bytes += n
            return True

    def release_body(self, n: int) -> None:
        with self._open_lock:
            self._body_bytes -= n

    # --- open connections and shutdown -------------------------------------------------------
    @property
    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def close(self) -> None:
        """Stop accepting, close the listening socket and shut every open connection down.

        Must not be called from the thread running ``serve_forever``; safe to call when it never
        ran (then only the sockets are closed)."""
        self._closing = True
        self.server_close()
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:  # the plain socket's shutdown also wakes a thread blocked in an SSL read
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class BoundedHandler(BaseHTTPRequestHandler):
    """Request handler for :class:`BoundedHTTPServer`: deadline reads and body framing."""

    server: BoundedHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = None  # the deadline reader sets the socket timeout before every read
    # headers and body leave in separate sends: without TCP_NODELAY every answer waits ~40 ms
    # for the peer's delayed ACK
    disable_nagle_algorithm = True
    deadline = 0.0
    _served = 0
    _reserved = 0  # body bytes this request holds of the server's budget

    def setup(self) -> None:
        self.deadline = time.monotonic() + self.server.request_timeout
        self.connection = self.request
        if self.disable_nagle_algorithm and self.connection.family != socket.AF_UNIX:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        if isinstance(self.connection, ssl.SSLSocket):
            self._handshake(self.connection)
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), 65536)
        self.wfile = _Writer(self.connection)

    def _handshake(self, conn: ssl.SSLSocket) -> None:
        """The TLS handshake within the request deadline (a socket timeout would apply to each
        of its reads, so a trickling client could stretch it)."""
        conn.setblocking(False)
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("TLS handshake deadline passed")
            try:
                conn.do_handshake()
                return
            except ssl.SSLWantReadError:
                event = select.POLLIN
            except ssl.SSLWantWriteError:
                event = select.POLLOUT
            poller = select.poll()  # not select(): descriptors above 1024 under load
            poller.register(conn, event)
            if not poller.poll(left * 1000):
                raise TimeoutError("TLS handshake deadline passed")

    def handle_one_request(self) -> None:
        if self._served:  # the first request's clock started at accept (handshake included)
            self.deadline = time.monotonic() + self.server.request_timeout
        self._served += 1
        try:
            super().handle_one_request()
        finally:
            if self._reserved:
                self.server.release_body(self._reserved)
                self._reserved = 0

    def parse_request(self) -> bool:
        rfile = self.rfile
        self.rfile = _HeaderBudget(rfile, MAX_HEADER_BYTES)  # type: ignore[assignment]
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = rfile
        if not parsed:
            return False
        if self.command not in _BODY_METHODS and (
                self.headers.get("Content-Length", "0").strip() not in ("", "0")
                or self.headers.get("Transfer-Encoding")):
            self.close_connection = True  # the body is never read: do not parse it as a request
        return True

    def end_headers(self) -> None:
        # the answer leaves with a per-send timeout (the request deadline may be nearly spent)
        self.connection.settimeout(self.server.request_timeout)
        super().end_headers()

    def answer_error(self, status: int, reason: str) -> None:
        """Answer a framing error (plain text); servers override it to add their headers."""
        body = reason.encode("utf-8") + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self, limit: int) -> bytes | None:
        """The request body, or None after answering 400 / 411 / 413 (or when the client went
        away before sending all of it). Reads are bounded by the request deadline."""
        if self.headers.get_all("Transfer-Encoding"):
            self.close_connection = True
            self.answer_error(411, "chunked request bodies are not supported; send "
                                   "Content-Length")
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self.close_connection = True
            self.answer_error(411, "Content-Length required")
            return None
        text = values[0].strip()
        if len(values) != 1 or not text.isascii() or not text.isdigit():
            self.close_connection = True
            self.answer_error(400, "bad Content-Length")
            return None
        if len(text) > _MAX_LENGTH_DIGITS or int(text) > limit:
            self.close_connection = True
            self.answer_error(413, f"request body larger than {limit} bytes")
            return None
        length = int(text)
        if not self.server.reserve_body(length):
            self.close_connection = True
            self.answer_error(503, "too many request bodies in flight, try again")
            return None
        self._reserved += length
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body
