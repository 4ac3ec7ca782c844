"""The completion manifest of one batch asset: ``.speke-packager-complete.json``.

Written by the worker as the last file of the output folder, while the folder still has its
temporary name (:attr:`~..options.VodOptions.before_publish`), so a published output always
holds it. It lists every other file of the output with its size and SHA-256, the asset's job
fingerprint (the options and key source of its row, never a key) and its KIDs. A re-run of the
batch skips an asset whose output matches its manifest, and redoes one whose output is missing,
changed, or was made for other options.

For an ``s3://`` output the manifest is written the same way into the local folder the package
is built in, and :class:`~speke_packager.storage.Publication` uploads it last, after the
segments and the playlists / MPD: a prefix that holds it holds the whole package. The resume
check lists the prefix (:func:`remote_output_state`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._io import write_text_atomic
from ...errors import ObjectNotFoundError
from ...storage import ObjectStore, S3Options, S3Url, is_s3, location

MARKER = ".speke-packager-complete.json"
# an s3:// output being written by a batch worker (put before its first object, deleted after
# the completion manifest is up): a prefix a killed run left half-written is still "ours"
CLAIM = ".speke-packager-partial.json"
_FORMAT = 1
_MAX_MARKER = 64 << 20  # a manifest larger than this is not ours
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> dict[str, Path]:
    """Every regular file below ``root`` but the manifest, by its POSIX path relative to root."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel != MARKER:
                out[rel] = p
    return out


