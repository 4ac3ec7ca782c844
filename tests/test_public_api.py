"""The top-level public API: ``speke_packager.__all__`` pinned name by name, every name resolves
to the object of its home module, and ``import speke_packager`` stays light (PEP 562 lazy names)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import speke_packager

PUBLIC = {
    # pipeline: VOD packages and live segments
    "encrypt_vod": "pipeline", "VodOptions": "pipeline", "VodResult": "pipeline",
    "OutputFormat": "pipeline", "KeySource": "pipeline", "TrackSummary": "pipeline",
    "LiveSession": "pipeline", "LiveSegment": "pipeline", "LiveKeyPolicy": "pipeline", "LivePlaylist": "pipeline",
    "PeriodKeySource": "pipeline", "SpekeKeySource": "pipeline",
    "LivePackager": "pipeline", "LiveRendition": "pipeline", "PublishedSegment": "pipeline",
    "LiveWriter": "pipeline", "FolderWriter": "pipeline",
    "RawKeys": "pipeline", "SpekeKeys": "pipeline",
    "RotationSchedule": "pipeline", "parse_raw_key": "pipeline", "raw_keyset": "pipeline",
    # keys: the SPEKE client
    "SpekeClient": "keys", "fetch_keys": "keys", "EncryptionContract": "keys",
    "DeliveryKey": "keys", "Auth": "keys", "NoAuth": "keys", "BasicAuth": "keys",
    "DigestAuth": "keys", "HeaderAuth": "keys", "MtlsAuth": "keys", "SigV4Auth": "keys",
    # media: the encryptors
    "Mp4Encryptor": "media.mp4", "Mp4Decryptor": "media.mp4", "probe_init": "media.mp4",
    "SampleAesEncryptor": "media.ts", "encrypt_sample_aes": "media.ts",
    "decrypt_sample_aes": "media.ts", "probe_ts": "media.ts",
    "Aes128StreamEncryptor": "media.aes128", "encrypt_aes128": "media.aes128",
    "encrypt_aes128_file": "media.aes128", "iv_from_sequence": "media.aes128",
    # the local key server, the verifier
    "KeyServer": "keyserver", "derive_key": "keyserver",
    "verify_package": "verify", "VerifyReport": "verify",
    # the key server conformance battery
    "run_conformance": "conformance", "ConformanceOptions": "conformance",
    "register_check": "conformance",
    # model and constants
    "ContentKey": "model", "KeySet": "model", "KeyEntry": "model", "KeyPeriod": "model",
    "DrmSignal": "model", "TrackInfo": "model", "TrackKind": "model", "VideoFilter": "model",
    "AudioFilter": "model", "DrmSystem": "constants", "Packaging": "constants",
    "Scheme": "constants", "SpekeVersion": "constants",
    # errors
    "SpekePackagerError": "errors", "UsageError": "errors", "KeyAcquisitionError": "errors",
    "KeyServerError": "errors", "KeyServerTimeout": "errors", "KeyServerHTTPError": "errors",
    "KeyAuthError": "errors", "CpixError": "errors", "CpixValidationError": "errors",
    "CpixIntegrityError": "errors", "KeyRotationError": "errors",
    "KeyGraceExpired": "errors", "MediaError": "errors",
    "Mp4FormatError": "errors", "TsFormatError": "errors", "CodecError": "errors",
    "UnsupportedMediaError": "errors", "UnsafeInputError": "errors", "ManifestError": "errors", "OutputError": "errors",
    "ToolError": "errors", "VerificationError": "errors",
    "StorageError": "errors", "ObjectNotFoundError": "errors",
    # object storage
    "S3Options": "storage", "ObjectStore": "storage", "PackageWriter": "storage",
    "open_writer": "storage",
}


def test_all_is_pinned_exactly() -> None:
    assert sorted(speke_packager.__all__) == sorted([*PUBLIC, "__version__"])
    assert len(set(speke_packager.__all__)) == len(speke_packager.__all__)


def test_every_error_class_is_public() -> None:
    from speke_packager import errors

    assert set(errors.__all__) <= set(speke_packager.__all__)
    for name in errors.__all__:
        assert issubclass(getattr(speke_packager, name), speke_packager.SpekePackagerError)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_name_is_its_home_modules_object(name: str) -> None:
    import importlib

    home = importlib.import_module(f"speke_packager.{PUBLIC[name]}")
    assert getattr(speke_packager, name) is getattr(home, name)
    assert name in dir(speke_packager)


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'encrypt_everything'"):
        speke_packager.encrypt_everything  # type: ignore[attr-defined]  # noqa: B018


_HEAVY = ("requests", "urllib3", "numpy", "lxml", "cryptography", "botocore",
          "speke_packager.pipeline", "speke_packager.keys", "speke_packager.keyserver",
          "speke_packager.media", "speke_packager.manifests", "speke_packager.verify",
          "speke_packager.cli", "speke_packager.crypto", "speke_packager.drm")


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys, json; "
                          "print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True).stdout
    loaded: list[str] = json.loads(out)
    return [m for m in loaded if any(m == h or m.startswith(h + ".") for h in _HEAVY)]


def test_import_loads_only_the_base_layer() -> None:
    assert _loaded_after("import speke_packager; speke_packager.ContentKey; "
                         "speke_packager.SpekePackagerError") == []


def test_a_lazy_name_loads_its_module() -> None:
    """Negative control for the test above: the probe sees what a lazy name pulls in."""
    heavy = _loaded_after("import speke_packager; speke_packager.Mp4Encryptor")
    assert "speke_packager.media.mp4" in heavy
    assert "speke_packager.keys" not in heavy
