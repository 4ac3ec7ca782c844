"""Server side of CPIX encrypted content keys (speke.md §6).

One document key (AES-256, 32 bytes) and one MAC key (HMAC-SHA512, 64 bytes) per answer, both
RSA-OAEP-SHA1 wrapped to each recipient's certificate; every content key becomes
``IV(16) || AES-256-CBC-PKCS7(document key, content key)`` with ``ValueMAC`` =
HMAC-SHA512(MAC key, that blob). ``cpix:MACMethod/cpix:Key`` is written in layout A
(``enc:EncryptionMethod`` + ``enc:CipherData``) or layout B (inside ``pskc:EncryptedValue``,
plus ``pskc:ValueMAC``; the ``DocumentKey`` secret then carries one too).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from ..constants import (
    ALG_AES256_CBC,
    ALG_HMAC_SHA512,
    ALG_RSA_OAEP_MGF1P,
    NS_CPIX,
    NS_PSKC,
    NS_XENC,
)
from ..crypto import aes_cbc_encrypt_pkcs7, hmac_sha512, rsa_oaep_sha1_encrypt
from ._maker import Maker
from .request import DeliveryRecipient, SpekeRequestError

__all__ = ["DocumentKeys", "load_recipient_key"]

C = Maker(namespace=NS_CPIX)
P = Maker(namespace=NS_PSKC)
X = Maker(namespace=NS_XENC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def load_recipient_key(recipient: DeliveryRecipient) -> rsa.RSAPublicKey:
    """The RSA public key of a DeliveryKey certificate (2048 bits or more)."""
    try:
        cert = x509.load_der_x509_certificate(recipient.certificate_der)
        key = cert.public_key()
    except ValueError:
        raise SpekeRequestError("DeliveryKey certificate cannot be parsed") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SpekeRequestError("DeliveryKey certificate does not hold an RSA key")
    if key.key_size < 2048:
        raise SpekeRequestError(f"DeliveryKey RSA key of {key.key_size} bits is too small")
    return key


@dataclass(slots=True)
class DocumentKeys:
    """Fresh secrets for one answer. Never logged; ``repr`` hides them."""

    document_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    mac_key: bytes = field(default_factory=lambda: os.urandom(64), repr=False)

    def __repr__(self) -> str:
        return "DocumentKeys(<hidden>)"

    def encrypted_value(self, content_key: bytes) -> tuple[bytes, bytes]:
        """(IV || ciphertext, ValueMAC) for one content key."""
        iv = os.urandom(16)
        blob = iv + aes_cbc_encrypt_pkcs7(self.document_key, iv, content_key)
        return blob, hmac_sha512(self.mac_key, blob)

    def secret_element(self, content_key: bytes, *, bad_mac: bool = False) -> etree._Element:
        blob, mac = self.encrypted_value(content_key)
        if bad_mac:
            mac = bytes([mac[0] ^ 0x01]) + mac[1:]
        return P.Secret(
            P.EncryptedValue(
                X.EncryptionMethod(Algorithm=ALG_AES256_CBC),
                X.CipherData(X.CipherValue(_b64(blob))),
            ),
            P.ValueMAC(_b64(mac)),
        )

    def delivery_data(self, recipient: DeliveryRecipient, layout: str) -> etree._Element:
        """The answer's DeliveryData for one recipient: echoed DeliveryKey, DocumentKey,
        MACMethod."""
        import copy

        pub = load_recipient_key(recipient)
        wrapped_doc = rsa_oaep_sha1_encrypt(pub, self.document_key)
        wrapped_mac = rsa_oaep_sha1_encrypt(pub, self.mac_key)
        delivery_key = recipient.element.find(f"{{{NS_CPIX}}}DeliveryKey")
        assert delivery_key is not None
        doc_secret_children: list[etree._Element] = [
            P.EncryptedValue(
                X.EncryptionMethod(Algorithm=ALG_RSA_OAEP_MGF1P),
                X.CipherData(X.CipherValue(_b64(wrapped_doc))),
            )
        ]
        if layout == "B":
            doc_secret_children.append(P.ValueMAC(_b64(hmac_sha512(self.mac_key, wrapped_doc))))
            mac_key_el = C.Key(
                P.EncryptedValue(
                    X.EncryptionMethod(Algorithm=ALG_RSA_OAEP_MGF1P),
                    X.CipherData(X.CipherValue(_b64(wrapped_mac))),
                ),
                P.ValueMAC(_b64(hmac_sha512(self.mac_key, wrapped_mac))),
            )
        else:
            mac_key_el = C.Key(
                X.EncryptionMethod(Algorithm=ALG_RSA_OAEP_MGF1P),
                X.CipherData(X.CipherValue(_b64(wrapped_mac))),
            )
        attrs = {"id": recipient.id} if recipient.id else {}
        return C.DeliveryData(
            copy.deepcopy(delivery_key),
            C.DocumentKey(C.Data(P.Secret(*doc_secret_children)), Algorithm=ALG_AES256_CBC),
            C.MACMethod(mac_key_el, Algorithm=ALG_HMAC_SHA512),
            **attrs,
        )
