"""The coordinator of ``encrypt-batch``: check every asset, fetch its keys, run it on an
executor, and account for it.

Per asset, in this order: a row that failed validation is reported as failed; an output that
matches its completion manifest is skipped; an existing output this batch did not make is
refused (unless ``force``); then :func:`~..vod.check_vod` (every rule ``encrypt_vod`` checks
before it fetches a key), the keys (once per asset, on the coordinator: SPEKE or raw), and one
task on the executor. Keys are fetched just in time: at most about twice as many assets as the
executor has slots hold keys at any moment. One asset's failure never stops the others; a
worker lost while running an asset (a killed process) gets the asset run again up to
``retries`` times.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ...errors import ObjectNotFoundError, SpekePackagerError, UsageError
from ...model import KeySet
from ...storage import ObjectStore, S3Url, location
from ..keysource import RawKeys, SpekeKeys
from ..options import VodOptions
from ..rawkeys import raw_keyset
from .complete import OutputState, output_state_at
from .worker import AssetTask, SealedKeys, one_line

log = logging.getLogger(__name__)

ASSET_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class WorkerLost(SpekePackagerError):
    """Raised by an executor's future when the worker running the asset died."""


class BatchExecutor(Protocol):
    """Where assets run: :class:`~.executors.LocalExecutor` or :class:`~.executors.
    DaskExecutor`."""

    name: str
    slots: int  # assets that can run at once
    on_progress: Callable[[str, int, int], None] | None

    def submit(self, name: str, task: AssetTask, sealed: SealedKeys
               ) -> cf.Future[dict[str, Any]]: ...

    def close(self, *, cancel: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchJob:
    """One asset (one row of the jobs file). ``error``: the row is bad (never run)."""

    asset: str
    row: int
    input: str
    output: str
    options: VodOptions | None = None
    keys: RawKeys | SpekeKeys | None = None
    error: str | None = None

    def __repr__(self) -> str:
        return f"BatchJob({self.asset}, row {self.row})"


@dataclass(slots=True)
class AssetReport:
    asset: str
    row: int
    input: str
    output: str
    status: str = "pending"  # done | skipped | failed | cancelled
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    keys_seconds: float = 0.0
    encrypt_seconds: float = 0.0
    total_seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    segments: int = 0
    reason: str | None = None  # why an existing output was redone
    warnings: list[str] = field(default_factory=list)
    _started: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"asset": self.asset, "row": self.row, "input": self.input,
                "output": self.output, "status": self.status, "error": self.error,
                "attempts": self.attempts, "worker": self.worker,
                "seconds": {"keys": round(self.keys_seconds, 3),
                            "encrypt": round(self.encrypt_seconds, 3),
                            "total": round(self.total_seconds, 3)},
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "segments": self.segments, "redone_because": self.reason,
                "warnings": list(self.warnings)}


@dataclass(slots=True)
class BatchReport:
    executor: str
    slots: int
    assets: list[AssetReport] = field(default_factory=list)
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for a in self.assets if a.status == status)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(a.status in ("done", "skipped") for a in self.assets)

    def to_json(self) -> dict[str, Any]:
        done = [a for a in self.assets if a.status == "done"]
        bytes_in = sum(a.bytes_in for a in done)
        secs = self.seconds or 1e-9
        return {
            "format": 1, "executor": self.executor, "slots": self.slots,
            "started": self.started, "finished": self.finished,
            "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
            "totals": {
                "assets": len(self.assets), "done": len(done),
                "skipped": self.count("skipped"), "failed": self.count("failed"),
                "cancelled": self.count("cancelled"),
                "bytes_in": bytes_in, "bytes_out": sum(a.bytes_out for a in done),
                "assets_per_minute": round(len(done) * 60 / secs, 3),
                "mb_per_s": round(bytes_in / 1e6 / secs, 3),
            },
            "assets": [a.to_json() for a in self.assets],
        }


# ---- fingerprint of a job: what its completion manifest was made for ------------------------

def _input_stamp(options: VodOptions) -> tuple[str, list[int | str]]:
    """The top input's name and what tells a changed input: (size, mtime) of a local file,
    (size, ETag) of an ``s3://`` object (an empty stamp when it is missing)."""
    where = location(options.input)
    if isinstance(where, S3Url):
        try:
            size, etag = ObjectStore(options.storage).head(where)
        except ObjectNotFoundError:
            return str(where), []
        return str(where), [size, etag]
    src = Path(where)
    try:
        st = src.stat()
    except OSError:
        return str(src.absolute()), []
    return str(src.absolute()), [st.st_size, st.st_mtime_ns]


def output_key(output: str | os.PathLike[str]) -> str:
    """One output location, spelt one way: an absolute local path, or ``s3://bucket/key/``."""
    where = location(output)
    if isinstance(where, S3Url):
        if not where.key.strip("/"):
            raise UsageError(f"the output {where} is a whole bucket; give a prefix "
                             "(s3://bucket/folder)")
        return str(where.as_prefix())
    return str(Path(where).absolute())


