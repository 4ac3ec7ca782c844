"""Object storage: ``s3://bucket/prefix`` URLs wherever a path is accepted, through botocore.

Layer: above base (it uses ``errors``, ``_io`` and ``_redact`` only), below ``pipeline`` and
``verify``, which read and write packages through it. See ``docs/storage.md``.

- :class:`S3Options` / :class:`ObjectStore`: the client (credentials, endpoint, region and
  retries from botocore's standard chain; ``endpoint_url`` for S3-compatible stores).
- :class:`RangedReader`: a seekable read-only file over ranged GETs, bounded read-ahead.
- :class:`MultipartWriter`, :func:`upload_file`: bounded-memory writes.
- :class:`Publication`: a package folder up, segments first, manifests last, rolled back on
  failure; :func:`download_tree` a prefix down.
- :class:`PackageWriter` (:class:`LocalWriter`, :class:`ObjectWriter`, :func:`open_writer`):
  atomic per-file writes for a live session.
"""

from __future__ import annotations

from .client import EXTRA_HINT, S3Options, make_client
from .fileobj import MultipartWriter, RangedReader, download_file, upload_file
from .publish import Publication, content_type, download_tree, local_files
from .store import ObjectStore
from .url import S3Url, is_s3, location, safe_rel
from .writers import LocalWriter, ObjectWriter, PackageWriter, open_writer

__all__ = [
    "EXTRA_HINT",
    "LocalWriter",
    "MultipartWriter",
    "ObjectStore",
    "ObjectWriter",
    "PackageWriter",
    "Publication",
    "RangedReader",
    "S3Options",
    "S3Url",
    "content_type",
    "download_file",
    "download_tree",
    "is_s3",
    "local_files",
    "location",
    "make_client",
    "open_writer",
    "safe_rel",
    "upload_file",
]