def write_marker(root: Path, *, asset: str, fingerprint: str, kids: list[str],
                 version: str) -> dict[str, Any]:
    """Hash every file below ``root`` and write the manifest there (last); returns it."""
    files = {rel: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for rel, p in sorted(_files(root).items())}
    doc: dict[str, Any] = {"format": _FORMAT, "speke_packager": version, "asset": asset,
                           "fingerprint": fingerprint, "kids": kids, "files": files}
    write_text_atomic(root / MARKER, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc


@dataclass(frozen=True, slots=True)
class OutputState:
    """What the coordinator found at an asset's output folder."""

    complete: bool  # matches its manifest and this job's fingerprint: skip
    ours: bool  # holds a completion manifest (complete or not): may be replaced
    exists: bool  # a non-empty folder (or a non-folder) is there
    reason: str = ""  # why an existing output is not complete
    bytes: int = 0  # of a complete output


def read_marker(root: Path) -> dict[str, Any] | None:
    path = root / MARKER
    try:
        if not path.is_file() or path.stat().st_size > _MAX_MARKER:
            return None
        return _parse_marker(path.read_bytes())
    except OSError:
        return None


def _parse_marker(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT \
            or not isinstance(doc.get("files"), dict):
        return None
    return doc


def _against(doc: dict[str, Any], fingerprint: str, names: list[str],
             size: Callable[[str], int], sha256: Callable[[str, int], str], *,
             check: str) -> OutputState:
    """The state of an output that holds the files ``names`` (checked in this order; ``size``
    and ``sha256`` read one of them) against its completion manifest ``doc``."""
    if doc.get("fingerprint") != fingerprint:
        return OutputState(complete=False, ours=True, exists=True,
                           reason="made for other options or another input")
    want: dict[str, Any] = doc["files"]
    if set(names) != set(want):
        missing = sorted(set(want) - set(names))
        extra = sorted(set(names) - set(want))
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        return OutputState(complete=False, ours=True, exists=True, reason=what)
    total = 0
    for rel in names:
        meta = want[rel]
        if not isinstance(meta, dict):
            return OutputState(complete=False, ours=True, exists=True, reason=f"bad entry {rel}")
        n = size(rel)
        if n != meta.get("bytes"):
            return OutputState(complete=False, ours=True, exists=True,
                               reason=f"{rel} changed size")
        if check == "sha256" and sha256(rel, n) != meta.get("sha256"):
            return OutputState(complete=False, ours=True, exists=True,
                               reason=f"{rel} changed (checksum)")
        total += n
    return OutputState(complete=True, ours=True, exists=True, bytes=total)


def output_state(root: Path, fingerprint: str, *, check: str = "sha256") -> OutputState:
    """Is ``root`` the complete output of the job with ``fingerprint``?

    ``check``: "sha256" (read every file) or "size" (sizes and names only, for a quick resume
    of a large catalogue on storage that is trusted not to change bytes in place)."""
    if not root.exists() and not root.is_symlink():
        return OutputState(complete=False, ours=False, exists=False)
    if not root.is_dir():
        return OutputState(complete=False, ours=False, exists=True, reason="not a folder")
    doc = read_marker(root)
    if doc is None:
        empty = not any(root.iterdir())
        return OutputState(complete=False, ours=False, exists=not empty,
                           reason="no completion manifest")
    have = _files(root)
    return _against(doc, fingerprint, list(have), lambda rel: have[rel].stat().st_size,
                    lambda rel, _: sha256_file(have[rel]), check=check)


def output_state_at(output: str | os.PathLike[str], fingerprint: str, *,
                    check: str = "sha256", storage: S3Options | None = None) -> OutputState:
    """:func:`output_state` of a local folder or of an ``s3://`` prefix
    (:func:`remote_output_state`)."""
    where = location(output)
    if isinstance(where, S3Url):
        return remote_output_state(ObjectStore(storage), where, fingerprint, check=check)
    return output_state(Path(where), fingerprint, check=check)


def sha256_object(store: ObjectStore, url: S3Url, size: int, etag: str) -> str:
    """SHA-256 of an object read in ranged GETs (an object replaced meanwhile is an error)."""
    h = hashlib.sha256()
    pos, step = 0, 8 * _CHUNK
    while pos < size:
        data = store.get_range(url, pos, min(step, size - pos), etag=etag or None)
        if not data:
            break
        h.update(data)
        pos += len(data)
    return h.hexdigest()


def remote_output_state(store: ObjectStore, prefix: S3Url, fingerprint: str, *,
                        check: str = "sha256") -> OutputState:
    """:func:`output_state` of an ``s3://`` output prefix: one LIST (names and sizes of every
    object under it), the completion manifest read, then with ``check="sha256"`` every other
    object read back and hashed against the SHA-256 the manifest recorded before upload (an
    ETag is not a content hash under every store and encryption mode, so it is not trusted
    for this); ``check="size"`` compares names and sizes only."""
    base = prefix.as_prefix()
    have = {rel: meta for rel, meta in store.inventory(base).items()
            if rel and not rel.endswith("/")}  # (the "folder" objects some tools make)
    if not have:
        return OutputState(complete=False, ours=False, exists=False)
    marker = have.pop(MARKER, None)
    if marker is None and CLAIM in have:
        return OutputState(complete=False, ours=True, exists=True,
                           reason="an earlier run did not finish")
    doc: dict[str, Any] | None = None
    if marker is not None and marker[0] <= _MAX_MARKER:
        try:
            doc = _parse_marker(store.get_range(base.join(MARKER), 0, marker[0],
                                                etag=marker[1] or None))
        except ObjectNotFoundError:
            doc = None
    if doc is None:
        return OutputState(complete=False, ours=False, exists=True,
                           reason="no completion manifest")
    return _against(doc, fingerprint, sorted(have), lambda rel: have[rel][0],
                    lambda rel, size: sha256_object(store, base.join(rel), size, have[rel][1]),
                    check=check)


class OutputClaim:
    """The claim of a worker on an ``s3://`` output (nothing for a local folder, which is built
    under a temporary name). :meth:`put` before encryption; :meth:`release` after a failure
    (the run's own objects are already removed); after a success the publication removed it
    (it is an object of the earlier prefix that the new package does not rewrite)."""

    def __init__(self, output: str | os.PathLike[str], storage: S3Options | None) -> None:
        self.url: S3Url | None = None
        self.store: ObjectStore | None = None
        if is_s3(output):
            self.url = S3Url.parse(str(output)).as_prefix().join(CLAIM)
            self.store = ObjectStore(storage)

    @property
    def remote(self) -> bool:
        return self.url is not None

    def put(self, asset: str, fingerprint: str) -> None:
        if self.url is not None and self.store is not None:
            body = json.dumps({"format": _FORMAT, "asset": asset, "fingerprint": fingerprint})
            self.store.put(self.url, body.encode(), "application/json")

    def release(self) -> None:
        if self.url is not None and self.store is not None:
            self.store.delete(self.url)