def job_fingerprint(options: VodOptions, keys: RawKeys | SpekeKeys) -> str:
    """SHA-256 of the asset's options, its top input's size and mtime (an ``s3://`` object's
    size and ETag: a package's segments are not stamped), and its key source (the SPEKE URL
    and contract, or the raw keys' KIDs and track types: never a key value; a changed raw key
    with the same KID is not noticed, re-run with ``--force``)."""
    name, stamp = _input_stamp(options)
    if name.startswith("s3://"):  # the same URL on another store is another object
        name += f" at {options.storage.endpoint_url if options.storage else None}"
    doc: dict[str, Any] = {
        "input": name, "stamp": stamp,
        "scheme": options.scheme.value,
        "format": options.format.value if options.format else None,
        "segment_duration": options.segment_duration, "clear_lead": options.clear_lead,
        "key_uri": options.key_uri, "clearkey_license_url": options.clearkey_license_url,
        "iv": options.iv.hex() if options.iv else None,
    }
    if options.single_file:  # (only when set: earlier completion manifests stay valid)
        doc["single_file"] = True
    if isinstance(keys, SpekeKeys):
        c = keys.contract
        doc["speke"] = {"url": keys.client.url, "content_id": c.content_id,
                        "drm": [d.label for d in c.drm], "version": c.version.value,
                        "video_preset": c.video_preset, "audio_preset": c.audio_preset,
                        "explicit_iv": c.explicit_iv}
    else:
        ks = raw_keyset(keys.keys, options.scheme, content_id=keys.content_id,
                        clearkey=bool(keys.drm))
        doc["raw"] = {"kids": sorted(f"{e.track_type}:{e.kid}" for e in ks.entries),
                      "drm": [d.label for d in keys.drm]}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _what(output: str) -> str:
    return "prefix" if output.lower().startswith("s3://") else "folder"


def _output_key_or_error(output: str | os.PathLike[str]) -> str:
    try:
        return output_key(output)
    except SpekePackagerError as exc:  # a malformed s3:// URL
        return "!" + one_line(exc)


def _fetch_keys(options: VodOptions, keys: RawKeys | SpekeKeys) -> KeySet:
    """On the coordinator: every check encrypt_vod makes up front, then the asset's keys."""
    from ..vod import check_vod

    _, fmt = check_vod(options, keys)
    keyset = keys.fetch(fmt, options.scheme) if isinstance(keys, SpekeKeys) \
        else keys(options.scheme)
    if not keyset.entries:
        raise UsageError("the key set is empty")
    return keyset


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


Events = Callable[[str, AssetReport], None]
_CHECK_THREADS = 4


