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
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._io import write_parts_atomic
from ..errors import OutputError
from .client import S3Options
from .fileobj import MultipartWriter
from .publish import content_type
from .store import ObjectStore
from .url import S3Url, is_s3, safe_rel

Data = bytes | bytearray | memoryview


@runtime_checkable
class PackageWriter(Protocol):
    """Files of a package by relative path (``video/seg_00012.m4s``, ``master.m3u8``)."""

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
        target = self.root / safe_rel(rel_path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        write_parts_atomic(target, [data])

    def delete(self, rel_path: str) -> None:
        target = self.root / safe_rel(rel_path)
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"cannot delete {target}: {exc.strerror or exc}") from None


class ObjectWriter:
    """A package under an ``s3://`` prefix: one PutObject per file up to the part size, a
    multipart upload (bounded memory: one part) above it, with the package Content-Types.
    Thread-safe (one botocore client, shared). Failures raise
    :class:`~speke_packager.errors.StorageError` after botocore's retries."""

    def __init__(self, prefix: S3Url, store: ObjectStore | None = None) -> None:
        self.prefix = prefix.as_prefix()
        self.store = store or ObjectStore()

    def __repr__(self) -> str:
        return f"ObjectWriter({str(self.prefix)!r})"

    def write(self, rel_path: str, data: Data) -> None:
        url = self.prefix.join(rel_path)
        view = memoryview(data).cast("B")
        if len(view) <= self.store.part_size:
            self.store.put(url, view, content_type(rel_path))
            return
        with MultipartWriter(self.store, url, content_type=content_type(rel_path)) as w:
            w.write(view)

    def delete(self, rel_path: str) -> None:
        self.store.delete(self.prefix.join(rel_path))


def open_writer(location: str | os.PathLike[str], options: S3Options | None = None
                ) -> LocalWriter | ObjectWriter:
    """An :class:`ObjectWriter` for an ``s3://`` URL, else a :class:`LocalWriter`."""
    if isinstance(location, str) and is_s3(location):
        return ObjectWriter(S3Url.parse(location), ObjectStore(options))
    with contextlib.suppress(OSError):
        Path(location).mkdir(parents=True, exist_ok=True)
    return LocalWriter(location)
