"""speke-packager: encryptor-side SPEKE client, local key server, media encryption, manifests.

Everything a library user needs is importable from here (``__all__``). The model, constants and
errors load with the package; the rest (the SPEKE client and ``requests``, the encryptors and
``numpy``/``cryptography``, the key server, the verifier) loads on first use of one of its names
(PEP 562), so ``import speke_packager`` stays cheap. The sub-packages stay importable directly;
docs/architecture.md draws the layers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .constants import DrmSystem, Packaging, Scheme, SpekeVersion
from .errors import (
    CodecError,
    CpixError,
    CpixIntegrityError,
    CpixValidationError,
    KeyAcquisitionError,
    KeyAuthError,
    KeyGraceExpired,
    KeyRotationError,
    KeyServerError,
    KeyServerHTTPError,
    KeyServerTimeout,
    ManifestError,
    MediaError,
    Mp4FormatError,
    ObjectNotFoundError,
    OutputError,
    SpekePackagerError,
    StorageError,
    ToolError,
    TsFormatError,
    UnsafeInputError,
    UnsupportedMediaError,
    UsageError,
    VerificationError,
)
from .model import (
    AudioFilter,
    ContentKey,
    DrmSignal,
    KeyEntry,
    KeyPeriod,
    KeySet,
    TrackInfo,
    TrackKind,
    VideoFilter,
)

if TYPE_CHECKING:
    from .conformance import ConformanceOptions, register_check, run_conformance
    from .keys import (
        Auth,
        BasicAuth,
        DeliveryKey,
        DigestAuth,
        EncryptionContract,
        HeaderAuth,
        MtlsAuth,
        NoAuth,
        SigV4Auth,
        SpekeClient,
        fetch_keys,
    )
    from .keyserver import KeyServer, derive_key
    from .media.aes128 import (
        Aes128StreamEncryptor,
        encrypt_aes128,
        encrypt_aes128_file,
        iv_from_sequence,
    )
    from .media.mp4 import Mp4Decryptor, Mp4Encryptor, probe_init
    from .media.ts import SampleAesEncryptor, decrypt_sample_aes, encrypt_sample_aes, probe_ts
    from .pipeline import (
        FolderWriter,
        KeySource,
        LiveKeyPolicy,
        LivePackager,
        LivePlaylist,
        LiveRendition,
        LiveSegment,
        LiveSession,
        LiveWriter,
        OutputFormat,
        PeriodKeySource,
        PublishedSegment,
        RawKeys,
        RotationSchedule,
        SpekeKeys,
        SpekeKeySource,
        TrackSummary,
        VodOptions,
        VodResult,
        encrypt_vod,
        parse_raw_key,
        raw_keyset,
    )
    from .storage import ObjectStore, PackageWriter, S3Options, open_writer
    from .verify import VerifyReport, verify_package

__version__ = "0.1.0"

# name -> the module it is loaded from on first use
_LAZY = {
    **dict.fromkeys(("Auth", "BasicAuth", "DeliveryKey", "DigestAuth", "EncryptionContract",
                     "HeaderAuth", "MtlsAuth", "NoAuth", "SigV4Auth", "SpekeClient",
                     "fetch_keys"), ".keys"),
    **dict.fromkeys(("KeyServer", "derive_key"), ".keyserver"),
    **dict.fromkeys(("ConformanceOptions", "register_check", "run_conformance"),
                    ".conformance"),
    **dict.fromkeys(("Aes128StreamEncryptor", "encrypt_aes128", "encrypt_aes128_file",
                     "iv_from_sequence"), ".media.aes128"),
    **dict.fromkeys(("Mp4Decryptor", "Mp4Encryptor", "probe_init"), ".media.mp4"),
    **dict.fromkeys(("SampleAesEncryptor", "decrypt_sample_aes", "encrypt_sample_aes",
                     "probe_ts"), ".media.ts"),
    **dict.fromkeys(("FolderWriter", "KeySource", "LiveKeyPolicy", "LivePackager", "LivePlaylist",
                     "LiveRendition", "LiveSegment", "LiveSession", "LiveWriter", "OutputFormat",
                     "PeriodKeySource", "PublishedSegment", "RawKeys", "RotationSchedule",
                     "SpekeKeySource", "SpekeKeys", "TrackSummary",
                     "VodOptions", "VodResult", "encrypt_vod", "parse_raw_key", "raw_keyset"),
                    ".pipeline"),
    **dict.fromkeys(("VerifyReport", "verify_package"), ".verify"),
    **dict.fromkeys(("ObjectStore", "PackageWriter", "S3Options", "open_writer"), ".storage"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Aes128StreamEncryptor",
    "AudioFilter",
    "Auth",
    "BasicAuth",
    "CodecError",
    "ConformanceOptions",
    "ContentKey",
    "CpixError",
    "CpixIntegrityError",
    "CpixValidationError",
    "DeliveryKey",
    "DigestAuth",
    "DrmSignal",
    "DrmSystem",
    "EncryptionContract",
    "FolderWriter",
    "HeaderAuth",
    "KeyAcquisitionError",
    "KeyAuthError",
    "KeyEntry",
    "KeyGraceExpired",
    "KeyPeriod",
    "KeyRotationError",
    "KeyServer",
    "KeyServerError",
    "KeyServerHTTPError",
    "KeyServerTimeout",
    "KeySet",
    "KeySource",
    "LiveKeyPolicy",
    "LivePackager",
    "LivePlaylist",
    "LiveRendition",
    "LiveSegment",
    "LiveSession",
    "LiveWriter",
    "ManifestError",
    "MediaError",
    "Mp4Decryptor",
    "Mp4Encryptor",
    "Mp4FormatError",
    "MtlsAuth",
    "NoAuth",
    "ObjectNotFoundError",
    "ObjectStore",
    "OutputError",
    "OutputFormat",
    "PackageWriter",
    "Packaging",
    "PeriodKeySource",
    "PublishedSegment",
    "RawKeys",
    "RotationSchedule",
    "S3Options",
    "SampleAesEncryptor",
    "Scheme",
    "SigV4Auth",
    "SpekeClient",
    "SpekeKeySource",
    "SpekeKeys",
    "SpekePackagerError",
    "SpekeVersion",
    "StorageError",
    "ToolError",
    "TrackInfo",
    "TrackKind",
    "TrackSummary",
    "TsFormatError",
    "UnsafeInputError",
    "UnsupportedMediaError",
    "UsageError",
    "VerificationError",
    "VerifyReport",
    "VideoFilter",
    "VodOptions",
    "VodResult",
    "__version__",
    "decrypt_sample_aes",
    "derive_key",
    "encrypt_aes128",
    "encrypt_aes128_file",
    "encrypt_sample_aes",
    "encrypt_vod",
    "fetch_keys",
    "iv_from_sequence",
    "open_writer",
    "parse_raw_key",
    "probe_init",
    "probe_ts",
    "raw_keyset",
    "register_check",
    "run_conformance",
    "verify_package",
]