def run_batch(jobs: Sequence[BatchJob], executor: BatchExecutor, *, force: bool = False,
              resume_check: str = "sha256", key_threads: int = 2, retries: int = 2,
              on_event: Events | None = None) -> BatchReport:
    """Run every job on ``executor``; returns the report (never raises for an asset's error).

    ``on_event(event, asset)``: "skipped", "failed", "keys" (fetching), "submitted", "done";
    per-segment progress comes from ``executor.on_progress``. Ctrl-C (KeyboardInterrupt)
    cancels what has not finished and returns the report with ``interrupted`` set."""
    if resume_check not in ("sha256", "size"):
        raise UsageError("resume check must be sha256 or size")
    t0 = time.monotonic()
    report = BatchReport(executor=executor.name, slots=executor.slots, started=_now())
    emit: Events = on_event or (lambda e, a: None)
    todo: deque[tuple[BatchJob, AssetReport, str, bool]] = deque()
    seen_out: dict[str, str] = {}
    seen_id: set[str] = set()
    candidates: list[tuple[BatchJob, AssetReport]] = []
    for job in jobs:
        a = AssetReport(job.asset, job.row, job.input, job.output)
        report.assets.append(a)
        a._started = time.monotonic()
        if job.error is not None or job.options is None or job.keys is None:
            a.status, a.error = "failed", job.error or "bad row"
        elif job.asset in seen_id:
            a.status, a.error = "failed", f"asset id {job.asset} is used by an earlier row"
        elif (out_key := _output_key_or_error(job.options.output)) in seen_out:
            a.status, a.error = "failed", (f"output {job.output} is also the output of asset "
                                           f"{seen_out[out_key]}")
        elif out_key.startswith("!"):
            a.status, a.error = "failed", out_key[1:]
        else:
            seen_id.add(job.asset)
            seen_out[out_key] = job.asset
            candidates.append((job, a))
        if a.status == "failed":
            emit("failed", a)

    def check(item: tuple[BatchJob, AssetReport]) -> tuple[str, OutputState] | BaseException:
        job = item[0]
        assert job.options is not None and job.keys is not None
        try:
            fp = job_fingerprint(job.options, job.keys)
            return fp, output_state_at(job.options.output, fp, check=resume_check,
                                       storage=job.options.storage)
        except Exception as exc:
            return exc

    # existing outputs checked on several threads (hashlib releases the GIL while it hashes)
    with cf.ThreadPoolExecutor(max_workers=_CHECK_THREADS,
                               thread_name_prefix="batch-check") as checker:
        checked = list(checker.map(check, candidates))
    for (job, a), found in zip(candidates, checked, strict=True):
        if isinstance(found, BaseException):
            a.status, a.error = "failed", one_line(found)
            emit("failed", a)
            continue
        fp, state = found
        if state.complete and not force:
            a.status, a.bytes_out = "skipped", state.bytes
            emit("skipped", a)
            continue
        if state.exists and not state.ours and not force:
            a.status, a.error = "failed", (
                f"output {_what(job.output)} {job.output} exists and holds no completion "
                "manifest of encrypt-batch; give --force to replace it")
            emit("failed", a)
            continue
        if state.ours:
            a.reason = state.reason or "--force"
        todo.append((job, a, fp, state.ours or force))

    window = max(2, executor.slots * 2)
    # in task names: Dask merges tasks of the same name, and two batches on one cluster may
    # use the same asset ids
    run_id = os.urandom(4).hex()
    key_pool = cf.ThreadPoolExecutor(max_workers=max(1, key_threads),
                                     thread_name_prefix="batch-keys")
    keying: dict[cf.Future[KeySet], tuple[BatchJob, AssetReport, str, bool, float]] = {}
    running: dict[cf.Future[dict[str, Any]],
                  tuple[BatchJob, AssetReport, AssetTask, SealedKeys]] = {}

    def start_keys() -> None:
        while todo and len(keying) + len(running) < window:
            job, a, fp, repl = todo.popleft()
            assert job.options is not None and job.keys is not None
            emit("keys", a)
            fut = key_pool.submit(_fetch_keys, job.options, job.keys)
            keying[fut] = (job, a, fp, repl, time.monotonic())

    def submit(job: BatchJob, a: AssetReport, task: AssetTask, sealed: SealedKeys) -> None:
        a.attempts += 1
        fut = executor.submit(f"encrypt-{job.asset}-{run_id}-{a.attempts}", task, sealed)
        running[fut] = (job, a, task, sealed)
        emit("submitted", a)

    def record(fut: cf.Future[dict[str, Any]], a: AssetReport, err: BaseException | None
               ) -> None:
        a.total_seconds = time.monotonic() - a._started
        if err is not None:
            a.status, a.error = "failed", one_line(err)
            emit("failed", a)
            return
        res = fut.result()
        a.worker = res.get("worker")
        a.encrypt_seconds = float(res.get("encrypt_seconds", 0.0))
        a.warnings = [str(w) for w in res.get("warnings", [])]
        if res.get("status") == "done":
            a.status = "done"
            a.bytes_in = int(res.get("bytes_in", 0))
            a.bytes_out = int(res.get("bytes_out", 0))
            a.segments = int(res.get("segments", 0))
            emit("done", a)
        else:
            a.status, a.error = "failed", str(res.get("error") or "failed")
            emit("failed", a)

    interrupted = False
    try:
        start_keys()
        while keying or running:
            waiting: list[cf.Future[Any]] = [*keying, *running]
            finished, _ = cf.wait(waiting, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                if fut in keying:
                    job, a, fp, repl, k0 = keying.pop(fut)
                    a.keys_seconds = time.monotonic() - k0
                    kerr = fut.exception()
                    if kerr is not None:
                        a.status, a.error = "failed", one_line(kerr)
                        a.total_seconds = time.monotonic() - a._started
                        emit("failed", a)
                        continue
                    assert job.options is not None
                    task = AssetTask(job.asset, replace(job.options, progress=None,
                                                        before_publish=None), fp, repl)
                    submit(job, a, task, SealedKeys(fut.result()))
                    continue
                job, a, task, sealed = running.pop(fut)
                err = fut.exception()
                if isinstance(err, WorkerLost) and a.attempts <= retries:
                    log.warning("asset %s: %s; running it again", a.asset, err)
                    submit(job, a, replace(task, replace=True), sealed)
                    continue
                record(fut, a, err)
            start_keys()
    except KeyboardInterrupt:
        interrupted = True
        for a in report.assets:
            if a.status == "pending":
                a.status, a.error = "cancelled", "interrupted"
    finally:
        for kf in keying:
            kf.cancel()
        key_pool.shutdown(wait=not interrupted, cancel_futures=True)
        executor.close(cancel=interrupted)
        # an asset published while the batch stopped is done, not cancelled (its result may
        # be lost with its worker: its output and completion manifest say so)
        for fut, (job, a, task, _) in running.items():
            if fut.done() and not fut.cancelled() and fut.exception() is None \
                    and fut.result().get("status") == "done":
                record(fut, a, None)
            elif job.options is not None and a.status != "done":
                try:
                    state = output_state_at(job.options.output, task.fingerprint, check="size",
                                            storage=job.options.storage)
                except (OSError, SpekePackagerError):
                    continue
                if state.complete:
                    a.status, a.error, a.bytes_out = "done", None, state.bytes
    report.interrupted = interrupted
    report.finished = _now()
    report.seconds = time.monotonic() - t0
    return report
