"""``conformance``: run the SPEKE conformance battery against a key server.

Prints a table (check, version, result, reason, hint), or with ``--json`` one object::

    {"url": str, "versions": [str], "passed": bool, "seconds": float,
     "counts": {"pass": int, "fail": int, "warn": int, "not supported": int, "skipped": int},
     "results": [{"check": str, "version": str, "result": "pass"|"fail"|"warn"|
                  "not supported"|"skipped", "required": bool, "reason": str, "hint": str,
                  "seconds": float, "title": str}]}

``--junit FILE`` also writes JUnit XML for CI systems. Exit status 0 when every required check
passes ("not supported" versions and skipped checks do not fail the run); otherwise one
``speke-packager: error:`` line naming the failed checks and exit status 8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ..constants import Packaging, SpekeVersion
from ..errors import OutputError, UsageError, VerificationError
from .keys_cmd import add_connection_arguments, drms_from_args, speke_client_from_args

__all__ = ["ConformanceFailed", "register"]


class ConformanceFailed(VerificationError):
    """Required conformance checks failed."""


def _versions(text: str) -> tuple[SpekeVersion, ...]:
    try:
        out = tuple(SpekeVersion(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--versions takes 1.0, 2.0 and/or 2.1, got {text!r}") from None
    if not out:
        raise UsageError("--versions names no version")
    return tuple(dict.fromkeys(out))


def _packaging(text: str) -> tuple[Packaging, ...]:
    try:
        return tuple(dict.fromkeys(Packaging.parse(p) for p in text.split(",") if p.strip()))
    except ValueError:
        raise UsageError(f"unknown --packaging {text!r} (dash, hls-ts, hls-fmp4)") from None


def _write_atomic(path: Path, data: bytes) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None


def _handler(args: argparse.Namespace) -> int:
    from ..conformance import REGISTRY, ConformanceOptions, junit_xml, render_table, run_conformance

    if args.list_checks:
        for c in REGISTRY.values():
            versions = ",".join(sorted(v.value for v in c.versions))
            print(f"{c.name:30s} {versions:12s} {c.title}")
        return 0
    opts = ConformanceOptions(
        versions=_versions(args.versions),
        packaging=_packaging(args.packaging),
        budget=args.budget,
        content_id=args.content_id,
        checks=tuple(c.strip() for c in args.checks.split(",") if c.strip())
        if args.checks else None,
        **({"drm": drms_from_args(args)} if args.drm else {}),  # type: ignore[arg-type]
    )
    client = speke_client_from_args(args)
    report = run_conformance(client, opts)
    if args.junit:
        _write_atomic(Path(args.junit), junit_xml(report))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        render_table(report, sys.stdout)
    if not report.passed:
        failed = report.failures()
        names = ", ".join(f"{r.check}@{r.version}" for r in failed[:8])
        more = f" and {len(failed) - 8} more" if len(failed) > 8 else ""
        raise ConformanceFailed(f"{len(failed)} required conformance check(s) failed: "
                                f"{names}{more}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "conformance", help="check a SPEKE key server with a battery of real requests",
        description="Send real SPEKE v1/v2.0/v2.1 requests to a key server and check every "
                    "answer strictly (and requests it must refuse). Exit 0 when every required "
                    "check passes.")
    g = p.add_argument_group("what to test")
    g.add_argument("--speke-url", help="SPEKE endpoint URL (used unchanged)")
    g.add_argument("--versions", default="1.0,2.0,2.1",
                   help="comma-separated SPEKE versions (default 1.0,2.0,2.1)")
    g.add_argument("--drm", default=None,
                   help="comma-separated DRM systems (default: widevine, playready, fairplay, "
                        "clearkey, aes-128)")
    g.add_argument("--packaging", default="dash,hls-fmp4,hls-ts",
                   help="comma-separated outputs (default dash,hls-fmp4,hls-ts)")
    g.add_argument("--budget", type=float, default=5.0, metavar="SECONDS",
                   help="time an answer may take (default 5)")
    g.add_argument("--content-id", default="conformance",
                   help="content id prefix of the test requests (default conformance)")
    g.add_argument("--checks", help="run only these checks (comma-separated; see --list-checks)")
    g.add_argument("--list-checks", action="store_true", help="list the checks and exit")
    add_connection_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object (see docs)")
    o.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    p.set_defaults(func=_handler, retries=0)
