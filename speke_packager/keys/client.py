"""SpekeClient: POST a CPIX request, retry what is worth retrying, validate the answer.

The only module that imports ``requests``. Transport errors are translated here, once, into
:mod:`speke_packager.errors` types. Retries resend the identical document, re-signed, and never
downgrade the SPEKE version (speke.md §11).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.auth
import urllib3.connection
import urllib3.connectionpool

from .._redact import redact_text, redact_url
from ..errors import (
    KeyAcquisitionError,
    KeyServerError,
    KeyServerHTTPError,
    KeyServerTimeout,
    SpekePackagerError,
    UsageError,
)
from ..model import KeyEntry, KeyPeriod, KeySet
from .auth import Auth, NoAuth
from .cpix.parse import parse_cpix
from .envelope import DeliveryKey
from .request import EncryptionContract, SpekeRequest, build_request, check_periods_per_request
from .server_error import decode_error_answer
from .trace import TraceRecorder
from .validate import validate_response

__all__ = ["RETRY_STATUSES", "SpekeClient", "fetch_keys", "http_error", "is_transient"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# SPEKE v2 fixed error strings (speke.md §11): a 5xx carrying one of them is final.
_FINAL_MESSAGES = (
    "Missing CPIX@", "Unsupported CPIX@version", "Missing ContentKey@commonEncryptionScheme",
    "Non compliant ContentKey@commonEncryptionScheme", "non compatible with DRMSystem",
    "Unsupported SPEKE version", "Malformed encryption contract",
    "Requested CPIX encryption contract not supported", "Missing CPIX encryption contract",
)
_MAX_RETRY_AFTER = 60.0
DEFAULT_TIMEOUT = (5.0, 30.0, 120.0)  # connect, read (per socket operation), total


class _Retry(Exception):
    """A failure worth retrying; its error is marked ``transient`` (see :func:`is_transient`)."""

    def __init__(self, error: Exception, delay: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay
        if isinstance(error, KeyAcquisitionError):
            error.transient = True


def is_transient(exc: BaseException) -> bool:
    """True for failures that may go away by themselves, so a later try may succeed: connection
    errors, timeouts, 408, 429, 500 and 502-504 without a final SPEKE v2 message (what
    :class:`SpekeClient` retries). False for 4xx, invalid answers, TLS and usage errors."""
    return isinstance(exc, KeyAcquisitionError) and exc.transient


class SpekeClient:
    """A SPEKE v1/v2.0/v2.1 client over a :class:`requests.Session`.

    ``retries`` is the number of extra attempts after the first one (so 3 means at most four
    POSTs), on connection errors, timeouts, 408, 429 (honouring ``Retry-After``), 500 and
    502-504 only, with exponential back-off (``backoff * 2**n`` seconds, at most
    ``max_backoff``) and jitter (each wait is 50-100 % of that). The error raised once the
    retries are used up is marked ``transient`` (:func:`is_transient`).

    ``timeout`` is (connect, read) or (connect, read, total) seconds. Connect and read bound
    each socket operation; ``total`` bounds one key request as a whole, every attempt, answer
    and back-off wait included: an answer still arriving when it runs out is cut (its socket is
    shut down) and the request fails with :class:`KeyServerTimeout`, and no retry starts
    whose wait would not end before it (a ``Retry-After`` is capped at 60 s); each attempt's
    connect and read timeouts are capped to the time left. A request therefore ends within
    ``total``, name resolution aside (the system resolver takes no timeout). ``None`` for
    total: no overall deadline."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] | tuple[float, float, float | None] = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.5,
        delivery_key: DeliveryKey | None = None,
        verify_tls: bool | str = True,
        max_response_bytes: int = 8 << 20,
        sleep: Callable[[float], None] = time.sleep,
        trace: TraceRecorder | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise UsageError(f"SPEKE URL must be http(s): {redact_url(url)[:80]!r}")
        if retries < 0:
            raise UsageError("--retries must not be negative")
        if not 0 <= backoff <= max_backoff:
            raise UsageError("backoff must be between 0 and max_backoff seconds")
        if len(timeout) not in (2, 3) or min(t for t in timeout if t is not None) <= 0:
            raise UsageError("timeout must be (connect, read[, total]) positive seconds")
        self.url = url
        self.auth = auth or NoAuth()
        self._session = session or requests.Session()
        _mount_deadline_adapter(self._session, url)
        self.timeout: tuple[float, float] = (timeout[0], timeout[1])
        self.total: float | None = timeout[2] if len(timeout) == 3 else None
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.delivery_key = delivery_key
        self.verify_tls = verify_tls
        self.max_response_bytes = max_response_bytes
        self._sleep = sleep
        self.trace = trace  # redacted record of every exchange (keys/trace.py)
        self.attempts = 0  # POSTs made by the last fetch (diagnostics)
        if verify_tls is False:
            log.warning("TLS certificate verification of the key server is DISABLED (--insecure)")
        self._warn_plain_http()

    def __repr__(self) -> str:
        return f"SpekeClient({redact_url(self.url)!r}, auth={self.auth.describe()})"

    def _warn_plain_http(self) -> None:
        """One warning when credentials or clear content keys would cross the network
        unencrypted: plain http:// to a host that is not loopback."""
        parts = urlsplit(self.url)
        if parts.scheme.lower() != "http" or _is_loopback(parts.hostname or ""):
            return
        what = []
        if self.auth.describe() not in ("none", "mtls") or "@" in parts.netloc:
            what.append("credentials")
        if self.delivery_key is None:
            what.append("clear content keys (no delivery certificate)")
        if what:
            log.warning("plain http:// to %s: %s travel unencrypted; use https://",
                        parts.hostname, " and ".join(what))

    # ---- public API ----------------------------------------------------------------------

    def prepare(self, contract: EncryptionContract) -> SpekeRequest:
        """The request that :meth:`fetch` sends (adds our delivery certificate if we hold a
        delivery key and the contract names none)."""
        if self.delivery_key is not None and contract.delivery_cert_der is None:
            contract = replace(contract, delivery_cert_der=self.delivery_key.certificate_der)
        return build_request(contract)

    def fetch(self, contract: EncryptionContract) -> KeySet:
        """Request keys for ``contract``; returns the validated key set with keys decrypted."""
        req = self.prepare(contract)
        body, headers = self.post(req)
        try:
            doc = parse_cpix(body, max_bytes=self.max_response_bytes)
            keys = validate_response(req, doc, headers=headers, delivery_key=self.delivery_key)
        except SpekePackagerError as exc:
            self._trace_fail(exc, "invalid")
            raise
        self._trace_keys(keys)
        return keys

    def fetch_periods(self, contract: EncryptionContract, periods: Sequence[KeyPeriod], *,
                      per_request: int = 1) -> KeySet:
        """The keys of several key periods, ``per_request`` periods per SPEKE request; merged
        key set. SPEKE v2 allows one period per request (``intendedTrackType`` is unique in a
        document), so ``per_request`` > 1 needs SPEKE v1, whose server must accept several
        keys in one document (CPIX does; AWS's SPEKE v1 text allows one key per request)."""
        if not periods:
            raise UsageError("at least one key period is required")
        check_periods_per_request(contract.version, per_request)
        entries: list[KeyEntry] = []
        plist = list(periods)
        for i in range(0, len(plist), per_request):
            group = tuple(plist[i:i + per_request])
            c = (replace(contract, period=group[0], periods=()) if len(group) == 1
                 else replace(contract, period=None, periods=group))
            entries.extend(self.fetch(c).entries)
        return KeySet(content_id=contract.content_id, scheme=contract.scheme,
                      entries=tuple(entries), version=contract.version)

    def post(self, req: SpekeRequest) -> tuple[bytes, dict[str, str]]:
        """POST ``req`` with retries; returns (body, headers) of the 200 answer."""
        self.attempts = 0
        last: Exception | None = None
        deadline = _Deadline(self.total, redact_url(self.url))
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    delay = self._delay(attempt, last)
                    if delay >= deadline.remaining():
                        log.info("no retry: the total deadline of %ss would pass first",
                                 self.total)
                        break
                    log.info("retrying SPEKE request in %.2fs (attempt %d of %d)", delay,
                             attempt + 1, self.retries + 1)
                    self._sleep(delay)
                try:
                    return self._once(req, deadline)
                except _Retry as r:
                    last = r
                    log.info("SPEKE request failed: %s", r.error)
                    self._trace_fail(r.error)
                except SpekePackagerError as exc:
                    self._trace_fail(exc)
                    raise
        finally:
            deadline.cancel()
        assert isinstance(last, _Retry)
        raise last.error

    # ---- internals -----------------------------------------------------------------------

    def _delay(self, attempt: int, last: Exception | None) -> float:
        if isinstance(last, _Retry) and last.delay is not None:
            return min(last.delay, _MAX_RETRY_AFTER)
        return backoff_delay(attempt, self.backoff, self.max_backoff)

    def _verify(self) -> bool | str:
        bundle = self.auth.ca_bundle()
        if bundle is not None and self.verify_tls is not False:
            return bundle
        return self.verify_tls

    def _http_auth(self) -> requests.auth.AuthBase | None:
        creds = self.auth.http_auth()
        if creds is None:
            return None
        kind, user, password = creds
        if kind == "digest":
            return requests.auth.HTTPDigestAuth(user, password)
        return requests.auth.HTTPBasicAuth(user, password)

    def _once(self, req: SpekeRequest, deadline: _Deadline | None = None
              ) -> tuple[bytes, dict[str, str]]:
        deadline = deadline or _Deadline(None, "")
        self.attempts += 1
        headers = self.auth.sign("POST", self.url, req.headers, req.body)
        traced = self._trace_begin(headers, req.body)
        left = deadline.remaining()
        timeout = (min(self.timeout[0], left), min(self.timeout[1], left))
        url = redact_url(self.url)
        try:
            with warnings.catch_warnings(), deadline.watching():
                warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning: logged above
                resp = self._session.post(
                    self.url, data=req.body, headers=headers, timeout=timeout,
                    verify=self._verify(), cert=self.auth.client_cert(), stream=True,
                    allow_redirects=False, auth=self._http_auth(),
                )
                try:
                    body = self._read(resp)
                finally:
                    resp.close()
        except requests.exceptions.SSLError as exc:
            raise KeyServerError(f"TLS error talking to the key server: {_short(exc)}",
                                 url=url) from None
        except requests.Timeout as exc:
            raise _Retry(KeyServerTimeout(
                f"key server timed out (connect {self.timeout[0]}s, read {self.timeout[1]}s)",
                url=url)) from exc
        except requests.ConnectionError as exc:
            if "timed out" in str(exc).lower():  # read timeout while streaming the body
                raise _Retry(KeyServerTimeout(
                    f"key server timed out while sending its answer (read {self.timeout[1]}s)",
                    url=url)) from exc
            raise _Retry(KeyServerError(f"cannot reach the key server: {_short(exc)}",
                                        url=url)) from exc
        except (requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            # the answer stopped short of its Content-Length: a broken transfer, like a reset
            raise _Retry(KeyServerError(f"key server answer was cut short: {_short(exc)}",
                                        url=url)) from exc
        except requests.RequestException as exc:
            raise KeyServerError(f"HTTP error talking to the key server: {_short(exc)}",
                                 url=url) from None
        rheaders = {k: v for k, v in resp.headers.items()}
        self._trace_answer(traced, resp.status_code, rheaders, body)
        if resp.status_code == 200:
            return body, rheaders
        err = http_error(url, resp.status_code, rheaders, body, reason=resp.reason)
        if resp.status_code in RETRY_STATUSES and not any(m in err.server_message
                                                          for m in _FINAL_MESSAGES):
            raise _Retry(err, _retry_after(resp.headers.get("retry-after")))
        raise err

    # ---- trace hooks (keys/trace.py) ---------------------------------------------------------

    def _trace_begin(self, headers: Mapping[str, str], body: bytes) -> int | None:
        if self.trace is None:
            return None
        return self.trace.begin(self.url, headers, body, self.attempts)

    def _trace_answer(self, n: int | None, status: int, headers: Mapping[str, str],
                      body: bytes) -> None:
        if self.trace is not None and n is not None:
            self.trace.answer(n, status, headers, body)

    def _trace_fail(self, error: Exception, result: str | None = None) -> None:
        if self.trace is None:
            return
        if result is None:
            result = "http-error" if isinstance(error, KeyServerHTTPError) else "transport-error"
        self.trace.fail(self.trace.last_id, error, result)

    def _trace_keys(self, keys: KeySet) -> None:
        if self.trace is not None:
            self.trace.scrub(e.key.key for e in keys.entries)

    def _read(self, resp: requests.Response) -> bytes:
        cap = self.max_response_bytes
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            raise KeyServerError(f"key server answer is {length} bytes, over the {cap} limit",
                                 url=redact_url(self.url))
        chunks: list[bytes] = []
        total = 0
        for chunk in resp.iter_content(65536):
            total += len(chunk)
            if total > cap:
                raise KeyServerError(f"key server answer exceeds the {cap}-byte limit",
                                     url=redact_url(self.url))
            chunks.append(chunk)
        return b"".join(chunks)


def http_error(url: str, status: int, headers: Mapping[str, str], body: bytes, *,
               reason: str | None = None) -> KeyServerHTTPError:
    """The error for a non-200 answer, with the server's own message decoded from its body and
    headers (SPEKE v2 strings, JSON ``message``, ``x-amzn-ErrorType``, ``X-AxDRM-ErrorMessage``,
    ``x-*-error*``, request id), one line, truncated and redacted."""
    answer = decode_error_answer(status, headers, body)
    low = {k.lower(): v for k, v in headers.items()}
    agent = low.get("x-speke-user-agent") or low.get("speke-user-agent")
    who = f" ({redact_text(agent[:60])})" if agent else ""
    said = answer.describe() or reason or "no message"
    return KeyServerHTTPError(f"key server answered HTTP {status}{who}: {said}", url=url,
                              status=status, server_message=answer.message,
                              error_type=answer.error_type, request_id=answer.request_id)


def backoff_delay(n: int, base: float, cap: float) -> float:
    """The wait before retry ``n`` (1, 2, ...): ``base * 2**(n-1)`` capped at ``cap``, of which
    a random 50-100 % (jitter: clients that failed together do not retry together)."""
    step = min(cap, base * (2.0 ** min(n - 1, 62)))
    return float(step * (0.5 + random.random() / 2))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # HTTP-date form: fall back to our own back-off


def _short(exc: Exception) -> str:
    text = redact_text(str(exc))
    return text if len(text) < 200 else text[:200] + "..."


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() in ("localhost", "localhost.localdomain") or \
            host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---- the total deadline --------------------------------------------------------------------
# requests/urllib3 time out each socket operation only: a server that sends a byte now and then
# holds a request for ever. The adapter below hands every socket it connects (or reads an answer
# from) to the deadline of the request running on this thread; when the deadline passes, a
# timer shuts those sockets down, the blocked read returns, and the request fails as a timeout.

_CURRENT = threading.local()


class _Deadline:
    """The overall deadline of one key request (all attempts); ``seconds=None``: none."""

    def __init__(self, seconds: float | None, url: str) -> None:
        self.seconds = seconds
        self.url = url
        self.at = None if seconds is None else time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def remaining(self) -> float:
        return float("inf") if self.at is None else max(0.0, self.at - time.monotonic())

    def register(self, sock: socket.socket | None) -> None:
        if sock is None or self.at is None:
            return
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shut(sock)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._socks.clear()

    def error(self) -> KeyServerTimeout:
        err = KeyServerTimeout(f"key server did not answer within the total deadline of "
                               f"{self.seconds}s", url=self.url)
        err.transient = True
        return err

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Sockets used on this thread meanwhile are cut at the deadline; a request that failed
        or came back short because of that raises :class:`KeyServerTimeout`."""
        _CURRENT.deadline = self
        try:
            yield
        except requests.RequestException as exc:
            if self.expired:
                raise self.error() from exc
            raise
        finally:
            _CURRENT.deadline = None
        if self.expired:
            raise self.error()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw socket, under any TLS layer


def _watch(sock: socket.socket | None) -> None:
    deadline: _Deadline | None = getattr(_CURRENT, "deadline", None)
    if deadline is not None:
        deadline.register(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    # _new_conn: the TCP socket, before any TLS handshake (so a dripping handshake is cut too);
    # getresponse: a kept-alive connection reused for this request
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self) -> Any:
        _watch(self.sock)
        return super().getresponse()


class _HTTPSConnection(_HTTPConnection, urllib3.connection.HTTPSConnection):
    """The same watch over TLS (the methods above run before HTTPSConnection's in the MRO)."""


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


# urllib3's messages name the class ("HTTPConnectionPool(host=...): Max retries exceeded"):
# keep the names users know
for _cls in (_HTTPConnection, _HTTPSConnection, _HTTPPool, _HTTPSPool):
    _cls.__name__ = _cls.__qualname__ = _cls.__mro__[1].__name__


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections honour :class:`SpekeClient`'s total deadline.
    Mounted on the client's session for the key server's URL (see
    :func:`_mount_deadline_adapter`)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


def _mount_deadline_adapter(session: requests.Session, url: str) -> None:
    """Mount :class:`DeadlineAdapter` for ``url``'s origin unless the session already uses a
    custom adapter there (then the total deadline is checked between reads only)."""
    current = session.get_adapter(url)
    if isinstance(current, DeadlineAdapter) or type(current) is not requests.adapters.HTTPAdapter:
        return
    parts = urlsplit(url)
    session.mount(f"{parts.scheme}://{parts.netloc}",
                  DeadlineAdapter(max_retries=current.max_retries))


def fetch_keys(url: str, contract: EncryptionContract, **kw: object) -> KeySet:
    """One-shot: ``SpekeClient(url, **kw).fetch(contract)``."""
    return SpekeClient(url, **kw).fetch(contract)  # type: ignore[arg-type]
