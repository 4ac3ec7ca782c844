"""``verify`` and ``serve`` sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from uuid import UUID

from ..errors import VerificationError
from .storage_args import add_storage_arguments, storage_options


def parse_key_option(text: str) -> tuple[UUID, bytes]:
    """``[video=|audio=|all=]KID:KEY`` as encrypt-vod takes it (the label does not matter
    here). The error never repeats the key."""
    from ..pipeline.rawkeys import parse_raw_key

    _label, kid, key = parse_raw_key(text)
    return kid, key


def _keys(values: list[str] | None, key_file: Path | None = None) -> dict[UUID, bytes]:
    out: dict[UUID, bytes] = {}
    specs = list(values or [])
    if key_file is not None:
        from ..pipeline.rawkeys import read_key_file

        specs = read_key_file(key_file) + specs
    for v in specs:
        kid, key = parse_key_option(v)
        out[kid] = key
    return out


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = subparsers.add_parser(
        "verify",
        help="decrypt a package with independent tools and compare it with the clear input",
        description="For each rendition: decrypt with FFmpeg (>= 8), decode, compare decoded "
        "frame hashes with the clear reference, and check the DRM signaling (KIDs in the MPD "
        "and playlists against tenc/seig, pssh boxes, PlayReady KID byte order, EXT-X-KEY "
        "attributes). Exits non-zero on any mismatch. Keys are never printed.",
    )
    v.add_argument("directory", help="the package folder (MPD and/or HLS playlists), or an "
                   "s3://bucket/prefix")
    v.add_argument("--reference", required=True,
                   help="the clear input it was made from (path or s3:// URL)")
    v.add_argument("--key", action="append", metavar="KID:KEY",
                   help="a content key (repeatable); hex KID or UUID, hex key")
    v.add_argument("--key-file", type=Path, metavar="FILE",
                   help="content keys from FILE, one KID:KEY per line (# comments)")
    v.add_argument("--clearkey-license-url", metavar="URL",
                   help="get keys from a W3C ClearKey licence server (as a player would)")
    v.add_argument("--no-fetch-key-uris", action="store_true",
                   help="never read HLS key URIs (data:, local files, http)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    from .keys_cmd import add_speke_arguments

    add_speke_arguments(v)  # keys from a SPEKE server: --speke-url, --content-id, --drm, ...
    add_storage_arguments(v)
    v.set_defaults(func=_verify)

    s = subparsers.add_parser(
        "serve",
        help="serve a package with a local key server and a browser player page",
        description="Serve DIR (with CORS), the ClearKey licence (POST /clearkey/license) and "
        "raw-key (GET /keys/KID) endpoints, and player pages for Shaka Player, hls.js and dash.js "
        "from node_modules. The key endpoints answer only same-origin requests addressed to a "
        "loopback name or to --host. --check plays it in headless Chromium and prints JSON.",
    )
    s.add_argument("directory", type=Path, help="the package folder")
    s.add_argument("--port", type=int, default=8080, help="TCP port on 127.0.0.1 (0: any)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); besides loopback names, the key "
                   "endpoints answer requests addressed to this name")
    s.add_argument("--player", choices=["shaka", "hlsjs", "dashjs"], default="shaka")
    s.add_argument("--manifest", help="manifest path inside DIR (default: the first MPD for "
                   "shaka/dashjs, the master playlist for hlsjs)")
    s.add_argument("--key", action="append", metavar="KID:KEY",
                   help="a key our /clearkey/license and /keys endpoints hand out (repeatable); "
                   "without keys the players use the package's own licence and key URLs")
    s.add_argument("--key-file", type=Path, metavar="FILE",
                   help="keys from FILE, one KID:KEY per line (# comments)")
    s.add_argument("--license-url", metavar="URL",
                   help="ClearKey licence URL for the player (default: ours when --key is given)")
    s.add_argument("--max-connections", type=int, default=512,
                   help="connections served at once; more get 503 (default 512)")
    s.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="deadline for a whole request and keep-alive idle time (default 30)")
    s.add_argument("--segment-max-age", type=int, default=60, metavar="SECONDS",
                   help="how long browsers may cache media segments (default 60; 0: never); "
                   "manifests are never cached, so a live package plays as it is written")
    s.add_argument("--check", action="store_true",
                   help="play in headless Chromium, print JSON, exit non-zero if playback fails")
    s.add_argument("--seconds", type=float, default=5.0, help="how long --check plays")
    s.add_argument("--chromium", default=None,
                   help="Chromium executable (default /usr/bin/chromium)")
    s.set_defaults(func=_serve)


def _verify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .._tools import FFMPEG_VERIFY, FFPROBE_VERIFY, find_tool
    from ..verify import verify_package
    from ..verify.remote import staged

    # the tools first: one line naming what was found, before any key is fetched
    find_tool("ffmpeg", FFMPEG_VERIFY)
    find_tool("ffprobe", FFPROBE_VERIFY)
    keys = _keys(args.key, args.key_file)
    with staged(args.directory, args.reference, storage_options(args)) as (pkg, ref):
        if args.speke_url:
            keys.update(_speke_keys(args, pkg))
        report = verify_package(
            pkg, ref, keys=keys, clearkey_license_url=args.clearkey_license_url,
            fetch_key_uris=not args.no_fetch_key_uris,
        )
    report = type(report)(str(args.directory), str(args.reference), report.renditions)
    if args.json:
        print(report.to_json())
    else:
        console = Console(soft_wrap=False)
        for r in report.renditions:
            t = Table(title=f"{r.name}  [{'OK' if r.ok else 'FAIL'}]", title_justify="left")
            t.add_column("check")
            t.add_column("result")
            t.add_column("detail", overflow="fold")
            for c in r.checks:
                t.add_row(c.name, "ok" if c.ok else "FAIL", c.detail)
            console.print(t)
        n_bad = len(report.failed())
        console.print(f"{len(report.renditions) - n_bad}/{len(report.renditions)} renditions OK")
    report.raise_for_failure()
    return 0


def _speke_keys(args: argparse.Namespace, directory: Path) -> dict[UUID, bytes]:
    """The keys a SPEKE server hands out for the package's content id, scheme and packaging
    (read from the package unless --scheme/--packaging are given)."""
    from ..constants import Packaging, Scheme
    from ..verify import package_protection
    from .keys_cmd import contract_from_args, periods_from_args, speke_client_from_args

    schemes, packagings = package_protection(directory)
    scheme = Scheme(args.scheme) if args.scheme else (schemes[0] if schemes else None)
    packaging: tuple[Packaging, ...] | None = None
    if not args.packaging and packagings:
        packaging = tuple(packagings)
    contract = contract_from_args(args, packaging=packaging, scheme=scheme)
    client = speke_client_from_args(args)
    periods = periods_from_args(args)
    keyset = client.fetch_periods(contract, periods) if periods else client.fetch(contract)
    return {entry.kid: entry.key.key for entry in keyset.entries}


def _serve(args: argparse.Namespace) -> int:
    from ..verify.serve import PackageServer, check_playback

    keys = _keys(args.key, args.key_file)
    with PackageServer(args.directory, keys=keys, host=args.host, port=args.port,
                       max_connections=args.max_connections,
                       request_timeout=args.request_timeout,
                       segment_max_age=args.segment_max_age) as srv:
        url = srv.player_url(args.player, args.manifest, license_url=args.license_url)
        if args.check:
            result = check_playback(url, seconds=args.seconds, chromium=args.chromium)
            print(json.dumps(result.to_dict(), indent=2))
            if not result.ok:
                raise VerificationError(f"playback failed: {result.reason}")
            return 0
        print(f"serving {args.directory} at {srv.url}", file=sys.stderr)
        print(f"player: {url}", file=sys.stderr)
        srv.serve_until_interrupted()
    return 0
