"""Local SPEKE test key server: SPEKE v1/v2.0/v2.1, ClearKey licences, HLS key URLs, faults.

Offline and deterministic: every content key is :func:`derive_key` =
``HMAC-SHA256(seed, content_id + "\\x00" + lower-case KID)[:16]``, so a restarted server with the
same seed gives the same keys. Start it in-process (``with KeyServer() as ks: ks.speke_url``) or
with ``speke-packager keyserver``.

Endpoints
---------
``POST /speke`` (alias ``/copyProtection``; any other POST path too)
    SPEKE. ``X-Speke-Version`` (any header case) absent = v1, ``2.0``/``2.1`` = v2, anything else
    422 ``Unsupported SPEKE version``. The answer echoes the version header, ``contentId`` and
    ``version`` (v1 ``id``), periods and usage rules, adds ``X-Speke-User-Agent`` (v1
    ``Speke-User-Agent``) and fills exactly the requested placeholders: Widevine v0 pssh with
    WidevinePsshData, PlayReady PRO (WRMHEADER 4.0 cenc / 4.2 cenc multi-key / 4.3 cbcs) and its
    pssh, FairPlay ``skd://<kid>``, ClearKey common v1 pssh + ``dashif:Laurl`` to this server's
    licence URL, AES-128 key URL; HLS ``#EXT-X-KEY``/``#EXT-X-SESSION-KEY`` lines (the HLS
    AES-128 systems ``3ea8778f-…``/``81376844-…`` always ``METHOD=AES-128``); v1
    ``URIExtXKey``, ``speke:KeyFormat``, ``speke:KeyFormatVersions``, ``speke:ProtectionHeader``.
    With a ``DeliveryDataList`` the keys are encrypted (RSA-OAEP-SHA1 document and MAC keys,
    AES-256-CBC, HMAC-SHA512), MAC key layout B by default (``mac_layout="A"`` or ``layout=A``).
    v2 errors are 422 with the exact SPEKE v2 strings; v1 errors are 400. A v2 request must name
    a ``DRMSystem`` for every key (422 ``Missing DRMSystem``).
``POST /clearkey/license``
    W3C ClearKey: ``{"kids": [...]}`` -> ``{"keys": [{"kty": "oct", "kid", "k"}]}`` (base64url, no
    padding). Knows keys registered with :meth:`KeyServer.register_key`, KIDs issued earlier, and
    any KID when ``?content_id=`` or ``default_content_id`` is given. CORS, OPTIONS preflight.
``GET /keys/{kid}`` (32 hex digits or 8-4-4-4-12)
    The raw 16-byte key (HLS AES-128 / SAMPLE-AES identity URI); same lookup and CORS.
``GET /healthz``; ``GET .../heartbeat`` (SPEKE v1 heartbeat).

Key periods: v2.0/v2.1 requests carry one ``ContentKeyPeriod`` (every ``intendedTrackType`` is
unique in a document), v1 requests one or several (one key per period, each with a usage rule
whose ``KeyPeriodFilter`` names a declared period: 400 otherwise). The period list and rules
come back unchanged. :meth:`KeyServer.speke_requests` lists the SPEKE requests received (body
and version header, the last 256) so tests can see what a client sent.

Access: with ``require_sigv4`` / ``client_ca`` every route that hands out key material (SPEKE,
``/keys``, the ClearKey licence) needs a valid signature / client certificate; one check
(``_Handler._admit``) applies to all of them.

Status codes: 400 malformed, 401 missing / 403 wrong SigV4 signature, 403 missing client
certificate (mutual TLS), 404, 405, 411 no Content-Length, 413 body over ``max_body``, 422 SPEKE
v2 request errors, 503 every one of ``max_connections`` busy, 500 only for the server's own
failures (never a traceback on the wire).

Fault switches
--------------
For every request with ``faults=[SPEC, ...]`` / ``--fault SPEC`` (repeatable), or per request
with the header ``x-fault: SPEC`` when the server was started with ``allow_fault_header=True`` /
``--allow-fault-header`` (otherwise the header is ignored). SPEC is a comma-separated list of:

====================== ==========================================================================
``delay=S``            wait S seconds (0-120) before answering (client timeouts)
``status=N``           answer HTTP N with a plain-text body instead of the real answer
``reset``              close the connection with a TCP reset, no answer
``truncate``           send only the first half of the body (Content-Length says so)
``partial``            (SPEKE) announce the whole body, send half of it, close the connection
``version=X``          send ``X-Speke-Version: X`` (``version=none``: leave it out)
``no-user-agent``      leave out ``X-Speke-User-Agent`` / ``Speke-User-Agent``
``drop=<Element>``     remove every element with that local name (``PSSH``, ``HLSSignalingData``,
                       ``ContentKeyUsageRuleList``, ``DeliveryData``, ...) from the answer
``empty=<Element>``    keep those elements but empty them (no text, no children)
``wrong-kid``          change the first ``ContentKey@kid`` only (DRMSystem and rules keep the old
                       KID); on ``/keys`` and the licence endpoint: serve another KID's key
``bad-mac``            corrupt the first encrypted key's ``ValueMAC`` (needs encrypted keys)
``plain-key``          return ``PlainValue`` keys although a DeliveryDataList asked for encryption
``pssh-mismatch``      the ``cenc:pssh`` inside ``ContentProtectionData`` differs from ``PSSH``
``change-scheme``      return another ``commonEncryptionScheme`` (cenc <-> cbcs)
``change-rules``       alter the first usage rule's ``intendedTrackType``
``change-content-id``  return a different ``contentId`` (v1 ``id``)
``duplicate-kid``      send the first ``ContentKey`` twice (same KID)
``swap-periods``       swap the ``KeyPeriodFilter@periodId`` of the first two usage rules (a
                       multi-period answer whose keys claim each other's key period)
``times=N``            (server-wide faults only) fault the first N requests, answer the rest
``layout=A|B``         (not a fault) MAC key layout of encrypted answers
====================== ==========================================================================
"""

from __future__ import annotations

from .derive import derive_key
from .faults import FAULT_NAMES, FaultError, Faults, parse_faults
from .request import SpekeRequestError
from .server import KeyServer

__all__ = [
    "FAULT_NAMES",
    "FaultError",
    "Faults",
    "KeyServer",
    "SpekeRequestError",
    "derive_key",
    "parse_faults",
]
