"""Pure byte-level cryptography. The only importer of the cipher library.

No files, clocks or randomness: callers pass keys, IVs and data and get bytes back. Failed checks
raise; they never return False.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag  # noqa: F401  (re-exported for callers)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from ..errors import CpixIntegrityError, UsageError

__all__ = [
    "CipherContext",
    "aes_cbc_decrypt_pkcs7",
    "aes_cbc_decryptor",
    "aes_cbc_encrypt_pkcs7",
    "aes_cbc_encryptor",
    "aes_ctr_decryptor",
    "aes_ctr_encryptor",
    "aes_ecb_encrypt_block",
    "aes_ecb_encryptor",
    "hmac_sha512",
    "rsa_oaep_sha1_decrypt",
    "rsa_oaep_sha1_encrypt",
    "verify_hmac_sha512",
]


def _check(key: bytes, iv: bytes, key_sizes: tuple[int, ...] = (16,)) -> None:
    if len(key) not in key_sizes:
        raise UsageError(f"AES key must be {'/'.join(map(str, key_sizes))} bytes")
    if len(iv) != 16:
        raise UsageError("AES IV/counter block must be 16 bytes")


def aes_ctr_encryptor(key: bytes, counter_block: bytes) -> CipherContext:
    """AES-CTR context (encrypt == decrypt). The counter increments over all 128 bits; CENC
    callers keep the low 64 bits from wrapping inside one sample."""
    _check(key, counter_block)
    return Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()


aes_ctr_decryptor = aes_ctr_encryptor


def aes_cbc_encryptor(key: bytes, iv: bytes) -> CipherContext:
    """AES-CBC without padding; feed whole 16-byte blocks (``update``/``update_into``)."""
    _check(key, iv, (16, 32))
    return Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()


def aes_cbc_decryptor(key: bytes, iv: bytes) -> CipherContext:
    _check(key, iv, (16, 32))
    return Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()


def aes_ecb_encryptor(key: bytes) -> CipherContext:
    """AES-ECB context for keystream / lane-parallel CBC helpers: reusable for any number of
    whole-block ``update`` calls (ECB keeps no state between blocks)."""
    _check(key, bytes(16), (16, 32))
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 (building block)


def aes_ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    if len(block) % 16:
        raise UsageError("ECB input must be whole blocks")
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 (keystream helper)
    return enc.update(block) + enc.finalize()


def aes_cbc_encrypt_pkcs7(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = aes_cbc_encryptor(key, iv)
    return enc.update(padded) + enc.finalize()


def aes_cbc_decrypt_pkcs7(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Decrypt and strip PKCS#7; raises :class:`CpixIntegrityError` on bad padding/length."""
    if not data or len(data) % 16:
        raise CpixIntegrityError("ciphertext length is not a positive multiple of 16")
    dec = aes_cbc_decryptor(key, iv)
    padded = dec.update(data) + dec.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CpixIntegrityError("invalid PKCS#7 padding after decryption") from None


def hmac_sha512(mac_key: bytes, data: bytes) -> bytes:
    return hmac.digest(mac_key, data, hashlib.sha512)


def verify_hmac_sha512(mac_key: bytes, data: bytes, expected: bytes, *, kid: str | None = None
                       ) -> None:
    """Constant-time MAC check; raises :class:`CpixIntegrityError` on mismatch."""
    if not hmac.compare_digest(hmac_sha512(mac_key, data), expected):
        who = f" for KID {kid}" if kid else ""
        raise CpixIntegrityError(f"content key MAC does not match{who}", kid=kid)


def _oaep() -> asym_padding.OAEP:
    return asym_padding.OAEP(
        mgf=asym_padding.MGF1(algorithm=hashes.SHA1()),  # noqa: S303 (mandated by CPIX)
        algorithm=hashes.SHA1(),  # noqa: S303
        label=None,
    )


def rsa_oaep_sha1_encrypt(public_key: rsa.RSAPublicKey, data: bytes) -> bytes:
    return public_key.encrypt(data, _oaep())


def rsa_oaep_sha1_decrypt(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    if len(data) != private_key.key_size // 8:
        raise CpixIntegrityError(
            f"RSA ciphertext is {len(data)} bytes, the key needs {private_key.key_size // 8}"
        )
    try:
        return private_key.decrypt(data, _oaep())
    except ValueError:
        raise CpixIntegrityError("RSA-OAEP decryption failed (wrong delivery key?)") from None
