"""Pure byte-level cryptography. The only importer of the cipher library.

No files, clocks or randomness: callers pass keys, IVs and data and get bytes back. Failed checks
raise; they never return False.

``update_into(data, buf)`` is only ever called with ``data`` and ``buf`` in separate memory: the
cipher library documents no in-place operation, and cryptography >= 51 refuses overlapping
buffers. Hot paths gather clear bytes, encrypt them into a separate output buffer and write (or
scatter) that. With ``SPEKE_PACKAGER_CHECK_OVERLAP=1`` in the environment (the test suite sets
it) or :func:`set_overlap_guard`, every context made here refuses overlapping ``update_into``
calls itself, whatever the installed release accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

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
    "cipher_calls_release_gil",
    "hmac_sha512",
    "rsa_oaep_sha1_decrypt",
    "rsa_oaep_sha1_encrypt",
    "set_overlap_guard",
    "verify_hmac_sha512",
]

_GUARD = [os.environ.get("SPEKE_PACKAGER_CHECK_OVERLAP", "") not in ("", "0")]


def cipher_calls_release_gil() -> bool:
    """Whether ``update_into`` on this release of the cipher library runs without the GIL, so
    that threads encrypt on all cores. cryptography 51 detaches from the interpreter in cipher
    ``update`` / ``update_into`` for inputs of 2 KiB and more (checked on 51.0.1: another
    thread keeps running during a long call); earlier releases hold it."""
    import cryptography

    major = cryptography.__version__.split(".", 1)[0]
    return major.isdigit() and int(major) >= 51


def set_overlap_guard(on: bool) -> bool:
    """Turn the overlapping-buffer guard on or off for contexts made from now on; returns the
    previous setting. For tests: the guard adds a check to every ``update_into`` call."""
    old = _GUARD[0]
    _GUARD[0] = on
    return old


def _span(buf: Any) -> tuple[int, int]:
    import numpy as np  # (only with the guard on)

    a = np.frombuffer(buf, np.uint8)
    start = int(a.__array_interface__["data"][0])
    return start, start + a.nbytes


class _OverlapGuard:
    """A cipher context that refuses ``update_into`` with overlapping input and output (the
    rule of cryptography >= 51, enforced on every release)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: CipherContext) -> None:
        self._ctx = ctx

    def update_into(self, data: Any, buf: Any) -> int:
        a0, a1 = _span(data)
        b0, b1 = _span(buf)
        if a0 < a1 and b0 < b1 and a0 < b1 and b0 < a1:
            raise ValueError("update_into: data and buf overlap (overlap guard)")
        return int(self._ctx.update_into(data, buf))

    def update(self, data: Any) -> bytes:
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        return self._ctx.finalize()

    def reset_nonce(self, nonce: bytes) -> None:
        self._ctx.reset_nonce(nonce)


def _context(cipher: Cipher[Any], *, encrypt: bool) -> CipherContext:
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return _OverlapGuard(ctx) if _GUARD[0] else ctx  # type: ignore[return-value]


def _check(key: bytes, iv: bytes, key_sizes: tuple[int, ...] = (16,)) -> None:
    if len(key) not in key_sizes:
        raise UsageError(f"AES key must be {'/'.join(map(str, key_sizes))} bytes")
    if len(iv) != 16:
        raise UsageError("AES IV/counter block must be 16 bytes")


def aes_ctr_encryptor(key: bytes, counter_block: bytes) -> CipherContext:
    """AES-CTR context (encrypt == decrypt). The counter increments over all 128 bits; CENC
    callers keep the low 64 bits from wrapping inside one sample."""
    _check(key, counter_block)
    return _context(Cipher(algorithms.AES(key), modes.CTR(counter_block)), encrypt=True)


aes_ctr_decryptor = aes_ctr_encryptor


def aes_cbc_encryptor(key: bytes, iv: bytes) -> CipherContext:
    """AES-CBC without padding; feed whole 16-byte blocks (``update``/``update_into``)."""
    _check(key, iv, (16, 32))
    return _context(Cipher(algorithms.AES(key), modes.CBC(iv)), encrypt=True)


def aes_cbc_decryptor(key: bytes, iv: bytes) -> CipherContext:
    _check(key, iv, (16, 32))
    return _context(Cipher(algorithms.AES(key), modes.CBC(iv)), encrypt=False)


def aes_ecb_encryptor(key: bytes) -> CipherContext:
    """AES-ECB context for keystream / lane-parallel CBC helpers: reusable for any number of
    whole-block ``update`` calls (ECB keeps no state between blocks)."""
    _check(key, bytes(16), (16, 32))
    return _context(Cipher(algorithms.AES(key), modes.ECB()),  # noqa: S305 (building block)
                    encrypt=True)


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
