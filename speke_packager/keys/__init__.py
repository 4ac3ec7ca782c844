"""Key acquisition: SPEKE v1 / v2.0 / v2.1 client, CPIX model, encrypted content keys, auth.

An :class:`EncryptionContract` goes in, a validated :class:`~speke_packager.model.KeySet` comes
out. Only :mod:`.client` talks HTTP; everything else works on bytes and values.
"""

from __future__ import annotations

from .auth import Auth, BasicAuth, DigestAuth, HeaderAuth, MtlsAuth, NoAuth, SigV4Auth
from .client import SpekeClient, fetch_keys
from .envelope import DeliveryKey, decrypt_content_keys
from .request import EncryptionContract, SpekeRequest, build_request, key_periods

__all__ = [
    "Auth",
    "BasicAuth",
    "DeliveryKey",
    "DigestAuth",
    "EncryptionContract",
    "HeaderAuth",
    "MtlsAuth",
    "NoAuth",
    "SigV4Auth",
    "SpekeClient",
    "SpekeRequest",
    "build_request",
    "decrypt_content_keys",
    "fetch_keys",
    "key_periods",
]
