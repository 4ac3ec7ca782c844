"""A small HTTP reverse proxy in front of the S3-compatible test server: it records every
request (method, key, query) in arrival order and can answer chosen requests with an error
instead of forwarding them (a 503 SlowDown, a 500). It stands in for the network and the
service's throttling, which the test server cannot produce; our code talks real HTTP to it."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade",
        "trailer"}


@dataclass
class Fault:
    """Answer ``times`` requests matching (method, key substring, query word) with an error."""

    method: str
    key_part: str
    status: int
    code: str
    times: int = 1
    query: str | None = None  # e.g. "uploadId" (UploadPart), "delete" (DeleteObjects)

    def matches(self, method: str, key: str, query: str) -> bool:
        return (self.times > 0 and method == self.method and self.key_part in key
                and (self.query is None or self.query in query))


@dataclass
class Record:
    method: str
    key: str
    query: str
    status: int
    access_key: str = ""  # from the SigV4 Authorization header (never the secret)


@dataclass
class ProxyState:
    upstream: tuple[str, int]
    log: list[Record] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: tuple[str, str, float] | None = None  # (method, key part, seconds): a slow network

    def take_fault(self, method: str, key: str, query: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.matches(method, key, query):
                    f.times -= 1
                    return f
        return None

    def writes(self) -> list[str]:
        """Keys of the successful PutObject / CompleteMultipartUpload requests, in order."""
        with self.lock:
            return [r.key for r in self.log if r.status == 200 and (
                (r.method == "PUT" and "uploadId" not in r.query and "partNumber" not in r.query)
                or (r.method == "POST" and "uploadId" in r.query))]


def _handler(state: ProxyState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _handle(self) -> None:
            body = self._body()
            parsed = urllib.parse.urlsplit(self.path)
            key = urllib.parse.unquote(parsed.path)
            auth = self.headers.get("Authorization", "")
            akid = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth \
                else ""
            fault = state.take_fault(self.command, key, parsed.query)
            if state.delay and self.command == state.delay[0] and state.delay[1] in key:
                time.sleep(state.delay[2])
            if fault is not None:
                xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{fault.code}</Code>"
                       f"<Message>injected by the test proxy</Message></Error>").encode()
                with state.lock:
                    state.log.append(Record(self.command, key, parsed.query, fault.status, akid))
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)
                return
            conn = http.client.HTTPConnection(*state.upstream, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP
                           and k.lower() != "expect"}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                with state.lock:  # logged before the client can see the answer
                    state.log.append(Record(self.command, key, parsed.query, resp.status, akid))
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler


class S3Proxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.state = ProxyState(upstream)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> S3Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
