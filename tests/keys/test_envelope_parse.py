"""DASH-IF encrypted-key vectors, delivery key loading, hardened parsing of hostile XML."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from speke_packager.errors import CpixError, CpixIntegrityError, KeyAuthError
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keys.envelope import DeliveryKey, decrypt_content_keys

V = "cpix-test-vectors__"
EXPECTED = {
    "bd5adf51": "3rWoHYasQubO6HbJGrGtLw==",
    "d2920429": "O5w9FdZiwmQK4uIXzAziaQ==",
    "e17ba4b8": "Cwu/3hSBBRQ7SurBdZD5ow==",
    "0ae6b9ad": "FB6/Eck9Y9SXy6bY8UU/Mw==",
}


def _key(samples: Path, n: int) -> DeliveryKey:
    return DeliveryKey.load(samples / f"{V}Cert{n}.pfx", password=f"Cert{n}")


def _short(keys: dict[str, bytes]) -> dict[str, str]:
    return {k[:8]: base64.b64encode(v).decode() for k, v in keys.items()}


def test_encrypted_content_keys_vector(cpix_samples: Path) -> None:
    doc = parse_cpix((cpix_samples / f"{V}EncryptedContentKeys.xml").read_bytes())
    assert _short(decrypt_content_keys(doc, _key(cpix_samples, 1))) == EXPECTED


def test_wrong_recipient_is_refused(cpix_samples: Path) -> None:
    doc = parse_cpix((cpix_samples / f"{V}EncryptedContentKeys.xml").read_bytes())
    with pytest.raises(CpixIntegrityError, match="no DeliveryData for our delivery certificate"):
        decrypt_content_keys(doc, _key(cpix_samples, 2))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_multiple_recipients(cpix_samples: Path, n: int) -> None:
    doc = parse_cpix(
        (cpix_samples / f"{V}EncryptedContentKeysWithMultipleRecipients.xml").read_bytes())
    got = _short(decrypt_content_keys(doc, _key(cpix_samples, n)))
    assert got["bc365b99"] == "gMMdXMudvuGpYW5k3lzf/g=="
    assert len(got) == 4


def test_wrong_mac_rejected_before_decrypting(cpix_samples: Path) -> None:
    doc = parse_cpix((cpix_samples / f"{V}Invalid_WrongMac.xml").read_bytes())
    with pytest.raises(CpixIntegrityError) as ei:
        decrypt_content_keys(doc, _key(cpix_samples, 1))
    assert ei.value.kid is not None and ei.value.kid.startswith("5ad2b739")
    assert "MAC" in str(ei.value)


def test_tampered_ciphertext_fails_mac(cpix_samples: Path) -> None:
    data = (cpix_samples / f"{V}EncryptedContentKeys.xml").read_bytes()
    doc = parse_cpix(data)
    ck = doc.content_keys[0]
    assert ck.encrypted is not None
    raw = bytearray(base64.b64decode(ck.encrypted.cipher_value))
    raw[20] ^= 1
    bad = data.replace(ck.encrypted.cipher_value.encode(), base64.b64encode(bytes(raw)))
    with pytest.raises(CpixIntegrityError, match="MAC does not match"):
        decrypt_content_keys(parse_cpix(bad), _key(cpix_samples, 1))


def test_delivery_key_loading(cpix_samples: Path, pki: object, tmp_path: Path) -> None:
    from tests.keys.conftest import Pki
    assert isinstance(pki, Pki)
    pem = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    p12 = DeliveryKey.load(pki.delivery.pfx, password=b"s3cret")  # type: ignore[arg-type]
    assert pem.certificate_der == p12.certificate_der == pki.delivery.der
    assert "hidden" in repr(pem)
    with pytest.raises(KeyAuthError):
        DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "wrong")
    with pytest.raises(KeyAuthError):
        DeliveryKey.load(pki.delivery.pfx, password="wrong")  # type: ignore[arg-type]
    with pytest.raises(KeyAuthError):
        DeliveryKey.load(tmp_path / "missing.pem", tmp_path / "missing.key")
    # the weak SPEKE-size 2048-bit DASH-IF certificate loads
    weak = DeliveryKey.load(cpix_samples / f"{V}WeakCert_SmallKey.pfx",
                            password="WeakCert_SmallKey")
    assert weak.private_key.key_size == 2048


def test_sha1_delivery_cert_warns(cpix_samples: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    with caplog.at_level(logging.WARNING):
        DeliveryKey.load(cpix_samples / f"{V}WeakCert_Sha1.pfx", password="WeakCert_Sha1")
    assert "SHA-1" in caplog.text


# ---- hostile / malformed XML -----------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" contentId="&lol3;" version="2.3"/>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" contentId="c" version="2.3">&xxe;</cpix:CPIX>"""

XXE_PARAM = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>
<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" contentId="c" version="2.3"/>"""


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE, XXE_PARAM,
                                     XXE.decode().encode("utf-16")])
def test_dtd_and_entities_refused(payload: bytes) -> None:
    with pytest.raises(CpixError, match="DTD or entity"):
        parse_cpix(payload)


@pytest.mark.parametrize(("payload", "match"), [
    (b"<notcpix/>", "root element"),
    (b"<cpix:CPIX xmlns:cpix='urn:dashif:org:cpix'>", "not well-formed"),
    (b"", "not well-formed"),
    (b"<cpix:CPIX xmlns:cpix='urn:other'/>", "root element"),
    (b"<c:CPIX xmlns:c='urn:dashif:org:cpix'><c:ContentKeyPeriodList><c:ContentKeyPeriod "
     b"id='p' index='x1'/></c:ContentKeyPeriodList></c:CPIX>", "not an integer"),
    (b"<c:CPIX xmlns:c='urn:dashif:org:cpix'><c:ContentKeyList><c:ContentKey/>"
     b"</c:ContentKeyList></c:CPIX>", "no kid"),
])
def test_malformed_documents(payload: bytes, match: str) -> None:
    with pytest.raises(CpixError, match=match):
        parse_cpix(payload)


def test_size_limit() -> None:
    big = b"<c:CPIX xmlns:c='urn:dashif:org:cpix'>" + b" " * 5000 + b"</c:CPIX>"
    with pytest.raises(CpixError, match="larger than the limit"):
        parse_cpix(big, max_bytes=4096)
    assert parse_cpix(big).content_id is None


def test_bom_utf16_and_prefixes() -> None:
    doc = b"<CPIX xmlns='urn:dashif:org:cpix' contentId='c1' version='2.3'><ContentKeyList>" \
          b"<ContentKey kid='00112233-4455-6677-8899-aabbccddeeff'/></ContentKeyList></CPIX>"
    for data in (b"\xef\xbb\xbf" + doc,
                 ("<?xml version='1.0' encoding='UTF-16'?>" + doc.decode()).encode("utf-16")):
        parsed = parse_cpix(data)
        assert parsed.content_id == "c1"
        assert parsed.content_keys[0].kid == "00112233-4455-6677-8899-aabbccddeeff"
