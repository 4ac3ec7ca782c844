"""The one exception tree of speke-packager.

Every error the package raises on purpose derives from :class:`SpekePackagerError`.
Messages never contain content keys.

::

    SpekePackagerError
      UsageError                      bad options or arguments given by the caller
      KeyAcquisitionError             anything on the way to content keys
        KeyServerError                transport problems (.url)
          KeyServerTimeout            connect/read timeout
          KeyServerHTTPError          non-200 answer (.status, .server_message, .request_id)
        KeyAuthError                  SigV4 / mTLS / credential problems
        CpixError                     malformed or invalid CPIX (.xpath)
          CpixValidationError         a response that does not answer the request (.check, .kid)
          CpixIntegrityError          MAC or decryption failure of encrypted content keys (.kid)
        KeyRotationError              live: no usable keys for a key period (.period)
          KeyGraceExpired             live: the key grace time is used up: stop publishing
      MediaError                      media that cannot be read or encrypted
        Mp4FormatError                broken ISO BMFF (.box_path)
        TsFormatError                 broken MPEG-TS (.packet_index, .pid)
        CodecError                    broken codec data (NAL, ADTS, AC-3 ...)
        UnsupportedMediaError         a codec/scheme/format we do not handle (names it)
        UnsafeInputError              an input entry that is not a regular file inside the
                                      package folder (symlink leaving it, FIFO, device, folder)
      ManifestError                   unreadable or inconsistent HLS/DASH manifest (.line)
      OutputError                     cannot write the output (disk full, exists, ...)
      ToolError                       an external tool (ffmpeg, packager) missing or failing
      VerificationError               verify found a mismatch
      StorageError                    object storage refused or failed a request (.url, .code)
        ObjectNotFoundError           the object (or bucket) does not exist
"""

from __future__ import annotations


class SpekePackagerError(Exception):
    """Base class of every error raised by speke-packager.

    Every one pickles with its class and attributes (keyword-only constructor arguments
    included), so an error raised in a worker process (encrypt-vod's pool, encrypt-batch, Dask)
    arrives typed."""

    exit_code = 1

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


def _rebuild_error(cls: type[SpekePackagerError], args: tuple[object, ...],
                   state: dict[str, object]) -> SpekePackagerError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class UsageError(SpekePackagerError):
    """The caller passed options that cannot work together or are malformed."""

    exit_code = 2


class KeyAcquisitionError(SpekePackagerError):
    """Content keys could not be obtained. ``transient``: the cause may go away by itself
    (timeout, connection error, 408/429/5xx): trying again later may succeed."""

    exit_code = 3
    transient: bool = False


