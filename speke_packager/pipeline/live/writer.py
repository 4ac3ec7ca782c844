"""Where a live package goes: the :class:`LiveWriter` protocol and its default,
:class:`FolderWriter` (files in a folder, each written atomically).

A writer receives whole objects by a relative path (``video/12.m4s``, ``manifest.mpd``). The
packager calls it in publication order — the init segment, then the media segment, then the
manifests that name them — from several threads at once (segments of different renditions), so
an implementation must be thread-safe. It never sees a partial object: a reader of the
destination must never see one either (temp + rename for files, one PUT for object storage).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..._io import write_bytes_atomic, write_parts_atomic
from ...errors import OutputError, UsageError

__all__ = ["FolderWriter", "LiveWriter", "check_rel_path"]

_SAFE = re.compile(r"^[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*$")


def check_rel_path(rel: str) -> str:
    """``rel`` if it is a safe relative path (``/``-separated, no ``..``, no hidden names or
    characters outside ``A-Za-z0-9._~-``); else :class:`UsageError`."""
    if not _SAFE.match(rel) or any(part in (".", "..") or part.startswith(".")
                                   for part in rel.split("/")):
        raise UsageError(f"not a safe relative output path: {rel!r}")
    return rel


@runtime_checkable
class LiveWriter(Protocol):
    """The output of a live package.

    ``write(rel_path, data)``: make ``data`` visible at ``rel_path`` all at once (atomic
    replace; an object that exists is overwritten — manifests are rewritten after every
    segment). ``delete(rel_path)``: remove an object that left the manifests' window (a missing
    one is not an error). Both may be called from several threads at once and raise
    :class:`~speke_packager.errors.OutputError` on failure; ``rel_path`` is always a
    ``/``-separated relative path checked by :func:`check_rel_path`."""

    def write(self, rel_path: str, data: bytes) -> None: ...

    def delete(self, rel_path: str) -> None: ...


class FolderWriter:
    """Files under ``root``, each written to a temporary name beside it and renamed over it
    (readers never see a partial file). ``fsync``: also flush each file to disk before the
    rename (durability across a power cut; slower)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root).absolute()
        self.fsync = fsync
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.root}: {exc.strerror or exc}") from None
        if not self.root.is_dir():
            raise OutputError(f"{self.root} is not a directory")
        self._made: set[Path] = {self.root}

    def __repr__(self) -> str:
        return f"FolderWriter({str(self.root)!r})"

    def _path(self, rel: str) -> Path:
        path = self.root / check_rel_path(rel)
        parent = path.parent
        if parent not in self._made:  # set membership is thread-safe; mkdir is idempotent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create {parent}: {exc.strerror or exc}") from None
            self._made.add(parent)
        return path

    def write(self, rel_path: str, data: bytes) -> None:
        path = self._path(rel_path)
        if self.fsync:
            write_bytes_atomic(path, data)
        else:
            write_parts_atomic(path, [data])

    def delete(self, rel_path: str) -> None:
        path = self.root / check_rel_path(rel_path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"cannot delete {path}: {exc.strerror or exc}") from None
