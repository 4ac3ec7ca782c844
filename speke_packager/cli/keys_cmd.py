"""``keys`` (fetch a key set from a SPEKE server) and ``cpix`` (check a CPIX document).

``keys --json`` prints one object::

    {"content_id": str, "speke_version": "1.0"|"2.0"|"2.1", "scheme": str,
     "keys": [{"kid": str, "track_type": str, "period": int|null, "iv": hex|null,
               "key": hex (only with --show-keys),
               "drm": {"<systemId>": {"name": str, "pssh": base64|null,
                                      "content_protection_data": str|null,
                                      "hls_media": str|null, "hls_master": str|null,
                                      "playready_object": base64|null}}}]}

``cpix FILE --json`` prints one object::

    {"kind": "request"|"response", "speke_version": str, "content_id": str|null,
     "cpix_version": str|null, "recipients": int, "schema_valid": bool,
     "schema_errors": [str], "warnings": [str],
     "keys": [{"kid": str, "scheme": str|null, "track_type": str|null, "periods": [int|null],
               "value": "plain"|"encrypted"|"decrypted"|"none", "iv": hex|null,
               "key": hex (only with --show-keys),
               "drm": {"<systemId>": {"name": str, "elements": [str]}}}]}

Content keys are printed only under ``--show-keys``. Exit status 0 = valid; an invalid
document prints one ``speke-packager: error: [check] ...`` line and exits non-zero.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..constants import DrmSystem, Packaging, Scheme, SpekeVersion
from ..errors import UsageError
from ..model import KeyPeriod

# The key-server client (requests, cryptography, lxml) is imported inside the functions that
# use it: building the parser for ``--help`` or another sub-command must stay cheap.
if TYPE_CHECKING:
    from ..keys.auth import Auth
    from ..keys.client import SpekeClient
    from ..keys.envelope import DeliveryKey
    from ..keys.inspection import CpixReport
    from ..keys.request import EncryptionContract
    from ..keys.trace import TraceRecorder
    from ..model import KeySet

__all__ = [
    "add_connection_arguments",
    "add_speke_arguments",
    "contract_from_args",
    "keyset_to_json",
    "periods_from_args",
    "register",
    "report_to_json",
    "speke_client_from_args",
    "trace_from_args",
]

log = logging.getLogger(__name__)


def add_speke_arguments(parser: argparse.ArgumentParser) -> None:
    """The SPEKE options shared by ``keys`` and ``encrypt-vod``."""
    g = parser.add_argument_group("SPEKE key server")
    g.add_argument("--speke-url", help="SPEKE endpoint URL (used unchanged)")
    g.add_argument("--content-id", help="content id (a letter, then letters, digits, . _ -)")
    g.add_argument("--drm", default=None,
                   help="comma-separated DRM systems: widevine, playready, fairplay, clearkey, "
                        "aes-128, or system ids (default: widevine)")
    g.add_argument("--speke-version", default="2.0", choices=["1.0", "2.0", "2.1"],
                   help="SPEKE protocol version (default 2.0)")
    g.add_argument("--packaging", default=None,
                   help="comma-separated outputs: dash, hls-ts, hls-fmp4 (cmaf) (default dash)")
    g.add_argument("--scheme", default=None, choices=[s.value for s in Scheme],
                   help="encryption scheme (default cbcs)")
    g.add_argument("--video-preset", default="PRESET-VIDEO-1",
                   help="SPEKE v2 video preset: PRESET-VIDEO-1..8, SHARED, UNENCRYPTED")
    g.add_argument("--audio-preset", default="PRESET-AUDIO-1",
                   help="SPEKE v2 audio preset: PRESET-AUDIO-1..3, SHARED, UNENCRYPTED")
    g.add_argument("--key-periods", metavar="FIRST:COUNT",
                   help="key rotation: COUNT key periods starting at index FIRST (one request "
                        "each)")
    g.add_argument("--explicit-iv", action=argparse.BooleanOptionalAction, default=None,
                   help="send our own random explicitIV per key and require its echo (default: "
                        "on for FairPlay, aes-128 and HLS AES-128/SAMPLE-AES/MPEG-TS, where the "
                        "IV is used; --no-explicit-iv lets the key server choose)")
    add_connection_arguments(parser)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """How to reach the key server: auth, TLS, timeouts, retries, encrypted keys, --trace (shared
    by ``keys``, ``encrypt-vod``, ``verify`` and ``conformance``)."""
    a = parser.add_argument_group("key server authentication and TLS")
    a.add_argument("--auth", default="none", choices=["none", "sigv4", "mtls", "basic", "digest"],
                   help="none, AWS SigV4, mutual TLS, or HTTP basic/digest (--user; password "
                        "from the SPEKE_PASSWORD environment variable)")
    a.add_argument("--user", help="user name for --auth basic/digest")
    a.add_argument("--region", help="AWS region for SigV4 (default: from the URL)")
    a.add_argument("--role-arn", help="IAM role to assume through STS before signing")
    a.add_argument("--client-cert", help="client certificate (PEM) for mutual TLS")
    a.add_argument("--client-key", help="client private key (PEM) for mutual TLS")
    a.add_argument("--ca-bundle", help="CA bundle to verify the key server with")
    a.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="extra request header (API keys, basic auth); repeatable")
    a.add_argument("--insecure", action="store_true",
                   help="do NOT verify the key server's TLS certificate (testing only)")
    a.add_argument("--timeout", default="5,30,120", metavar="CONNECT[,READ[,TOTAL]]",
                   help="seconds: CONNECT and READ bound each socket operation, TOTAL a whole "
                        "key request, retries and back-off included (default 5,30,120)")
    a.add_argument("--retries", type=int, default=3,
                   help="extra attempts on connection errors, timeouts, 408/429/5xx, within "
                        "the TOTAL of --timeout (default 3)")
    d = parser.add_argument_group("encrypted content keys")
    d.add_argument("--delivery-cert", help="our delivery certificate (PEM/DER) to ask for "
                                           "encrypted content keys")
    d.add_argument("--delivery-key", help="its private key (PEM/DER), or a PKCS#12 file with "
                                          "both")
    d.add_argument("--delivery-key-password", help="password of the delivery key / PKCS#12")
    t = parser.add_argument_group("support")
    t.add_argument("--trace", metavar="DIR",
                   help="save every SPEKE exchange into DIR, content keys, encrypted keys and "
                        "credentials masked: a support bundle for the key server's vendor")


def _timeout(text: str) -> tuple[float, float, float]:
    """``--timeout CONNECT[,READ[,TOTAL]]``: one value is the read timeout (connect at most 5);
    TOTAL defaults to 120 and is at least READ (SpekeClient documents the budget)."""
    usage = f"--timeout must be CONNECT[,READ[,TOTAL]] positive seconds, got {text!r}"
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(usage) from None
    if len(parts) == 1:
        parts = [min(5.0, parts[0]), parts[0]]
    if len(parts) == 2:
        parts.append(max(120.0, parts[1]))
    if len(parts) != 3 or not all(0 < p < math.inf for p in parts):
        raise UsageError(usage)
    return parts[0], parts[1], parts[2]


def _auth_from_args(args: argparse.Namespace) -> Auth:
    from ..keys.auth import (
        BasicAuth,
        DigestAuth,
        HeaderAuth,
        MtlsAuth,
        NoAuth,
        SigV4Auth,
        parse_header,
    )

    headers = dict(parse_header(h) for h in args.header)
    mode = args.auth
    if mode == "sigv4":
        base: Auth = SigV4Auth(args.region, role_arn=args.role_arn)
    elif mode == "mtls":
        if not (args.client_cert and args.client_key):
            raise UsageError("--auth mtls needs --client-cert and --client-key")
        base = MtlsAuth(args.client_cert, args.client_key, args.ca_bundle)
    elif mode in ("basic", "digest"):
        password = os.environ.get("SPEKE_PASSWORD")
        if not args.user or password is None:
            raise UsageError(f"--auth {mode} needs --user and the SPEKE_PASSWORD environment "
                             "variable")
        base = DigestAuth(args.user, password) if mode == "digest" else BasicAuth(args.user,
                                                                                  password)
    else:
        base = NoAuth()
    if mode != "mtls" and (args.client_cert or args.client_key):
        raise UsageError("--client-cert/--client-key need --auth mtls")
    if headers:
        return _combined(base, HeaderAuth(headers))
    return base


def _combined(signer: Auth, headers: Auth) -> Auth:
    """``signer`` with static ``headers`` added first (the class is built lazily with its base)."""
    from ..keys.auth import Auth

    class _Combined(Auth):
        """Static headers first, then the signer (so SigV4 covers them)."""

        def __init__(self, signer: Auth, headers: Auth) -> None:
            self._signer = signer
            self._headers = headers

        def sign(self, method: str, url: str, headers: Any, body: bytes) -> dict[str, str]:
            return self._signer.sign(method, url, self._headers.sign(method, url, headers, body),
                                     body)

        def client_cert(self) -> tuple[str, str] | None:
            return self._signer.client_cert()

        def ca_bundle(self) -> str | None:
            return self._signer.ca_bundle()

        def http_auth(self) -> tuple[str, str, str] | None:
            return self._signer.http_auth()

        def describe(self) -> str:
            return f"{self._signer.describe()}+{self._headers.describe()}"

    return _Combined(signer, headers)


def _delivery_key(args: argparse.Namespace) -> DeliveryKey | None:
    from ..keys.envelope import DeliveryKey

    cert = getattr(args, "delivery_cert", None)
    key = getattr(args, "delivery_key", None)
    pw = getattr(args, "delivery_key_password", None)
    if cert and not key:
        raise UsageError("--delivery-cert needs --delivery-key to decrypt the answer")
    if key and not cert:
        return DeliveryKey.load(key, None, pw)  # PKCS#12 or PEM bundle
    if key and cert:
        return DeliveryKey.load(cert, key, pw)
    return None


def speke_client_from_args(args: argparse.Namespace) -> SpekeClient:
    """A :class:`SpekeClient` from the options of :func:`add_speke_arguments`."""
    if not args.speke_url:
        raise UsageError("--speke-url is required")
    verify: bool | str = True
    if args.insecure:
        verify = False
        print("speke-packager: warning: TLS verification of the key server is disabled",
              file=sys.stderr)
    elif args.ca_bundle:
        verify = args.ca_bundle
    from ..keys.client import SpekeClient

    return SpekeClient(args.speke_url, auth=_auth_from_args(args), timeout=_timeout(args.timeout),
                       retries=args.retries, delivery_key=_delivery_key(args), verify_tls=verify,
                       trace=trace_from_args(args))


def trace_from_args(args: argparse.Namespace) -> TraceRecorder | None:
    """``--trace DIR`` -> a :class:`TraceRecorder` (None without the option)."""
    directory = getattr(args, "trace", None)
    if not directory:
        return None
    from ..keys.trace import TraceRecorder

    return TraceRecorder(directory)


def periods_from_args(args: argparse.Namespace) -> list[KeyPeriod]:
    """``--key-periods FIRST:COUNT`` -> key periods (empty without the option)."""
    text = getattr(args, "key_periods", None)
    if not text:
        return []
    first, sep, count = text.partition(":")
    try:
        f, n = int(first), int(count) if sep else 1
    except ValueError:
        raise UsageError(f"--key-periods must be FIRST:COUNT, got {text!r}") from None
    from ..keys.request import key_periods

    return key_periods(f, n)


def drms_from_args(args: argparse.Namespace) -> tuple[DrmSystem, ...]:
    """``--drm a,b,...`` as DRM systems (empty when the option was not given)."""
    try:
        return tuple(DrmSystem.from_name(d) for d in (args.drm or "").split(",") if d.strip())
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def contract_from_args(
    args: argparse.Namespace,
    *,
    packaging: tuple[Packaging, ...] | None = None,
    scheme: Scheme | None = None,
) -> EncryptionContract:
    """The encryption contract of the options (``packaging``/``scheme`` override them). With
    ``--key-periods`` the contract carries the first period; see :func:`periods_from_args`."""
    if not args.content_id:
        raise UsageError("--content-id is required")
    drms = drms_from_args(args) if args.drm else (DrmSystem.WIDEVINE,)
    if packaging is None:
        try:
            packaging = tuple(Packaging.parse(p) for p in (args.packaging or "dash").split(",")
                              if p.strip())
        except ValueError:
            raise UsageError(f"unknown --packaging {args.packaging!r} (dash, hls-ts, hls-fmp4)"
                             ) from None
    if scheme is None:
        scheme = Scheme(args.scheme) if args.scheme else Scheme.CBCS
    periods = periods_from_args(args)
    from ..keys.request import EncryptionContract

    return EncryptionContract(
        content_id=args.content_id,
        drm=drms,
        packaging=packaging,
        scheme=scheme,
        version=SpekeVersion(args.speke_version),
        video_preset=args.video_preset,
        audio_preset=args.audio_preset,
        period=periods[0] if periods else None,
        explicit_iv=getattr(args, "explicit_iv", None),
    )


# ---- output --------------------------------------------------------------------------------


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def keyset_to_json(ks: KeySet, *, show_keys: bool) -> dict[str, Any]:
    """The documented ``keys --json`` object."""
    keys = []
    for e in ks:
        item: dict[str, Any] = {
            "kid": str(e.kid), "track_type": e.track_type,
            "period": e.period.index if e.period else None,
            "iv": e.key.iv.hex() if e.key.iv else None,
        }
        if show_keys:
            item["key"] = e.key.key.hex()
        item["drm"] = {
            str(s.system_id): {
                "name": s.drm.label, "pssh": _b64(s.pssh),
                "content_protection_data": s.content_protection_data,
                "hls_media": s.hls_media, "hls_master": s.hls_master,
                "playready_object": _b64(s.playready_object),
            } for s in e.drm
        }
        keys.append(item)
    return {"content_id": ks.content_id, "speke_version": ks.version.value if ks.version else None,
            "scheme": ks.scheme.value, "keys": keys}


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _keys_handler(args: argparse.Namespace) -> int:
    contract = contract_from_args(args)
    client = speke_client_from_args(args)
    periods = periods_from_args(args)
    ks = client.fetch_periods(contract, periods) if periods else client.fetch(contract)
    if args.json:
        print(json.dumps(keyset_to_json(ks, show_keys=args.show_keys), indent=2))
        return 0
    header = ["KID", "TRACK TYPE", "PERIOD", "DRM SYSTEMS"]
    if args.show_keys:
        header.append("KEY")
    rows = []
    for e in ks:
        row = [str(e.kid), e.track_type, str(e.period.index) if e.period else "-",
               ",".join(s.drm.label for s in e.drm)]
        if args.show_keys:
            row.append(e.key.key.hex())
        rows.append(row)
    print(_table(rows, header))
    return 0


def report_to_json(r: CpixReport, *, show_keys: bool) -> dict[str, Any]:
    return {
        "kind": r.kind, "speke_version": r.speke_version, "content_id": r.content_id,
        "cpix_version": r.cpix_version, "recipients": r.recipients,
        "schema_valid": not r.schema_errors, "schema_errors": list(r.schema_errors),
        "warnings": list(r.warnings),
        "keys": [
            {"kid": k.kid, "scheme": k.scheme, "track_type": k.track_type,
             "periods": list(k.periods), "value": k.value,
             "iv": k.iv.hex() if k.iv else None,
             **({"key": k.key.hex()} if show_keys and k.key is not None else {}),
             "drm": {sid: {"name": name, "elements": list(els)} for sid, name, els in k.drm}}
            for k in r.keys
        ],
    }


def _cpix_handler(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    from ..keys.envelope import DeliveryKey
    from ..keys.inspection import inspect_cpix

    dk = DeliveryKey.load(args.delivery_key, None, args.password) if args.delivery_key else None
    report = inspect_cpix(data, dk)
    if args.json:
        print(json.dumps(report_to_json(report, show_keys=args.show_keys), indent=2))
    else:
        print(f"{path.name}: CPIX {report.kind}, SPEKE {report.speke_version}, content id "
              f"{report.content_id}, {len(report.keys)} keys, {report.recipients} recipients")
        rows = []
        for k in report.keys:
            row = [k.kid, k.track_type or "-", ",".join("-" if p is None else str(p)
                                                         for p in k.periods) or "-",
                   k.value, ",".join(f"{name}({len(els)})" for _, name, els in k.drm) or "-"]
            if args.show_keys:
                row.append(k.key.hex() if k.key else "-")
            rows.append(row)
        header = ["KID", "TRACK TYPE", "PERIODS", "VALUE", "DRM (filled elements)"]
        if args.show_keys:
            header.append("KEY")
        if rows:
            print(_table(rows, header))
        for e in report.schema_errors[:5]:
            print(f"schema: {e}")
        for w in report.warnings:
            print(f"warning: {w}")
    if args.strict_schema and report.schema_errors:
        raise UsageError(f"{path.name} is not valid against the CPIX 2.3 XSD: "
                         f"{report.schema_errors[0]}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys`` and ``cpix`` sub-commands."""
    p = subparsers.add_parser("keys", help="fetch a key set from a SPEKE key server",
                              description="Request content keys and DRM signaling from a SPEKE "
                                          "v1/v2.0/v2.1 key server and print them.")
    add_speke_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (see docs)")
    p.add_argument("--show-keys", action="store_true", help="also print the content keys")
    p.set_defaults(func=_keys_handler)

    c = subparsers.add_parser("cpix", help="parse and check a CPIX document",
                              description="Parse and validate any CPIX document (a key server "
                                          "answer or a saved request); decrypt keys with a "
                                          "delivery key.")
    c.add_argument("file", help="the CPIX document")
    c.add_argument("--delivery-key", help="PKCS#12 (or PEM cert+key bundle) to decrypt keys")
    c.add_argument("--password", help="password of the delivery key")
    c.add_argument("--json", action="store_true")
    c.add_argument("--show-keys", action="store_true", help="print decrypted/plain keys")
    c.add_argument("--strict-schema", action="store_true",
                   help="fail when a CPIX 2.3/2.4 document does not validate against the XSD")
    c.set_defaults(func=_cpix_handler)
