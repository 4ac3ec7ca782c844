"""``verify`` on packages (and references) in object storage: staged into a local folder
first, then checked exactly like local files (the verifier decrypts with ffmpeg and Shaka
Packager, which read local files).

A package is every object under the ``s3://`` prefix given; a reference is one object (a media
file) or, for a clear manifest, every object under the manifest's folder prefix."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ObjectNotFoundError, UsageError
from ..storage import ObjectStore, S3Options, S3Url, download_file, download_tree, is_s3

_MANIFESTS = (".m3u8", ".m3u", ".mpd")


@contextmanager
def staged(directory: str | os.PathLike[str], reference: str | os.PathLike[str],
           options: S3Options | None = None) -> Iterator[tuple[Path, Path]]:
    """(local package folder, local reference) for paths or ``s3://`` URLs; what was
    downloaded goes when the block ends."""
    if not (is_s3(directory) or is_s3(reference)):
        yield Path(directory), Path(reference)
        return
    store = ObjectStore(options)
    tmp = Path(tempfile.mkdtemp(prefix="speke-verify-s3-"))
    try:
        pkg = Path(directory)
        if isinstance(directory, str) and is_s3(directory):
            url = S3Url.parse(directory).as_prefix()
            pkg = tmp / "package"
            if not download_tree(store, url, pkg):
                raise ObjectNotFoundError(f"package {url}: no object under this prefix",
                                          url=str(url), code="NoSuchKey")
        ref = Path(reference)
        if isinstance(reference, str) and is_s3(reference):
            rurl = S3Url.parse(reference)
            if not rurl.name:
                raise UsageError(f"reference {reference}: give the media file or manifest")
            if os.path.splitext(rurl.name)[1].lower() in _MANIFESTS:
                ref = tmp / "reference" / rurl.name
                download_file(store, rurl, ref)  # (missing: one clear error first)
                download_tree(store, rurl.parent, ref.parent)
            else:
                ref = tmp / "reference" / rurl.name
                download_file(store, rurl, ref)
        yield pkg, ref
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
