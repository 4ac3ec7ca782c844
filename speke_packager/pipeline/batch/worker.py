"""What runs on a worker: one asset's encryption with keys the coordinator fetched.

:func:`encrypt_asset` is the task function of every executor. Its arguments are an
:class:`AssetTask` (the options, the job fingerprint: no key) and :class:`SealedKeys` (the key
set). Neither shows a key in ``repr``/``str``, which is what Dask writes into its logs
("Compute Failed ... args") and what a debugger or dashboard would render; a content key
travels only inside the pickled task, over the executor's transport (a local pipe, or Dask's
TLS). The task never raises for an asset's own failure: it returns a small summary (status,
timings, bytes, one-line error) without key material.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...errors import SpekePackagerError
from ...model import KeySet
from ..options import VodOptions
from .complete import OutputClaim, write_marker

# progress(asset id, done, total): set in each worker process by its executor
ProgressSink = Callable[[str, int, int], None]
_SINK: list[ProgressSink] = []
_INTERVAL = 0.5  # seconds between two progress messages of one asset


_BUSY: list[bool] = [False]  # an asset is being encrypted in this process


def set_progress_sink(sink: ProgressSink | None) -> None:
    _SINK.clear()
    if sink is not None:
        _SINK.append(sink)


def _stop(signum: int, frame: object) -> None:
    if _BUSY[0]:
        raise KeyboardInterrupt  # encrypt_vod removes its temporary folder, then the task ends
    os._exit(128 + signum)


def install_stop_handler() -> None:
    """For a local worker process: Ctrl-C is the coordinator's alone (it stops the workers);
    SIGTERM interrupts the running asset like Ctrl-C (its temporary output folder removed), or
    ends an idle worker at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # (blocked by the submitter)


class SealedKeys:
    """A key set on its way to a worker. ``repr``/``str`` name the content id and the number of
    keys only; the keys are reached through :meth:`open` by the task function."""

    __slots__ = ("_keyset",)

    def __init__(self, keyset: KeySet) -> None:
        self._keyset = keyset

    def open(self) -> KeySet:
        return self._keyset

    def __repr__(self) -> str:
        return f"SealedKeys({len(self._keyset.entries)} keys, <hidden>)"

    __str__ = __repr__

    def __getstate__(self) -> KeySet:
        return self._keyset

    def __setstate__(self, state: KeySet) -> None:
        self._keyset = state


@dataclass(frozen=True, slots=True)
class AssetTask:
    """One asset for a worker: the options of ``encrypt_vod`` (no callable but the IV source),
    its id, the fingerprint the completion manifest records, and whether an earlier output of
    this batch may be replaced."""

    asset: str
    options: VodOptions
    fingerprint: str
    replace: bool = False
    progress: str = "sink"  # "sink": the worker's progress sink; "dask": Dask worker events

    def __repr__(self) -> str:
        return f"AssetTask({self.asset})"


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, SpekePackagerError):
        text = f"{type(exc).__name__}: {text}"
    return text[:500]


def _dask_sink(asset: str, done: int, total: int) -> None:
    from distributed import get_worker

    get_worker().log_event("speke-packager-progress",
                           {"asset": asset, "done": done, "total": total})


def _progress(task: AssetTask) -> Callable[[int, int], None] | None:
    sink: ProgressSink | None
    if task.progress == "dask":
        sink = _dask_sink
    else:
        sink = _SINK[0] if _SINK else None
    if sink is None:
        return None
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= _INTERVAL:
            last[0] = now
            try:
                sink(task.asset, done, total)
            except Exception:  # noqa: S110 (a progress message is never worth an asset)
                pass

    return update


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("speke-packager")
    except PackageNotFoundError:
        return "unknown"


def encrypt_asset(task: AssetTask, sealed: SealedKeys) -> dict[str, Any]:
    """Encrypt one asset; returns its summary (``status`` "done" or "failed")."""
    from ..vod import encrypt_vod

    started = time.monotonic()
    keyset = sealed.open()
    kids = sorted({str(e.kid) for e in keyset.entries})

    def seal(folder: Path) -> None:
        write_marker(folder, asset=task.asset, fingerprint=task.fingerprint, kids=kids,
                     version=_version())

    notes: list[str] = []
    jobs = task.options.jobs
    if jobs > 1 and multiprocessing.current_process().daemon:
        # a Dask worker process is daemonic: it may not start the segment pool's processes
        notes.append(f"--jobs {jobs} ignored: this worker process is daemonic (a Dask worker); "
                     "run more single-threaded worker processes instead")
        jobs = 1
    claim = OutputClaim(task.options.output, task.options.storage)
    # an s3:// output: the claim is put first, so the publication must accept a non-empty
    # prefix (the coordinator already refused one this batch did not make, unless --force)
    options = replace(task.options, force=task.options.force or task.replace or claim.remote,
                      jobs=jobs, progress=_progress(task), before_publish=seal)
    where = f"{socket.gethostname()}:{os.getpid()}"
    _BUSY[0] = True
    try:
        claim.put(task.asset, task.fingerprint)
        try:
            result = encrypt_vod(options, keyset)
        except BaseException:
            with contextlib.suppress(Exception):
                claim.release()  # (left behind, it only makes the next run redo the asset)
            raise
    except Exception as exc:
        return {"status": "failed", "error": one_line(exc), "worker": where,
                "encrypt_seconds": round(time.monotonic() - started, 3), "warnings": notes}
    finally:
        _BUSY[0] = False
    return {"status": "done", "worker": where,
            "encrypt_seconds": round(time.monotonic() - started, 3),
            "bytes_in": result.bytes_in, "bytes_out": result.bytes_out,
            "segments": result.segments, "manifests": list(result.manifests),
            "warnings": [*notes, *result.warnings]}
