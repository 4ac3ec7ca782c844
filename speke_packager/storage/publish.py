"""A package folder to object storage and back.

:class:`Publication` uploads a finished local package under an ``s3://`` prefix so that a
player never sees half of it: every segment and init section first (several at a time), the
manifests last and one by one, in the order given (media playlists before the master playlist
or MPD that names them). When anything fails (or on Ctrl-C) the objects this run wrote are
deleted again; those that cannot be are named in the error."""

from __future__ import annotations

import concurrent.futures as cf
import mimetypes
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import StorageError
from .fileobj import download_file, upload_file
from .store import ObjectStore
from .url import S3Url, safe_rel

UNCERTAIN_SETTLE = 1.0  # seconds before the second DELETE of interrupted uploads

_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl", ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".m4a": "audio/mp4",
    ".m4v": "video/mp4", ".cmfv": "video/mp4", ".cmfa": "audio/mp4", ".ts": "video/mp2t",
    ".aac": "audio/aac", ".ac3": "audio/ac3", ".ec3": "audio/eac3", ".vtt": "text/vtt",
    ".json": "application/json",
}
_LISTED = 20  # objects named in an error before "and N more"


def content_type(rel: str) -> str:
    """The Content-Type a CDN and a player expect for a package file."""
    ext = os.path.splitext(rel)[1].lower()
    return _TYPES.get(ext) or mimetypes.guess_type(rel)[0] or "application/octet-stream"


def local_files(root: Path) -> list[str]:
    """Every regular file below ``root`` as a relative POSIX path, sorted."""
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath, name)
            if p.is_file() and not p.is_symlink():
                out.append(p.relative_to(root).as_posix())
    return sorted(out)


def _names(urls: Sequence[S3Url]) -> str:
    shown = ", ".join(str(u) for u in urls[:_LISTED])
    more = len(urls) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


