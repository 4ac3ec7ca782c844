"""Where the assets of a batch run: worker processes on this machine, or a Dask cluster.

:class:`LocalExecutor`: a pool of ``workers`` processes (started with ``spawn``: the
coordinator has threads), one asset at a time each. A worker process that dies (killed, out of
memory) breaks the pool: the assets it held are reported as lost and the pool is renewed, so
the coordinator can run them again.

:class:`DaskExecutor`: a ``distributed.Client`` to an existing scheduler. Content keys travel
in the tasks, so the address must be ``tls://`` (with the CA, client certificate and key made
by the user) unless ``insecure`` says otherwise. Task names are
``encrypt-<asset id>-<run id>-<attempt>`` and the task arguments hide their keys in ``repr``
(see :mod:`.worker`); each finished task is released at once, so the scheduler does not keep
it. ``distributed`` is an optional extra, imported here only.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ...errors import UsageError
from .runner import WorkerLost
from .worker import (
    AssetTask,
    SealedKeys,
    encrypt_asset,
    install_stop_handler,
    set_progress_sink,
)

log = logging.getLogger(__name__)

DASK_EXTRA = "pip install 'speke-packager[dask]'"
PROGRESS_TOPIC = "speke-packager-progress"


# ---- local processes ---------------------------------------------------------------------------

def _init_local(queue: Any) -> None:
    install_stop_handler()
    set_progress_sink(lambda asset, done, total: queue.put((asset, done, total)))


class LocalExecutor:
    """``workers`` processes on this machine."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise UsageError("--workers must be at least 1")
        self.name = "local"
        self.slots = workers
        self.on_progress: Callable[[str, int, int], None] | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._queue: Any = self._ctx.Queue()
        self._lock = threading.Lock()
        self._closing = False
        self._pool = self._new_pool()
        self._listener = threading.Thread(target=self._listen, name="batch-progress",
                                          daemon=True)
        self._listener.start()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.slots, mp_context=self._ctx,
                                      initializer=_init_local, initargs=(self._queue,))

    def _listen(self) -> None:
        while True:
            try:
                item = self._queue.get()
            except (EOFError, OSError, ValueError):
                return
            if item is None:
                return
            cb = self.on_progress
            if cb is not None:
                cb(*item)

    def submit(self, name: str, task: AssetTask, sealed: SealedKeys
               ) -> cf.Future[dict[str, Any]]:
        out: cf.Future[dict[str, Any]] = cf.Future()
        # a worker process may be started by this submit: it is born with SIGINT blocked (the
        # mask survives fork and exec), so a Ctrl-C during its start-up cannot interrupt its
        # imports; its initializer then ignores SIGINT and unblocks it. Here the Ctrl-C stays
        # pending until the mask is restored.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with self._lock:
                pool = self._pool
                try:
                    inner = pool.submit(encrypt_asset, task, sealed)
                except BrokenProcessPool:
                    pool = self._pool = self._new_pool()
                    inner = pool.submit(encrypt_asset, task, sealed)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

        def done(f: cf.Future[dict[str, Any]]) -> None:
            if f.cancelled():
                out.cancel()
                return
            exc = f.exception()
            if isinstance(exc, BrokenProcessPool):
                with self._lock:
                    if self._pool is pool and not self._closing:  # renew once per broken pool
                        self._pool = self._new_pool()
                        pool.shutdown(wait=False, cancel_futures=True)
                out.set_exception(WorkerLost(f"a worker process of {name} died"))
            elif exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(f.result())

        out.set_running_or_notify_cancel()
        inner.add_done_callback(done)
        return out

    def close(self, *, cancel: bool = False) -> None:
        with self._lock:
            self._closing = True
            pool = self._pool
        if cancel:
            # the workers ignore Ctrl-C: SIGTERM interrupts each running asset (its temporary
            # output folder removed); what still runs after 10 s is killed (its folder is then
            # removed by the next run for that output)
            procs = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                if p.is_alive() and p.pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            for p in procs:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
        else:
            pool.shutdown(wait=True)
        self._queue.put(None)
        self._listener.join(timeout=5)
        self._queue.close()


# ---- Dask --------------------------------------------------------------------------------------

def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError("the dask executor needs the dask extra: " + DASK_EXTRA) from None
    return distributed


