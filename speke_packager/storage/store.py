"""One bucket-agnostic handle on object storage: HEAD, ranged GET, LIST, PUT, DELETE and the
multipart calls, each failure a one-line :class:`~speke_packager.errors.StorageError`."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import ObjectNotFoundError, StorageError
from .client import S3Options, client_errors, make_client, storage_error
from .url import S3Url

# a body that breaks off mid-stream is asked for again (botocore retries the request only)
_BODY_ATTEMPTS = 4


def _headers(content_type: str | None, cache_control: str | None) -> dict[str, str]:
    extra = {"ContentType": content_type} if content_type else {}
    if cache_control:
        extra["CacheControl"] = cache_control
    return extra


class ObjectStore:
    """S3 (or a compatible store) through botocore. Thread-safe; after ``fork`` a child makes
    its own client (botocore clients and their connection pools are not fork-safe)."""

    def __init__(self, options: S3Options | None = None) -> None:
        self.options = options or S3Options()
        self._client: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ObjectStore(endpoint_url={self.options.endpoint_url!r})"

    def __reduce__(self) -> tuple[type[ObjectStore], tuple[S3Options]]:
        """Pickled as its options only (for worker processes and Dask): the receiving
        process makes its own client, and credentials never travel."""
        return (ObjectStore, (self.options,))

    @property
    def client(self) -> Any:
        """The botocore client of this process (made on first use)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = make_client(self.options)
                self._pid = os.getpid()
            return self._client

    @property
    def part_size(self) -> int:
        return self.options.part_size

    # ---- reading -----------------------------------------------------------------------

    def head(self, url: S3Url) -> tuple[int, str]:
        """(size, ETag) of an object; :class:`ObjectNotFoundError` when it is missing."""
        try:
            r = self.client.head_object(Bucket=url.bucket, Key=url.key)
        except client_errors() as exc:
            raise storage_error(exc, url, "read") from None
        return int(r["ContentLength"]), str(r.get("ETag", ""))

    def exists(self, url: S3Url) -> bool:
        try:
            self.head(url)
        except ObjectNotFoundError:
            return False
        return True

    def get_range(self, url: S3Url, start: int, length: int, *, etag: str | None = None
                  ) -> bytes:
        """``length`` bytes from ``start`` (fewer only at the end of the object). With
        ``etag``, an object replaced meanwhile is an error rather than mixed bytes."""
        if length <= 0:
            return b""
        extra = {"IfMatch": etag} if etag else {}
        last: BaseException | None = None
        for _ in range(_BODY_ATTEMPTS):
            try:
                r = self.client.get_object(Bucket=url.bucket, Key=url.key,
                                           Range=f"bytes={start}-{start + length - 1}",
                                           **extra)
            except client_errors() as exc:
                err = storage_error(exc, url, "read")
                if err.code == "PreconditionFailed":
                    raise StorageError(f"{url} changed while it was read", url=str(url),
                                       code=err.code) from None
                if err.code == "InvalidRange":  # at or past the end
                    return b""
                raise err from None
            body = r["Body"]
            try:
                data: bytes = body.read()
            except client_errors() as exc:  # connection broke mid-body: ask again
                last = exc
                continue
            except Exception as exc:  # urllib3's ProtocolError and friends
                last = exc
                continue
            finally:
                body.close()
            return data
        assert last is not None
        raise storage_error(last, url, "read") from None

    def _listing(self, prefix: S3Url) -> Iterator[dict[str, Any]]:
        """The ListObjectsV2 entries (``Key``, ``Size``, ``ETag``...) of every object whose key
        starts with ``prefix.key``, in key order, one LIST page per 1000 objects."""
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": prefix.bucket, "Prefix": prefix.key}
            if token:
                kw["ContinuationToken"] = token
            try:
                r = self.client.list_objects_v2(**kw)
            except client_errors() as exc:
                raise storage_error(exc, prefix, "list") from None
            yield from r.get("Contents", ())
            if not r.get("IsTruncated"):
                return
            token = r.get("NextContinuationToken")

    def list_objects(self, prefix: S3Url) -> Iterator[tuple[S3Url, int]]:
        """Every object whose key starts with ``prefix.key`` (and its size), in key order."""
        for item in self._listing(prefix):
            yield S3Url(prefix.bucket, item["Key"]), int(item["Size"])

    def inventory(self, prefix: S3Url) -> dict[str, tuple[int, str]]:
        """{path relative to ``prefix``: (size, ETag)} of every object under it (one LIST
        page per 1000 objects; no object is read). For a manifest of what a run published,
        or to check later that a package is still complete and unchanged."""
        base = prefix.as_prefix()
        return {item["Key"][len(base.key):]: (int(item["Size"]), str(item.get("ETag", "")))
                for item in self._listing(base)}

    def any_under(self, prefix: S3Url) -> bool:
        try:
            r = self.client.list_objects_v2(Bucket=prefix.bucket, Prefix=prefix.key, MaxKeys=1)
        except client_errors() as exc:
            raise storage_error(exc, prefix, "list") from None
        return bool(r.get("KeyCount") or r.get("Contents"))

    # ---- writing -----------------------------------------------------------------------

    def put(self, url: S3Url, data: bytes | bytearray | memoryview,
            content_type: str | None = None, *, cache_control: str | None = None) -> None:
        """One PutObject (the object appears whole or not at all). ``cache_control``: the
        object's ``Cache-Control`` header, served with it (to a CDN in front of the bucket)."""
        extra = _headers(content_type, cache_control)
        try:
            self.client.put_object(Bucket=url.bucket, Key=url.key, Body=bytes(data), **extra)
        except client_errors() as exc:
            raise storage_error(exc, url, "write") from None

    def delete(self, url: S3Url) -> None:
        try:
            self.client.delete_object(Bucket=url.bucket, Key=url.key)
        except client_errors() as exc:
            raise storage_error(exc, url, "delete") from None

    def delete_many(self, urls: list[S3Url]) -> list[tuple[S3Url, str]]:
        """Delete every object (1000 a request); returns those that could not be, with why."""
        failed: list[tuple[S3Url, str]] = []
        by_bucket: dict[str, list[S3Url]] = {}
        for u in urls:
            by_bucket.setdefault(u.bucket, []).append(u)
        for bucket, items in by_bucket.items():
            for i in range(0, len(items), 1000):
                batch = items[i:i + 1000]
                try:
                    r = self.client.delete_objects(Bucket=bucket, Delete={
                        "Objects": [{"Key": u.key} for u in batch], "Quiet": True})
                except client_errors() as exc:
                    why = str(storage_error(exc, f"s3://{bucket}", "delete"))
                    failed.extend((u, why) for u in batch)
                    continue
                for err in r.get("Errors", ()):
                    failed.append((S3Url(bucket, err.get("Key", "")),
                                   f"{err.get('Code', 'error')}: {err.get('Message', '')}"))
        return failed

    def create_multipart(self, url: S3Url, content_type: str | None = None, *,
                         cache_control: str | None = None) -> str:
        extra = _headers(content_type, cache_control)
        try:
            r = self.client.create_multipart_upload(Bucket=url.bucket, Key=url.key, **extra)
        except client_errors() as exc:
            raise storage_error(exc, url, "write") from None
        return str(r["UploadId"])

    def upload_part(self, url: S3Url, upload_id: str, number: int,
                    data: bytes | bytearray | memoryview) -> dict[str, Any]:
        try:
            r = self.client.upload_part(Bucket=url.bucket, Key=url.key, UploadId=upload_id,
                                        PartNumber=number, Body=bytes(data))
        except client_errors() as exc:
            raise storage_error(exc, url, "write") from None
        return {"PartNumber": number, "ETag": r["ETag"]}

    def complete_multipart(self, url: S3Url, upload_id: str, parts: list[dict[str, Any]]
                           ) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=url.bucket, Key=url.key, UploadId=upload_id,
                MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])})
        except client_errors() as exc:
            raise storage_error(exc, url, "write") from None

    def abort_multipart(self, url: S3Url, upload_id: str) -> bool:
        """Abort an upload (its parts are freed); False when even that failed."""
        try:
            self.client.abort_multipart_upload(Bucket=url.bucket, Key=url.key,
                                               UploadId=upload_id)
        except client_errors():
            return False
        return True
