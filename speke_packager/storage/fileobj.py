"""File-like objects over object storage: a seekable ranged reader with a bounded read-ahead
buffer, and a multipart writer with bounded memory."""

from __future__ import annotations

import concurrent.futures as cf
import io
import os
from collections.abc import Callable
from typing import Any

from .._io import write_fd_atomic
from ..errors import OutputError, StorageError, UsageError
from .store import ObjectStore
from .url import S3Url

MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
MIN_PART = 5 << 20


class RangedReader(io.RawIOBase):
    """A read-only, seekable file over one object, read with GetObject ``Range`` requests.

    At most ``read_ahead`` bytes are held (one window); a read larger than the window is
    fetched straight for the caller, so memory is bounded by the window plus the caller's own
    reads. Every request carries the ETag seen when the reader was opened (``If-Match``): an
    object replaced meanwhile raises :class:`StorageError` instead of mixing two versions."""

    def __init__(self, store: ObjectStore, url: S3Url, *, read_ahead: int | None = None
                 ) -> None:
        super().__init__()
        self.store = store
        self.url = url
        self.read_ahead = max(64 << 10, read_ahead or store.part_size)
        self._pos = 0
        self._buf = b""
        self._buf_start = 0
        self.requests = 0  # GET requests made (for tests and statistics)
        self.size, self.etag = store.head(url)

    def __repr__(self) -> str:
        return f"RangedReader({self.url}, size={self.size})"

    @property
    def name(self) -> str:
        return str(self.url)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(22, "negative seek position")
        self._pos = pos
        return pos

    def _fetch(self, start: int, length: int) -> bytes:
        self.requests += 1
        data = self.store.get_range(self.url, start, length, etag=self.etag)
        want = min(length, max(0, self.size - start))
        if len(data) != want:
            raise StorageError(f"{self.url}: short read ({len(data)} of {want} bytes at "
                               f"{start})", url=str(self.url), code="ShortRead")
        return data

    def readinto(self, b: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(b).cast("B")
        n = min(len(view), max(0, self.size - self._pos))
        if n == 0:
            return 0
        end_buf = self._buf_start + len(self._buf)
        if not self._buf_start <= self._pos < end_buf:
            if n >= self.read_ahead:  # a big read: straight into the caller's buffer
                data = self._fetch(self._pos, n)
                view[:n] = data
                self._pos += n
                return n
            self._buf = b""  # drop the old window before fetching the next
            self._buf = self._fetch(self._pos, self.read_ahead)
            self._buf_start = self._pos
            end_buf = self._buf_start + len(self._buf)
        take = min(n, end_buf - self._pos)
        at = self._pos - self._buf_start
        view[:take] = self._buf[at:at + take]
        self._pos += take
        return take

    def close(self) -> None:
        self._buf = b""
        super().close()


def part_size_for(size: int, part_size: int) -> int:
    """The part size that keeps an object of ``size`` bytes within S3's 10,000 parts."""
    need = -(-size // MAX_PARTS)
    if need <= part_size:
        return part_size
    return -(-need // (1 << 20)) << 20  # whole MiB


class MultipartWriter(io.RawIOBase):
    """A write-only file that becomes one object when closed without error.

    Up to ``part_size`` bytes are buffered; an object that stays under it is one PutObject,
    a larger one a multipart upload (CreateMultipartUpload, UploadPart per full buffer,
    CompleteMultipartUpload on close). Memory: one part. :meth:`abort` (also on an exception
    inside ``with``) aborts the upload, so no object and no orphan parts are left."""

    def __init__(self, store: ObjectStore, url: S3Url, *, content_type: str | None = None,
                 part_size: int | None = None, cache_control: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.url = url
        self.content_type = content_type
        self.cache_control = cache_control
        self.part_size = part_size or store.part_size
        self._buf = bytearray()
        self._upload: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False
        self.bytes_written = 0
        if self.part_size < MIN_PART:
            self._done = True
            raise UsageError("the multipart part size must be at least 5 MiB")

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if self.closed or self._done:
            raise ValueError("write to a closed MultipartWriter")
        view = memoryview(b).cast("B")
        n = len(view)
        while len(view):
            if len(self._buf) >= self.part_size:  # a full part, and more is coming
                self._flush_part()
            room = self.part_size - len(self._buf)
            self._buf += view[:room]
            view = view[room:]
        self.bytes_written += n
        return n

    def _flush_part(self) -> None:
        if self._upload is None:
            self._upload = self.store.create_multipart(self.url, self.content_type,
                                                       cache_control=self.cache_control)
        if len(self._parts) >= MAX_PARTS:
            raise StorageError(f"{self.url}: more than {MAX_PARTS} parts; use a larger part "
                               "size", url=str(self.url), code="TooManyParts")
        self._parts.append(self.store.upload_part(self.url, self._upload, len(self._parts) + 1,
                                                  self._buf))
        self._buf = bytearray()

    def close(self) -> None:
        """Publish the object (the last part, then CompleteMultipartUpload or one PutObject).
        An error aborts the upload and propagates."""
        if self.closed:
            return
        try:
            if not self._done:
                if self._upload is None:
                    self.store.put(self.url, self._buf, self.content_type,
                                   cache_control=self.cache_control)
                else:
                    if self._buf or not self._parts:
                        self._flush_part()
                    self.store.complete_multipart(self.url, self._upload, self._parts)
                self._done = True
        except BaseException:
            self.abort()
            raise
        finally:
            self._buf = bytearray()
            super().close()

    def __del__(self) -> None:
        # an abandoned writer (never closed) must not publish half an object, as io's
        # default (close on collection) would
        if not getattr(self, "_done", True):
            self.abort()

    def abort(self) -> None:
        """Drop everything written so far (no object appears)."""
        if self._upload is not None and not self._done:
            self.store.abort_multipart(self.url, self._upload)
        self._done = True
        self._buf = bytearray()
        if not self.closed:
            super().close()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def upload_file(store: ObjectStore, path: str | os.PathLike[str], url: S3Url, *,
                content_type: str | None = None, width: int | None = None,
                dir_fd: int | None = None) -> int:
    """Upload a local file: one PutObject up to the part size, else a multipart upload whose
    parts are read with ``pread`` and sent ``width`` (default ``store.options.concurrency``)
    at a time (memory: that many parts). ``dir_fd``: ``path`` is relative to that open folder
    (which may be renamed meanwhile). Returns the size. Any failure aborts the upload and
    raises (:class:`StorageError`; :class:`OutputError` when the local file cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise OutputError(f"cannot read {os.fspath(path)} to upload it: "
                          f"{exc.strerror or exc}") from None
    try:
        size = os.fstat(fd).st_size
        if size <= store.part_size:
            store.put(url, _pread_exact(fd, size, 0, path), content_type)
            return size
        part = part_size_for(size, store.part_size)
        upload = store.create_multipart(url, content_type)
        try:
            numbers = range(1, -(-size // part) + 1)

            def send(n: int) -> dict[str, Any]:
                start = (n - 1) * part
                data = _pread_exact(fd, min(part, size - start), start, path)
                return store.upload_part(url, upload, n, data)

            parts = _bounded_map(send, numbers, width or store.options.concurrency)
            store.complete_multipart(url, upload, parts)
        except BaseException:
            store.abort_multipart(url, upload)
            raise
    finally:
        os.close(fd)
    return size


def _pread_exact(fd: int, n: int, at: int, path: str | os.PathLike[str]) -> bytes:
    try:
        data = os.pread(fd, n, at)
    except OSError as exc:
        raise OutputError(f"cannot read {os.fspath(path)} to upload it: "
                          f"{exc.strerror or exc}") from None
    if len(data) != n:
        raise OutputError(f"{os.fspath(path)} became shorter while it was uploaded")
    return data


def _bounded_map(fn: Callable[[int], dict[str, Any]], items: range, width: int
                 ) -> list[dict[str, Any]]:
    """``fn`` over ``items`` on ``width`` threads, never more than ``width`` in flight."""
    out: list[dict[str, Any]] = []
    with cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="s3-part") as ex:
        pending: set[cf.Future[dict[str, Any]]] = set()
        try:
            for i in items:
                if len(pending) >= width:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    out.extend(f.result() for f in done)
                pending.add(ex.submit(fn, i))
            done, _ = cf.wait(pending)
            pending = set()
            out.extend(f.result() for f in done)
        finally:
            for f in pending:
                f.cancel()
    return out


def download_file(store: ObjectStore, url: S3Url, path: str | os.PathLike[str], *,
                  width: int | None = None) -> int:
    """Copy an object to a local file with ranged GETs: one request up to the part size, else
    ``width`` (default ``store.options.concurrency``) parts at a time, each written at its
    offset (memory: that many parts). Every GET carries the ETag seen first, so an object
    replaced meanwhile is an error, never a mix. The file is written under a temporary name
    beside ``path`` and renamed when complete (no fsync: a cache, not a publication). Returns
    the size; raises :class:`StorageError` (or :class:`OutputError` for the local file)."""
    size, etag = store.head(url)
    part = part_size_for(size, store.part_size)

    def fill(fd: int) -> None:
        def fetch(n: int) -> dict[str, Any]:
            start = (n - 1) * part
            want = min(part, size - start)
            data = store.get_range(url, start, want, etag=etag)
            if len(data) != want:
                raise StorageError(f"{url}: short read ({len(data)} of {want} bytes at "
                                   f"{start})", url=str(url), code="ShortRead")
            if os.pwrite(fd, data, start) != want:  # (regular files: never short)
                raise OSError(5, "short write")
            return {}

        _bounded_map(fetch, range(1, -(-size // part) + 1), width or store.options.concurrency)

    write_fd_atomic(path, fill, mode=0o600, make_folder=True)
    return size