def dask_address(url: str, *, insecure: bool) -> str:
    """``dask://HOST:PORT`` -> ``tcp://HOST:PORT``; ``tls://`` as it is. A plain TCP address is
    refused unless ``insecure``: content keys would cross the network in the clear."""
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise UsageError(f"--executor must be local, tls://HOST:PORT or dask://HOST:PORT, "
                         f"got {url!r}")
    scheme = scheme.lower()
    if scheme == "tls":
        return f"tls://{rest}"
    if scheme in ("dask", "tcp"):
        if not insecure:
            raise UsageError(f"{url} is not TLS: content keys would reach the workers in the "
                             "clear; use tls://HOST:PORT with --tls-ca/--tls-cert/--tls-key, "
                             "or --insecure-cluster on a trusted network")
        return f"tcp://{rest}"
    raise UsageError(f"--executor must be local, tls://HOST:PORT or dask://HOST:PORT, got "
                     f"{url!r}")


class DaskExecutor:
    """Assets as tasks on an existing Dask cluster (one asset per worker thread: start the
    workers with ``--nthreads 1`` and one process per core)."""

    def __init__(self, url: str, *, insecure: bool = False, tls_ca: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 timeout: float = 30.0) -> None:
        address = dask_address(url, insecure=insecure)
        tls = address.startswith("tls://")
        if tls and not (tls_ca and tls_cert and tls_key):
            raise UsageError("a tls:// scheduler needs --tls-ca, --tls-cert and --tls-key")
        if not tls and (tls_ca or tls_cert or tls_key):
            raise UsageError("--tls-ca/--tls-cert/--tls-key need a tls:// scheduler address")
        distributed = _import_distributed()
        security = None
        if tls:
            from distributed.security import Security

            security = Security(  # type: ignore[no-untyped-call]
                tls_ca_file=tls_ca, tls_client_cert=tls_cert,
                                tls_client_key=tls_key, require_encryption=True)
        try:
            self.client = distributed.Client(address, security=security, timeout=timeout,
                                             set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            self.client.close()
            raise UsageError(f"the Dask scheduler at {address} has no worker") from None
        self.name = address
        self.slots = max(1, sum(self.client.nthreads().values()))
        self.on_progress: Callable[[str, int, int], None] | None = None
        self.client.subscribe_topic(PROGRESS_TOPIC, self._event)
        self._live: set[Any] = set()  # distributed futures not finished yet

    def _event(self, event: Any) -> None:
        cb = self.on_progress
        try:
            _, msg = event
            if cb is not None:
                cb(str(msg["asset"]), int(msg["done"]), int(msg["total"]))
        except (TypeError, KeyError, ValueError):
            pass

    def submit(self, name: str, task: AssetTask, sealed: SealedKeys
               ) -> cf.Future[dict[str, Any]]:
        from dataclasses import replace

        from distributed.scheduler import KilledWorker

        out: cf.Future[dict[str, Any]] = cf.Future()
        out.set_running_or_notify_cancel()
        fut = self.client.submit(encrypt_asset, replace(task, progress="dask"), sealed,
                                 key=name, pure=False)
        self._live.add(fut)

        def done(f: Any) -> None:
            try:
                if f.status == "finished":
                    out.set_result(f.result())
                elif f.status == "cancelled":
                    out.set_exception(WorkerLost(f"{name} was cancelled by the cluster"))
                else:
                    exc = f.exception()
                    if isinstance(exc, KilledWorker):
                        exc = WorkerLost(f"the workers running {name} died")
                    out.set_exception(exc)
            except Exception as exc:
                if not out.done():
                    out.set_exception(WorkerLost(f"{name}: {type(exc).__name__}"))
            finally:
                self._live.discard(f)
                f.release()

        fut.add_done_callback(done)
        return out

    def close(self, *, cancel: bool = False) -> None:
        """With ``cancel``: queued tasks are dropped; a task already running on a worker runs
        to its end (Dask does not interrupt a running task): its output is then complete and
        the next run skips it."""
        if cancel and self._live:
            try:
                self.client.cancel(list(self._live))
            except Exception:  # noqa: S110 (closing anyway)
                pass
        try:
            self.client.unsubscribe_topic(PROGRESS_TOPIC)
        except Exception:  # noqa: S110 (closing anyway)
            pass
        self.client.close()
