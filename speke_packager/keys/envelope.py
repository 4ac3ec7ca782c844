"""Encrypted content keys (CPIX DeliveryData, speke.md §6): decryption on the encryptor side.

RSA-OAEP (SHA-1/MGF1-SHA-1) unwraps the 32-byte document key and the 64-byte MAC key; each
content key is ``IV || AES-256-CBC(key)`` authenticated by HMAC-SHA512, which is checked in
constant time *before* decrypting.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from .._io import warn_if_exposed
from ..constants import ALG_AES256_CBC, ALG_HMAC_SHA512, ALG_RSA_OAEP_MGF1P
from ..crypto import aes_cbc_decrypt_pkcs7, rsa_oaep_sha1_decrypt, verify_hmac_sha512
from ..errors import CpixIntegrityError, KeyAuthError
from .cpix.model import CpixDeliveryData, CpixDocument, EncryptedSecret

__all__ = ["DeliveryKey", "decrypt_content_keys", "select_delivery_data", "strict_b64decode"]

log = logging.getLogger(__name__)


def strict_b64decode(text: str, what: str) -> bytes:
    """Base64 with XML whitespace stripped; anything else invalid raises
    :class:`CpixIntegrityError` naming ``what``."""
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CpixIntegrityError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class DeliveryKey:
    """Our delivery certificate (DER) and its RSA private key."""

    certificate_der: bytes
    private_key: rsa.RSAPrivateKey = field(repr=False)

    def __repr__(self) -> str:
        return f"DeliveryKey(rsa-{self.private_key.key_size}, key=<hidden>)"

    @classmethod
    def load(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str] | None = None,
        password: str | bytes | None = None,
    ) -> DeliveryKey:
        """Load a PEM/DER certificate plus a PEM/DER private key, or one PKCS#12 file holding
        both (``key_path`` omitted or the same file). Raises :class:`KeyAuthError`."""
        pw = password.encode() if isinstance(password, str) else password
        warn_if_exposed(key_path if key_path is not None else cert_path, "delivery private key")
        try:
            cert_bytes = Path(cert_path).read_bytes()
            key_bytes = Path(key_path).read_bytes() if key_path is not None else None
        except OSError as exc:
            raise KeyAuthError(f"cannot read delivery key material: {exc.strerror}") from None
        if key_bytes is None or key_bytes == cert_bytes:
            if b"-----BEGIN" in cert_bytes:
                return cls._from_pem_bundle(cert_bytes, pw)
            return cls.from_pkcs12(cert_bytes, pw)
        return cls(_load_cert(cert_bytes), _load_private_key(key_bytes, pw))

    @classmethod
    def from_pkcs12(cls, data: bytes, password: bytes | None = None) -> DeliveryKey:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # negative serials in some public test certs
                key, cert, _ = pkcs12.load_key_and_certificates(data, password)
        except ValueError:
            raise KeyAuthError("cannot open the PKCS#12 delivery key (wrong password?)") from None
        if cert is None or not isinstance(key, rsa.RSAPrivateKey):
            raise KeyAuthError("the PKCS#12 file needs a certificate and an RSA private key")
        _check_cert(cert)
        return cls(cert.public_bytes(serialization.Encoding.DER), key)

    @classmethod
    def _from_pem_bundle(cls, data: bytes, password: bytes | None) -> DeliveryKey:
        return cls(_load_cert(data), _load_private_key(data, password))

    def certificate_b64(self) -> str:
        return base64.b64encode(self.certificate_der).decode("ascii")


def _load_cert(data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if b"-----BEGIN CERTIFICATE" in data:
                cert = x509.load_pem_x509_certificate(data)
            else:
                cert = x509.load_der_x509_certificate(data)
        except ValueError:
            raise KeyAuthError("the delivery certificate is not a PEM or DER X.509 file") from None
    _check_cert(cert)
    return cert.public_bytes(serialization.Encoding.DER)


def _check_cert(cert: x509.Certificate) -> None:
    """RSA >= 2048 bits (SPEKE requires 2048, CPIX recommends 3072+); SHA-1 signatures warn."""
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        raise KeyAuthError("the delivery certificate must hold an RSA key")
    if pub.key_size < 2048:
        raise KeyAuthError(f"the delivery key is RSA-{pub.key_size}; at least 2048 bits needed")
    try:
        algo = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # unknown algorithms: nothing to warn about
        algo = None
    if algo is not None and algo.name == "sha1":
        log.warning("the delivery certificate is signed with SHA-1")


def _load_private_key(data: bytes, password: bytes | None) -> rsa.RSAPrivateKey:
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError):
        raise KeyAuthError("cannot load the delivery private key (wrong format or password?)"
                           ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyAuthError("the delivery private key must be an RSA key")
    return key


def select_delivery_data(doc: CpixDocument, key: DeliveryKey) -> CpixDeliveryData:
    """The DeliveryData addressed to our certificate (DER comparison)."""
    for dd in doc.delivery_data:
        if dd.certificate_b64 is None:
            continue
        try:
            der = strict_b64decode(dd.certificate_b64, "DeliveryKey certificate")
        except CpixIntegrityError:
            continue
        if der == key.certificate_der:
            return dd
    raise CpixIntegrityError(
        f"no DeliveryData for our delivery certificate among {len(doc.delivery_data)} recipients",
        xpath="/CPIX/DeliveryDataList",
    )


def _unwrap(secret: EncryptedSecret | None, key: DeliveryKey, what: str, size: int) -> bytes:
    if secret is None or not secret.cipher_value:
        raise CpixIntegrityError(f"{what} has no encrypted value")
    if secret.algorithm not in (None, ALG_RSA_OAEP_MGF1P):
        raise CpixIntegrityError(f"{what} uses unsupported algorithm {secret.algorithm}")
    blob = strict_b64decode(secret.cipher_value, f"{what} CipherValue")
    value = rsa_oaep_sha1_decrypt(key.private_key, blob)
    if len(value) != size:
        raise CpixIntegrityError(f"{what} is {len(value)} bytes, expected {size}")
    return value


def decrypt_content_keys(doc: CpixDocument, key: DeliveryKey) -> dict[str, bytes]:
    """Decrypt every encrypted content key of ``doc`` -> {lower-case KID: 16-byte key}.

    Keys without an EncryptedValue are skipped (callers decide whether plain keys are allowed).
    The MAC of each key is verified before it is decrypted; any failure raises
    :class:`CpixIntegrityError` naming the KID."""
    dd = select_delivery_data(doc, key)
    if dd.document_key_algorithm not in (None, ALG_AES256_CBC):
        raise CpixIntegrityError(
            f"DocumentKey algorithm {dd.document_key_algorithm} is not AES-256-CBC")
    doc_key = _unwrap(dd.document_key, key, "DocumentKey", 32)
    if not dd.has_mac_method:
        raise CpixIntegrityError("DeliveryData has no MACMethod: content keys are unauthenticated")
    if dd.mac_algorithm != ALG_HMAC_SHA512:
        raise CpixIntegrityError(f"MACMethod algorithm {dd.mac_algorithm} is not HMAC-SHA512")
    mac_key = _unwrap(dd.mac_key, key, "MACMethod key", 64)
    out: dict[str, bytes] = {}
    for ck in doc.content_keys:
        enc = ck.encrypted
        if enc is None:
            continue
        kid = ck.kid.lower()
        if enc.algorithm not in (None, ALG_AES256_CBC):
            raise CpixIntegrityError(
                f"content key {kid} uses unsupported algorithm {enc.algorithm}", kid=kid)
        blob = strict_b64decode(enc.cipher_value, f"content key {kid} CipherValue")
        if len(blob) < 32 or len(blob) % 16:
            raise CpixIntegrityError(
                f"encrypted content key {kid} is {len(blob)} bytes (IV + whole blocks needed)",
                kid=kid)
        if enc.value_mac is None:
            raise CpixIntegrityError(f"content key {kid} has no ValueMAC", kid=kid)
        mac = strict_b64decode(enc.value_mac, f"content key {kid} ValueMAC")
        if len(mac) != 64:
            raise CpixIntegrityError(f"ValueMAC of content key {kid} is {len(mac)} bytes, not 64",
                                     kid=kid)
        verify_hmac_sha512(mac_key, blob, mac, kid=kid)
        try:
            value = aes_cbc_decrypt_pkcs7(doc_key, blob[:16], blob[16:])
        except CpixIntegrityError as exc:
            raise CpixIntegrityError(f"content key {kid}: {exc}", kid=kid) from None
        out[kid] = value
    log.debug("decrypted %d content keys", len(out))
    return out