class KeyServerError(KeyAcquisitionError):
    """The key server could not be reached or talked to."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class KeyServerTimeout(KeyServerError):
    """The key server did not answer in time."""


class KeyServerHTTPError(KeyServerError):
    """The key server answered with an HTTP status other than 200."""

    def __init__(
        self, message: str, *, url: str | None = None, status: int, server_message: str = "",
        error_type: str | None = None, request_id: str | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.server_message = server_message  # the server's own words (redacted, one line)
        self.error_type = error_type  # e.g. x-amzn-ErrorType
        self.request_id = request_id  # quote it to the vendor


class KeyAuthError(KeyAcquisitionError):
    """Authentication towards the key server failed or is misconfigured."""


class CpixError(KeyAcquisitionError):
    """A CPIX document is malformed or violates the CPIX/SPEKE rules."""

    def __init__(self, message: str, *, xpath: str | None = None) -> None:
        super().__init__(message)
        self.xpath = xpath


class CpixValidationError(CpixError):
    """A SPEKE response does not correctly answer the request."""

    def __init__(
        self,
        message: str,
        *,
        check: str,
        kid: str | None = None,
        xpath: str | None = None,
    ) -> None:
        super().__init__(message, xpath=xpath)
        self.check = check
        self.kid = kid


class CpixIntegrityError(CpixError):
    """Encrypted content keys failed their MAC check or could not be decrypted."""

    def __init__(self, message: str, *, kid: str | None = None, xpath: str | None = None) -> None:
        super().__init__(message, xpath=xpath)
        self.kid = kid


class KeyRotationError(KeyAcquisitionError):
    """Live packaging: the keys of a key period could not be obtained (fail closed) or do not
    fit the session (wrong period, no key for a rendition)."""

    def __init__(self, message: str, *, period: int | None = None) -> None:
        super().__init__(message)
        self.period = period


class KeyGraceExpired(KeyRotationError):
    """Live packaging: the keys of key period ``period`` are still missing and the grace time
    during which the previous period's keys may stand in is used up. The caller must stop
    publishing new segments (never publish them clear or with an unannounced key)."""


class MediaError(SpekePackagerError):
    """Media could not be parsed or encrypted."""

    exit_code = 4


class Mp4FormatError(MediaError):
    """Broken ISO BMFF structure."""

    def __init__(self, message: str, *, box_path: str | None = None) -> None:
        super().__init__(f"{message} (at {box_path})" if box_path else message)
        self.box_path = box_path


class TsFormatError(MediaError):
    """Broken MPEG-TS structure."""

    def __init__(
        self, message: str, *, packet_index: int | None = None, pid: int | None = None
    ) -> None:
        where = []
        if packet_index is not None:
            where.append(f"packet {packet_index}")
        if pid is not None:
            where.append(f"PID 0x{pid:04x}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.packet_index = packet_index
        self.pid = pid


class CodecError(MediaError):
    """Broken elementary-stream data (NAL units, ADTS, AC-3 syncframes...)."""


class UnsupportedMediaError(MediaError):
    """A codec, scheme or container combination that is not supported."""


class UnsafeInputError(MediaError):
    """An input entry refused before it is read: it resolves outside the package folder
    (a symbolic link leaving it), or it is not a regular file (FIFO, device, socket, folder),
    or its name holds a NUL or control character."""


class ManifestError(SpekePackagerError):
    """An HLS playlist or DASH MPD cannot be read or is inconsistent."""

    exit_code = 5

    def __init__(self, message: str, *, line: int | None = None, path: str | None = None) -> None:
        where = []
        if path:
            where.append(path)
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{message} ({':'.join(where)})" if where else message)
        self.line = line
        self.path = path


class OutputError(SpekePackagerError):
    """The output cannot be written."""

    exit_code = 6


class ToolError(SpekePackagerError):
    """An external tool (ffmpeg, ffprobe, packager, chromium) is missing or failed."""

    exit_code = 7


class VerificationError(SpekePackagerError):
    """`verify` found a mismatch between a package and its clear reference."""

    exit_code = 8


class StorageError(SpekePackagerError):
    """Object storage (S3 or compatible) refused or failed a request after its retries.

    ``url`` is the ``s3://`` URL concerned (never a presigned or credential-bearing URL),
    ``code`` the service's error code (``AccessDenied``, ``SlowDown``...) when it gave one."""

    exit_code = 9

    def __init__(self, message: str, *, url: str | None = None, code: str | None = None,
                 ) -> None:
        super().__init__(message)
        self.url = url
        self.code = code


class ObjectNotFoundError(StorageError):
    """The object or its bucket does not exist."""


class StorageWriteError(StorageError, OutputError):
    """A write or delete through a package writer on object storage failed (after botocore's
    retries): the output cannot be written, and the cause is the store's (``url``, ``code``).

    Both a :class:`StorageError` (exit code 9, like every object-storage failure) and an
    :class:`OutputError`, so code written against the writer contract (``except
    OutputError``, as for a folder) catches it whatever the destination."""


__all__ = [
    "CodecError",
    "CpixError",
    "CpixIntegrityError",
    "CpixValidationError",
    "KeyAcquisitionError",
    "KeyAuthError",
    "KeyGraceExpired",
    "KeyRotationError",
    "KeyServerError",
    "KeyServerHTTPError",
    "KeyServerTimeout",
    "ManifestError",
    "MediaError",
    "Mp4FormatError",
    "ObjectNotFoundError",
    "OutputError",
    "SpekePackagerError",
    "StorageError",
    "StorageWriteError",
    "ToolError",
    "TsFormatError",
    "UnsafeInputError",
    "UnsupportedMediaError",
    "UsageError",
    "VerificationError",
]
