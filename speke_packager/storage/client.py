"""The botocore S3 client: credentials, endpoint, region and retries from the standard chain,
and botocore's errors turned into :class:`~speke_packager.errors.StorageError` (one line).

Credentials come from botocore's chain only (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared files, SSO, container and instance roles);
nothing here reads or stores a secret. The endpoint is ``S3Options.endpoint_url`` (the CLI's
``--endpoint-url``), else botocore's own ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` / profile
``endpoint_url``. Retries: botocore's ``standard`` mode (exponential back-off with jitter on
throttling such as ``SlowDown`` and 5xx, transient connection errors) unless ``AWS_RETRY_MODE``
or the profile's ``retry_mode`` says otherwise (``adaptive`` adds client-side rate limiting);
``AWS_MAX_ATTEMPTS`` / ``max_attempts`` likewise override the default of 8 attempts."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from .._redact import redact_url
from ..errors import ObjectNotFoundError, StorageError, UsageError

EXTRA_HINT = "pip install 'speke-packager[s3]'"
MiB = 1 << 20
DEFAULT_ATTEMPTS = 8
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound", "NoSuchUpload"})
_RETRY_MODES = ("legacy", "standard", "adaptive")


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach object storage. Every field left at None comes from botocore's chain.

    ``part_size``: multipart part size (and the ranged reader's read-ahead); S3 wants 5 MiB to
    5 GiB. ``concurrency``: objects (or parts) moving at once; memory stays within about
    ``part_size * concurrency``."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    retry_mode: str | None = None
    max_attempts: int | None = None
    part_size: int = 8 * MiB
    concurrency: int = 8
    path_style: bool | None = None  # None: path style with a custom endpoint, else auto

    def __post_init__(self) -> None:
        if not 5 * MiB <= self.part_size <= 5 * 1024 * MiB:
            raise UsageError("the S3 part size must be between 5 MiB and 5 GiB")
        if self.concurrency < 1:
            raise UsageError("the S3 concurrency must be at least 1")
        if self.retry_mode is not None and self.retry_mode not in _RETRY_MODES:
            raise UsageError(f"retry mode {self.retry_mode!r}: use one of "
                             f"{', '.join(_RETRY_MODES)}")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
                ("http://", "https://")):
            raise UsageError(f"--endpoint-url {redact_url(self.endpoint_url)}: give an "
                             "http:// or https:// URL")


def _botocore() -> Any:
    try:
        import botocore.config
        import botocore.session
    except ImportError as exc:  # pragma: no cover - botocore is a base dependency today
        raise UsageError(f"s3:// URLs need botocore ({exc.name} is missing): "
                         f"{EXTRA_HINT}") from None
    return botocore


_LOCK = threading.Lock()


def make_client(options: S3Options | None = None) -> Any:
    """A botocore S3 client (thread-safe once made; not to be shared across ``fork``)."""
    opts = options or S3Options()
    botocore = _botocore()
    with _LOCK:  # botocore sessions are not thread-safe while they load their data
        session = botocore.session.Session(profile=opts.profile)
        try:
            mode = opts.retry_mode or session.get_config_variable("retry_mode")
            attempts = opts.max_attempts or session.get_config_variable("max_attempts")
        except Exception as exc:  # a missing profile, a malformed config file
            raise StorageError(f"AWS configuration: {exc}") from None
        if mode in (None, "legacy") and opts.retry_mode is None \
                and not os.environ.get("AWS_RETRY_MODE"):
            mode = "standard"
        try:
            scoped = session.get_scoped_config()
        except Exception as exc:  # a missing profile
            raise StorageError(f"AWS configuration: {exc}") from None
        # a custom endpoint (option, variable or profile): path-style addressing, which
        # S3-compatible stores expect, unless the profile chose an addressing style itself
        custom = bool(opts.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                      or os.environ.get("AWS_ENDPOINT_URL") or scoped.get("endpoint_url")
                      or scoped.get("services"))
        s3_conf = scoped.get("s3")
        chosen = isinstance(s3_conf, dict) and bool(s3_conf.get("addressing_style"))
        path_style = (custom and not chosen) if opts.path_style is None else opts.path_style
        config = botocore.config.Config(
            retries={"mode": mode, "total_max_attempts": int(attempts or DEFAULT_ATTEMPTS)},
            max_pool_connections=max(10, opts.concurrency * 2),
            connect_timeout=10, read_timeout=60,
            s3={"addressing_style": "path"} if path_style else None,
        )
        region = opts.region or session.get_config_variable("region") or "us-east-1"
        try:
            return session.create_client("s3", region_name=region,
                                         endpoint_url=opts.endpoint_url, config=config)
        except Exception as exc:
            raise StorageError(f"cannot set up the S3 client: {exc}") from None


def storage_error(exc: BaseException, url: object, action: str) -> StorageError:
    """One line for a failed request on ``url``: ``action`` ("read", "write"...), the service's
    code and message, or the transport / credential problem."""
    _botocore()
    import botocore.exceptions as bex

    where = str(url)
    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {})
                   .get("HTTPStatusCode", "error"))
        message = str(err.get("Message") or "").replace("\n", " ").strip()
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _NOT_FOUND or status == 404:
            what = "bucket" if code == "NoSuchBucket" else "object"
            return ObjectNotFoundError(f"cannot {action} {where}: the {what} does not exist "
                                       f"({code})", url=where, code=code)
        detail = f"{code}: {message}" if message else code
        return StorageError(f"cannot {action} {where}: {detail}", url=where, code=code)
    if isinstance(exc, bex.NoCredentialsError):
        return StorageError(f"cannot {action} {where}: no AWS credentials found (set "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role)",
                            url=where, code="NoCredentials")
    if isinstance(exc, bex.EndpointConnectionError):
        return StorageError(f"cannot {action} {where}: cannot connect to "
                            f"{redact_url(str(exc.kwargs.get('endpoint_url', '')))}",
                            url=where, code="EndpointConnectionError")
    if isinstance(exc, bex.BotoCoreError):
        return StorageError(f"cannot {action} {where}: {exc}", url=where,
                            code=type(exc).__name__)
    if isinstance(exc, OSError):
        return StorageError(f"cannot {action} {where}: {exc.strerror or exc}", url=where,
                            code=type(exc).__name__)
    return StorageError(f"cannot {action} {where}: {exc}", url=where)


def client_errors() -> tuple[type[BaseException], ...]:
    """The exception classes a botocore call raises (for ``except``)."""
    _botocore()
    import botocore.exceptions as bex

    return (bex.BotoCoreError, bex.ClientError, OSError)
