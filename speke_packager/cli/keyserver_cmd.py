"""``speke-packager keyserver``: run the local SPEKE test key server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from ..constants import HTTP_DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS
from ..constants import HTTP_DEFAULT_REQUEST_TIMEOUT as DEFAULT_REQUEST_TIMEOUT
from ..errors import UsageError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "keyserver",
        help="run the local SPEKE v1/v2 test key server (ClearKey licences, HLS key URLs)",
        description="Offline, deterministic SPEKE v1/v2.0/v2.1 key server for local end-to-end "
        "tests. Prints 'listening on URL' when ready; SIGINT/SIGTERM stop it.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8099, help="port (default 8099; 0 = any free)")
    p.add_argument("--seed", default="speke-packager",
                   help="secret the content keys are derived from (default: speke-packager)")
    p.add_argument("--content-id", dest="content_id", default=None,
                   help="default content ID for /keys and licence requests of unknown KIDs")
    p.add_argument("--require-sigv4", action="store_true",
                   help="require AWS SigV4 on every route that hands out keys (SPEKE, /keys, "
                   "ClearKey licence); credentials from AWS_ACCESS_KEY_ID / "
                   "AWS_SECRET_ACCESS_KEY")
    p.add_argument("--tls-cert", help="PEM certificate (chain) to serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--client-ca", help="PEM CA bundle; clients of every key route must present "
                   "a certificate it signed")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="fault switch for every request, e.g. 'delay=2', 'status=503', "
                   "'drop=PSSH' (repeatable; see the README)")
    p.add_argument("--allow-fault-header", action="store_true",
                   help="honour the x-fault request header (tests only: lets any client that "
                   "reaches the server switch faults on)")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   help="connections served at once; more get 503 (default "
                   f"{DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT,
                   metavar="SECONDS", help="deadline for a whole request (line, headers, body) "
                   f"and keep-alive idle time (default {DEFAULT_REQUEST_TIMEOUT:g})")
    p.add_argument("--mac-layout", choices=["A", "B"], default="B",
                   help="MACMethod key layout of encrypted answers (default B)")
    p.add_argument("--max-body", type=int, default=4 << 20, help="request body limit in bytes")
    p.add_argument("--log-requests", action="store_true", help="log one line per request")
    p.add_argument("--key", action="append", default=[], metavar="KID:KEY",
                   help="also serve this raw key on /keys/<kid> and the ClearKey licence "
                        "endpoint (repeatable; for packages made with encrypt-vod --key; "
                        "test keys only: command lines are visible to other local users)")
    p.add_argument("--key-file", metavar="FILE",
                   help="like --key, one KID:KEY per line read from FILE (# comments)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    creds: tuple[str, str] | None = None
    if args.require_sigv4:
        access = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise UsageError("--require-sigv4 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        creds = (access, secret)
    if args.log_requests:
        logging.getLogger("speke_packager.keyserver").setLevel(logging.INFO)
    from ..keyserver import KeyServer  # heavy (lxml, cryptography): only when it runs
    from ..pipeline.rawkeys import parse_raw_key, read_key_file

    specs = (read_key_file(args.key_file) if args.key_file else []) + list(args.key)

    server = KeyServer(
        host=args.host, port=args.port, seed=args.seed, faults=args.fault,
        require_sigv4=args.require_sigv4, sigv4_credentials=creds, tls_cert=args.tls_cert,
        tls_key=args.tls_key, client_ca=args.client_ca, log_requests=args.log_requests,
        max_body=args.max_body, default_content_id=args.content_id, mac_layout=args.mac_layout,
        allow_fault_header=args.allow_fault_header, max_connections=args.max_connections,
        request_timeout=args.request_timeout,
    )
    for spec in specs:
        _, kid, key = parse_raw_key(spec)
        server.register_key(kid, key)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"listening on {server.url}", flush=True)
        server.serve_until(stop)
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("stopped", file=sys.stderr)
    return 0
