"""Where a live session (or any producer of package files) puts its files: a local folder or
an ``s3://`` prefix, behind one small interface.

The interface is the one the live packager's ``LiveWriter`` expects (``write(rel_path, data)``,
``delete(rel_path)``, callable from several threads). Each :meth:`PackageWriter.write` is atomic
per file/object: a reader sees the old version or
the new one, never a partial one (a local temporary file renamed over the target; one
PutObject, or a multipart upload that only appears when completed)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._io import remove_file, write_parts_atomic
from ..errors import StorageError, StorageWriteError
from .client import S3Options
from .fileobj import MultipartWriter
from .publish import content_type
from .store import ObjectStore
from .url import S3Url, is_s3, safe_rel

Data = bytes | bytearray | memoryview


@runtime_checkable
class PackageWriter(Protocol):
    """Files of a package by relative path (``video/seg_00012.m4s``, ``master.m3u8``).
    Failures raise :class:`~speke_packager.errors.OutputError` (on object storage its
    subclass :class:`~speke_packager.errors.StorageWriteError`)."""

    def write(self, rel_path: str, data: Data) -> None:
        """Create or replace ``rel_path`` with ``data``, atomically."""
        ...

    def delete(self, rel_path: str) -> None:
        """Remove ``rel_path`` (nothing happens when it is missing)."""
        ...


class LocalWriter:
    """A package folder on a local file system."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalWriter({str(self.root)!r})"

    def write(self, rel_path: str, data: Data) -> None:
        write_parts_atomic(self.root / safe_rel(rel_path), [data], make_folder=True)

    def delete(self, rel_path: str) -> None:
        remove_file(self.root / safe_rel(rel_path))


class ObjectWriter:
    """A package under an ``s3://`` prefix: one PutObject per file up to the part size, a
    multipart upload (bounded memory: one part) above it. Thread-safe (one botocore client,
    shared). ``content_type``: the Content-Type of a relative path (default: the package types
    of :func:`~.publish.content_type`); ``cache_control``: its ``Cache-Control`` header, or
    None for none (default: none). Failures raise
    :class:`~speke_packager.errors.StorageWriteError` (a ``StorageError`` and an
    ``OutputError``) after botocore's retries."""

    def __init__(self, prefix: S3Url, store: ObjectStore | None = None, *,
                 content_type: Callable[[str], str] = content_type,
                 cache_control: Callable[[str], str | None] | None = None) -> None:
        self.prefix = prefix.as_prefix()
        self.store = store or ObjectStore()
        self.content_type = content_type
        self.cache_control = cache_control

    def __repr__(self) -> str:
        return f"ObjectWriter({str(self.prefix)!r})"

    def write(self, rel_path: str, data: Data) -> None:
        url = self.prefix.join(rel_path)
        view = memoryview(data).cast("B")
        ctype = self.content_type(rel_path)
        cache = self.cache_control(rel_path) if self.cache_control else None
        try:
            if len(view) <= self.store.part_size:
                self.store.put(url, view, ctype, cache_control=cache)
                return
            with MultipartWriter(self.store, url, content_type=ctype,
                                 cache_control=cache) as w:
                w.write(view)
        except StorageError as exc:
            raise _write_error(exc) from None

    def delete(self, rel_path: str) -> None:
        try:
            self.store.delete(self.prefix.join(rel_path))
        except StorageError as exc:
            raise _write_error(exc) from None


def _write_error(exc: StorageError) -> StorageWriteError:
    """The same failure as the writer contract's type (a missing bucket included)."""
    if isinstance(exc, StorageWriteError):
        return exc
    return StorageWriteError(str(exc), url=exc.url, code=exc.code)


def open_writer(location: str | os.PathLike[str], options: S3Options | None = None
                ) -> LocalWriter | ObjectWriter:
    """An :class:`ObjectWriter` for an ``s3://`` URL, else a :class:`LocalWriter`."""
    if isinstance(location, str) and is_s3(location):
        return ObjectWriter(S3Url.parse(location), ObjectStore(options))
    with contextlib.suppress(OSError):
        Path(location).mkdir(parents=True, exist_ok=True)
    return LocalWriter(location)
