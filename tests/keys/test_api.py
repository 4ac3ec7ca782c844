"""The public API other stages code against is pinned."""

from __future__ import annotations

import inspect

import speke_packager.keys as keys
from speke_packager.cli import keys_cmd
from speke_packager.keys.request import EncryptionContract


def test_keys_all_pinned() -> None:
    assert set(keys.__all__) == {
        "Auth", "BasicAuth", "DeliveryKey", "DigestAuth", "EncryptionContract", "HeaderAuth",
        "MtlsAuth", "NoAuth", "SigV4Auth", "SpekeClient", "SpekeRequest", "build_request",
        "decrypt_content_keys", "fetch_keys", "key_periods",
    }
    for name in keys.__all__:
        assert getattr(keys, name) is not None


def test_client_signature() -> None:
    params = inspect.signature(keys.SpekeClient.__init__).parameters
    assert list(params)[:11] == ["self", "url", "auth", "session", "timeout", "retries",
                                 "backoff", "delivery_key", "verify_tls", "max_response_bytes",
                                 "sleep"]
    assert params["timeout"].default == (5.0, 30.0, 120.0) and params["retries"].default == 3
    assert params["verify_tls"].default is True
    assert params["max_response_bytes"].default == 8 << 20


def test_contract_fields() -> None:
    fields = list(EncryptionContract.__dataclass_fields__)
    assert fields == ["content_id", "drm", "packaging", "scheme", "version", "video_preset",
                      "audio_preset", "period", "delivery_cert_der", "explicit_iv",
                      "periods"]


def test_cli_exports() -> None:
    for name in ("add_speke_arguments", "speke_client_from_args", "contract_from_args",
                 "periods_from_args", "register", "keyset_to_json"):
        assert callable(getattr(keys_cmd, name))
    sig = inspect.signature(keys_cmd.contract_from_args).parameters
    assert sig["packaging"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig["scheme"].kind is inspect.Parameter.KEYWORD_ONLY
