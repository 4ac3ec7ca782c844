"""Where a live package goes: the :class:`LiveWriter` protocol, its default
:class:`FolderWriter` (files in a folder, each written atomically) and :func:`object_writer`
(objects under an ``s3://`` prefix, one PutObject each, with the headers a CDN needs).

A writer receives whole objects by a relative path (``video/12.m4s``, ``manifest.mpd``). The
packager calls it in publication order — the init segment, then the media segment, then the
manifests that name them — from several threads at once (segments of different renditions), so
an implementation must be thread-safe. It never sees a partial object: a reader of the
destination must never see one either (temp + rename for files, one PUT for object storage).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..._io import remove_file, write_bytes_atomic, write_parts_atomic
from ...errors import OutputError, UsageError
from ...storage import ObjectStore, ObjectWriter, S3Options, S3Url, content_type

__all__ = ["MANIFEST_CACHE_CONTROL", "MEDIA_CACHE_CONTROL", "FolderWriter", "LiveWriter",
           "check_rel_path", "live_cache_control", "live_content_type", "object_writer"]

#: ``Cache-Control`` of the manifests on object storage: rewritten after every segment, so a
#: CDN may keep one for a second at most (it still collapses a crowd of players' requests)
MANIFEST_CACHE_CONTROL = "max-age=1"
#: ``Cache-Control`` of segments and init segments: never rewritten under the same name within
#: a session (a new session on the same prefix should start new names or a new prefix)
MEDIA_CACHE_CONTROL = "max-age=86400"
_MANIFESTS = (".m3u8", ".mpd")
_MP4 = (".mp4", ".m4s")

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


def live_cache_control(rel_path: str, *, manifests: str | None = MANIFEST_CACHE_CONTROL,
                       media: str | None = MEDIA_CACHE_CONTROL) -> str | None:
    """The ``Cache-Control`` of a live package object: ``manifests`` for playlists and MPDs,
    ``media`` for everything else (segments, init segments)."""
    return manifests if rel_path.lower().endswith(_MANIFESTS) else media


def live_content_type(audio: Collection[str] = ()) -> Callable[[str], str]:
    """Content-Type by relative path: fMP4 segments and inits are ``audio/mp4`` in an audio
    rendition's folder (one of ``audio``), else ``video/mp4``; ``.m3u8``
    ``application/vnd.apple.mpegurl``, ``.mpd`` ``application/dash+xml``, ``.ts``
    ``video/mp2t``."""
    names = frozenset(audio)

    def of(rel_path: str) -> str:
        if rel_path.lower().endswith(_MP4):
            return "audio/mp4" if rel_path.split("/", 1)[0] in names else "video/mp4"
        return content_type(rel_path)

    return of


def object_writer(url: str, storage: S3Options | None = None, *, audio: Collection[str] = (),
                  manifest_cache: str | None = MANIFEST_CACHE_CONTROL,
                  media_cache: str | None = MEDIA_CACHE_CONTROL) -> ObjectWriter:
    """A :class:`LiveWriter` on object storage: each object under the ``s3://`` prefix ``url``
    written whole by one PutObject (a reader sees the old object or the new one), with
    :func:`live_content_type` (``audio``: the audio renditions' names) and
    :func:`live_cache_control` headers. Failures (after botocore's retries) raise
    :class:`~speke_packager.errors.StorageWriteError`, an ``OutputError``."""
    return ObjectWriter(
        S3Url.parse(url), ObjectStore(storage), content_type=live_content_type(audio),
        cache_control=lambda rel: live_cache_control(rel, manifests=manifest_cache,
                                                     media=media_cache))


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
        remove_file(self.root / check_rel_path(rel_path))
