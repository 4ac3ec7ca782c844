"""``s3://bucket/key`` URLs and the relative paths of a package inside a prefix."""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

from ..errors import UnsafeInputError, UsageError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,254}$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_s3(location: object) -> bool:
    """True for a string that is an ``s3://`` URL (a :class:`~pathlib.Path` never is: it would
    have collapsed the two slashes)."""
    return isinstance(location, (str, S3Url)) and str(location)[:5].lower() == "s3://"


@dataclass(frozen=True, slots=True)
class S3Url:
    """One object (or prefix) in a bucket: ``s3://bucket/key``."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> S3Url:
        if not is_s3(text):
            raise UsageError(f"{text}: not an s3:// URL")
        rest = text[5:]
        bucket, _, key = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise UsageError(f"{text}: no valid bucket name after s3://")
        if _CONTROL.search(key):
            raise UsageError(f"{text!r}: control character in the object key")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """The last component of the key (like ``Path.name``)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Url:
        """The folder prefix the object lives in (ends with ``/``, or empty at the root)."""
        head = self.key.rstrip("/").rpartition("/")[0]
        return S3Url(self.bucket, f"{head}/" if head else "")

    def as_prefix(self) -> S3Url:
        """The same location as a folder prefix (``key/``)."""
        key = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return S3Url(self.bucket, key)

    def join(self, rel: str) -> S3Url:
        """The object ``rel`` (a relative path checked by :func:`safe_rel`) under this prefix."""
        return S3Url(self.bucket, self.as_prefix().key + safe_rel(rel))

    def rel_of(self, other: S3Url) -> str | None:
        """``other``'s key relative to this prefix, None when it lies outside it."""
        prefix = self.as_prefix().key
        if other.bucket != self.bucket or not other.key.startswith(prefix):
            return None
        return other.key[len(prefix):]


def safe_rel(rel: str, *, what: str = "file") -> str:
    """A package-relative path normalised for an object key; refuses ``..`` leaving the
    package, absolute paths and control characters (:class:`UnsafeInputError`)."""
    if _CONTROL.search(rel):
        raise UnsafeInputError(f"{what} {rel!r}: NUL or control character in the name")
    norm = posixpath.normpath(rel.replace(os.sep, "/"))
    if rel.startswith("/") or norm == ".." or norm.startswith("../") or norm in ("", "."):
        raise UnsafeInputError(f"{what} {rel} resolves outside the package folder; refused")
    return norm


def location(text: str | os.PathLike[str] | S3Url) -> S3Url | str:
    """An :class:`S3Url` for an ``s3://`` string (or an S3Url), else the local path as a
    string."""
    if isinstance(text, S3Url):
        return text
    if isinstance(text, str) and is_s3(text):
        return S3Url.parse(text)
    return os.fspath(text)
