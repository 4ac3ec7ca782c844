"""``encrypt-batch``: many assets from a jobs file, on local worker processes or a Dask cluster.

The jobs file (``.jsonl`` or ``.csv``, one asset per row) is described in
:mod:`speke_packager.pipeline.batch.jobs`; a row's fields are encrypt-vod's option names.
Relative paths in a row are relative to the jobs file's folder. The command's own options give
the defaults every row may override (``--scheme``, ``--format``, ``--drm``, presets, ...) and
the key server connection (``--speke-url``, auth, TLS, timeouts) shared by all assets.

``--report FILE`` (and ``--json``, on stdout) write one object::

    {"format": 1, "executor": str, "slots": int, "started": iso, "finished": iso,
     "seconds": float, "interrupted": bool,
     "totals": {"assets", "done", "skipped", "failed", "cancelled", "bytes_in", "bytes_out",
                "assets_per_minute", "mb_per_s"},
     "assets": [{"asset", "row", "input", "output", "status": "done"|"skipped"|"failed"|
                 "cancelled", "error": str|null, "attempts", "worker": str|null,
                 "seconds": {"keys", "encrypt", "total"}, "bytes_in", "bytes_out",
                 "segments", "redone_because": str|null, "warnings": [str]}]}

Exit status: 0 when every asset is done or skipped, 1 when any failed, 130 when interrupted.
Keys are never printed or written to the report.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..constants import Scheme
from ..errors import SpekePackagerError, UsageError
from .keys_cmd import add_speke_arguments, speke_client_from_args
from .storage_args import add_storage_arguments
from .vod_cmd import (
    FORMAT_CHOICES,
    add_layout_arguments,
    key_source_from_args,
    vod_options_from_args,
)

if TYPE_CHECKING:
    from ..keys.client import SpekeClient
    from ..pipeline.batch import AssetReport, BatchJob, BatchReport
    from ..pipeline.batch.jobs import Row
    from ..pipeline.batch.runner import BatchExecutor

_SPEKE_VERSIONS = ("1.0", "2.0", "2.1")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _row_namespace(args: argparse.Namespace, row: Row, base: Path) -> argparse.Namespace:
    ns = argparse.Namespace(**vars(args))
    ns.key, ns.key_file, ns.iv, ns.content_id = None, None, None, None
    ns.force = False
    f = row.fields
    for name in ("scheme", "format", "content_id", "speke_url", "speke_version",
                 "video_preset", "audio_preset", "explicit_iv", "key", "iv", "segment_duration",
                 "clear_lead", "key_uri", "clearkey_license_url", "single_file"):
        if name in f:
            setattr(ns, name, f[name])
    if "drm" in f:
        ns.drm = ",".join(f["drm"])
    if ("key" in f or "key_file" in f) and "speke_url" not in f:
        ns.speke_url = None  # a row's raw keys replace the command's key server
    if ns.scheme is not None and ns.scheme not in {s.value for s in Scheme}:
        raise UsageError(f"unknown scheme {ns.scheme!r}")
    if ns.format is not None and ns.format not in FORMAT_CHOICES:
        raise UsageError(f"unknown format {ns.format!r} (hls, dash, both)")
    if ns.speke_version not in _SPEKE_VERSIONS:
        raise UsageError(f"unknown speke_version {ns.speke_version!r}")
    ns.input = _located(base, f["input"])
    ns.output = _located(base, f["output"])
    if "key_file" in f:
        ns.key_file = base / f["key_file"]
    return ns


def _located(base: Path, text: str) -> str:
    """A row's path, relative to the jobs file's folder; a URL (``s3://...``) is kept as it is
    for the layer that reads and writes object storage."""
    if _URL.match(text):
        return text
    return str(base / text)


def _jobs(args: argparse.Namespace) -> list[BatchJob]:
    from ..pipeline.batch import BatchJob
    from ..pipeline.batch.jobs import read_jobs

    path = Path(args.jobs_file)
    base = path.absolute().parent
    clients: dict[str, SpekeClient] = {}

    def client(ns: argparse.Namespace) -> SpekeClient:
        if ns.speke_url not in clients:
            clients[ns.speke_url] = speke_client_from_args(ns)
        return clients[ns.speke_url]

    jobs: list[BatchJob] = []
    for row in read_jobs(path):
        f = row.fields
        inp, out = str(f.get("input", "")), str(f.get("output", ""))
        if row.error is not None:
            jobs.append(BatchJob(row.asset, row.line, inp, out, error=row.error))
            continue
        try:
            ns = _row_namespace(args, row, base)
            keys = key_source_from_args(ns, client)
            options = vod_options_from_args(ns)
        except SpekePackagerError as exc:
            jobs.append(BatchJob(row.asset, row.line, inp, out, error=f"row {row.line}: {exc}"))
            continue
        jobs.append(BatchJob(row.asset, row.line, inp, out, options=options, keys=keys))
    return jobs


def _executor(args: argparse.Namespace) -> BatchExecutor:
    from ..pipeline.options import default_jobs

    if args.executor == "local":
        if args.insecure_cluster or args.tls_ca or args.tls_cert or args.tls_key:
            raise UsageError("--insecure-cluster and --tls-* are for a Dask scheduler address")
        from ..pipeline.batch.executors import LocalExecutor

        return LocalExecutor(args.workers or default_jobs())
    if args.workers:
        raise UsageError("--workers is for --executor local (a Dask cluster has its own)")
    from ..pipeline.batch.executors import DaskExecutor

    return DaskExecutor(args.executor, insecure=args.insecure_cluster, tls_ca=args.tls_ca,
                        tls_cert=args.tls_cert, tls_key=args.tls_key)


def _line(event: str, a: AssetReport) -> str | None:
    if event == "done":
        return f"done     {a.asset} ({a.total_seconds:.1f} s, {a.bytes_out / 1e6:.1f} MB)"
    if event == "skipped":
        return f"skipped  {a.asset} (complete)"
    if event == "failed":
        return f"failed   {a.asset}: {a.error}"
    return None


@contextmanager
def _display(mode: str, total: int, executor: BatchExecutor
             ) -> Iterator[Callable[[str, AssetReport], None]]:
    """Per-asset and total progress: a rich display on a terminal, one line per finished asset
    otherwise ('lines'), or nothing ('quiet')."""
    if mode == "quiet":
        yield lambda e, a: None
        return
    if mode == "lines":
        def lines(event: str, a: AssetReport) -> None:
            text = _line(event, a)
            if text:
                print(text, file=sys.stderr, flush=True)

        yield lines
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        overall = bar.add_task("all assets", total=total)
        tasks: dict[str, Any] = {}
        lock = threading.Lock()

        def progress(asset: str, done: int, n: int) -> None:
            with lock:
                t = tasks.get(asset)
                if t is not None:
                    bar.update(t, completed=done, total=n)

        def event(ev: str, a: AssetReport) -> None:
            with lock:
                if ev == "submitted" and a.asset not in tasks:
                    tasks[a.asset] = bar.add_task(f"  {a.asset}", total=None)
                if ev in ("done", "failed", "skipped"):
                    t = tasks.pop(a.asset, None)
                    if t is not None:
                        bar.remove_task(t)
                    bar.advance(overall)
                    text = _line(ev, a)
                    if text and ev != "skipped":
                        bar.console.print(text, markup=False, highlight=False)

        executor.on_progress = progress
        yield event


def _summary(r: BatchReport) -> str:
    t = r.to_json()["totals"]
    return (f"encrypt-batch: {t['done']} done, {t['skipped']} skipped, {t['failed']} failed"
            + (f", {t['cancelled']} cancelled" if t["cancelled"] else "")
            + f" in {r.seconds:.1f} s ({t['assets_per_minute']:.1f} assets/min, "
            f"{t['mb_per_s']:.1f} MB/s)")


def _handler(args: argparse.Namespace) -> int:
    from .._io import write_text_atomic
    from ..pipeline.batch import run_batch

    if args.content_id:
        raise UsageError("give content_id per row of the jobs file (one per asset), not "
                         "--content-id")
    if args.packaging:
        raise UsageError("encrypt-batch derives the SPEKE packaging from each asset's format "
                         "and scheme; drop --packaging")
    if args.key_periods:
        raise UsageError("--key-periods (key rotation) is for live; encrypt-batch uses one key "
                         "per track type")
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    jobs = _jobs(args)
    executor = _executor(args)
    mode = "quiet" if args.quiet or args.json else ("rich" if sys.stderr.isatty() else "lines")
    try:
        with _display(mode, len(jobs), executor) as on_event:
            report = run_batch(jobs, executor, force=args.force, resume_check=args.resume_check,
                               key_threads=args.key_requests, retries=args.worker_retries,
                               on_event=on_event)
    except BaseException:
        executor.close(cancel=True)
        raise
    doc = report.to_json()
    if args.report:
        write_text_atomic(args.report, json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    elif not args.quiet:
        print(_summary(report))
    if report.interrupted:
        print("speke-packager: interrupted", file=sys.stderr)
        return 130
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "encrypt-batch",
        help="encrypt many assets from a jobs file, on local processes or a Dask cluster",
        description="JOBS is a .jsonl or .csv file, one asset per row, with encrypt-vod's "
        "option names as fields (input, output, id, content_id, scheme, format, drm, "
        "video_preset, audio_preset, key_file, ...). Keys are fetched once per asset by this "
        "process; the assets are encrypted by worker processes (--executor local) or a Dask "
        "cluster (tls://HOST:PORT). A re-run skips every asset whose output is complete "
        "(checked against its .speke-packager-complete.json); one failing asset never stops "
        "the others. A row's input and output may be s3://bucket/key URLs (object storage "
        "options below apply to every row).")
    p.add_argument("jobs_file", metavar="JOBS", help="jobs file (.jsonl or .csv)")
    p.add_argument("--executor", default="local", metavar="local|tls://HOST:PORT|dask://HOST:PORT",
                   help="where assets run (default local); dask:// is plain TCP and needs "
                   "--insecure-cluster")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="local worker processes (default: the cores)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="segments of one asset encrypted in parallel on its worker (default 1)")
    p.add_argument("--report", metavar="FILE", help="write the JSON report to FILE")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.add_argument("--force", action="store_true",
                   help="redo every asset and replace existing output folders")
    p.add_argument("--resume-check", choices=["sha256", "size"], default="sha256",
                   help="how a re-run checks an existing output against its completion "
                   "manifest (default sha256: read every file, from object storage too; size: "
                   "names and sizes only)")
    p.add_argument("--worker-retries", type=int, default=2, metavar="N",
                   help="run an asset again up to N times when its worker dies (default 2)")
    p.add_argument("--key-requests", type=int, default=2, metavar="N",
                   help="key requests in flight at once (default 2)")
    d = p.add_argument_group("Dask cluster")
    d.add_argument("--tls-ca", metavar="PEM", help="CA certificate of the cluster")
    d.add_argument("--tls-cert", metavar="PEM", help="this client's certificate")
    d.add_argument("--tls-key", metavar="PEM", help="this client's private key")
    d.add_argument("--insecure-cluster", action="store_true",
                   help="allow a plain-TCP scheduler (content keys cross the network "
                   "unencrypted: a trusted network only)")
    o = p.add_argument_group("defaults of every row")
    add_layout_arguments(o)
    o.add_argument("--key-uri", metavar="URL", help="HLS identity key URI ({kid} replaced)")
    o.add_argument("--clearkey-license-url", metavar="URL",
                   help="W3C ClearKey licence URL for the DASH ContentProtection")
    add_speke_arguments(p)
    add_storage_arguments(p)  # for s3:// inputs and outputs, shared by every row
    p.set_defaults(func=_handler)