class Publication:
    """One run's writes under ``dest`` (a prefix): what was written, to remove on failure.

    ``force=False`` refuses a prefix that already holds objects (like a non-empty output
    folder); with ``force`` the objects of an earlier package that this run did not rewrite
    are deleted after the new manifests are published (:meth:`remove_stale`). A failure with
    ``force`` removes this run's objects, and so also the earlier package's objects that it
    had overwritten."""

    def __init__(self, store: ObjectStore, dest: S3Url, *, force: bool = False) -> None:
        self.store = store
        self.dest = dest.as_prefix()
        self.force = force
        self.written: list[S3Url] = []
        self._lock = threading.Lock()
        self._before: list[S3Url] | None = None
        self._begun = False
        self._pool: cf.ThreadPoolExecutor | None = None
        self._early: dict[str, cf.Future[int]] = {}
        self._uncertain: list[S3Url] = []  # uploads interrupted before their answer

    def check(self) -> None:
        """Refuse a non-empty destination without ``force`` (call before long work)."""
        if self.force:
            return
        if self.store.any_under(self.dest):
            raise StorageError(f"{self.dest} is not empty (use --force to replace it)",
                               url=str(self.dest), code="NotEmpty")

    def _record(self, url: S3Url) -> None:
        with self._lock:
            self.written.append(url)

    def upload(self, root: Path | int, rel: str) -> int:
        """Upload ``rel`` of the folder ``root`` (a path, or an open folder descriptor)."""
        url = self.dest.join(rel)
        # recorded before the request: an upload interrupted after the store took the body but
        # before its answer arrived (SIGTERM in this thread) is still removed by a rollback
        # (deleting a key that never landed is harmless)
        self._record(url)
        try:
            if isinstance(root, int):
                return upload_file(self.store, rel, url, content_type=content_type(rel),
                                   width=1, dir_fd=root)
            return upload_file(self.store, root / rel, url, content_type=content_type(rel),
                               width=1)
        except BaseException:
            with self._lock:  # its PUT may still land after a rollback's DELETE
                self._uncertain.append(url)
            raise

    def begin(self) -> None:
        """Check the destination (and, with ``force``, note what it holds) and accept early
        uploads (:meth:`upload_early`). :meth:`upload_tree` calls it when nobody did."""
        if self._begun:
            return
        self.check()
        if self.force:
            self._before = [u for u, _ in self.store.list_objects(self.dest)]
        self._pool = cf.ThreadPoolExecutor(max_workers=self.store.options.concurrency,
                                           thread_name_prefix="s3-put")
        self._begun = True

    def upload_early(self, root: Path | int, rel: str) -> None:
        """Start uploading a finished file that is not a manifest while the rest of the
        package is still being made (segments only: manifests always go last). ``root``: best
        an open descriptor of the folder, which stays valid when the folder is renamed."""
        if self._pool is None or rel in self._early:
            return
        self._early[rel] = self._pool.submit(self.upload, root, rel)

    def upload_tree(self, root: Path, manifests: Sequence[str]) -> int:
        """Upload every file below ``root``: all but ``manifests`` first (in parallel; files
        given to :meth:`upload_early` are not sent again), then ``manifests`` in their order.
        Returns the bytes sent. On failure: :meth:`abort` (every object of the run removed)."""
        total = 0
        try:
            self.begin()
            last = [safe_rel(m) for m in manifests]
            skip = set(last) | set(self._early)
            first = [r for r in local_files(root) if r not in skip]
            for fut in list(self._early.values()):
                total += fut.result()
            total += self._parallel(root, first)
            for rel in last:
                total += self.upload(root, rel)
        except BaseException as exc:
            self.abort(exc)
            raise
        finally:
            self._stop_pool()
        return total

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # running uploads finish first

    def abort(self, cause: BaseException | None = None) -> None:
        """Stop early uploads and remove every object this run wrote (:meth:`rollback`)."""
        for fut in self._early.values():
            fut.cancel()
        self._stop_pool()
        self.rollback(cause)

    def _parallel(self, root: Path, rels: Iterable[str]) -> int:
        width = self.store.options.concurrency
        total = 0
        with cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="s3-put") as ex:
            pending: set[cf.Future[int]] = set()
            try:
                for rel in rels:
                    if len(pending) >= width:
                        done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                        total += sum(f.result() for f in done)
                    pending.add(ex.submit(self.upload, root, rel))
                done, pending = cf.wait(pending)
                total += sum(f.result() for f in done)
            finally:
                for f in pending:
                    f.cancel()
                cf.wait(pending)  # the running ones finish (and are recorded) before rollback
        return total

    def remove_stale(self) -> list[S3Url]:
        """With ``force``: delete what the destination held before and this run did not
        write. Returns what was removed; failures raise :class:`StorageError`."""
        if not self._before:
            return []
        mine = set(self.written)
        stale = [u for u in self._before if u not in mine]
        failed = self.store.delete_many(stale)
        if failed:
            urls = [u for u, _ in failed]
            raise StorageError(f"the new package is published, but {len(urls)} object(s) of "
                               f"the earlier one could not be deleted: {_names(urls)} "
                               f"({failed[0][1]})", url=str(self.dest), code="DeleteFailed")
        return stale

    def rollback(self, cause: BaseException | None = None) -> None:
        """Delete every object this run wrote; raise :class:`StorageError` naming those that
        could not be deleted (chained to ``cause``)."""
        with self._lock:
            urls = list(self.written)
            self.written.clear()
            uncertain, self._uncertain = self._uncertain, []
        if not urls:
            return
        failed = self.store.delete_many(urls)
        if uncertain and not failed:
            # an interrupted PUT that a proxy or the store still held can land after the
            # DELETE: give it a moment, then delete those keys once more
            time.sleep(UNCERTAIN_SETTLE)
            failed = self.store.delete_many(uncertain)
        if failed:
            left = [u for u, _ in failed]
            why = f"{cause}; " if cause is not None else ""
            raise StorageError(f"{why}these objects of the failed run could not be deleted: "
                               f"{_names(left)} ({failed[0][1]})", url=str(self.dest),
                               code="RollbackFailed") from cause


def download_tree(store: ObjectStore, prefix: S3Url, root: Path) -> list[str]:
    """Every object under ``prefix`` to the same relative path below ``root`` (ranged reads,
    one part of memory per object, several objects at a time). Returns the relative paths."""
    prefix = prefix.as_prefix()
    items = []
    for url, _size in store.list_objects(prefix):
        rel = prefix.rel_of(url)
        if not rel or rel.endswith("/"):
            continue  # the "folder" marker objects some tools create
        items.append((url, safe_rel(rel, what="object")))
    width = store.options.concurrency
    with cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="s3-get") as ex:
        for f in [ex.submit(download_file, store, u, root / rel, width=1) for u, rel in items]:
            f.result()
    return [rel for _, rel in items]
