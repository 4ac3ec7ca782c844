"""CPIX documents with encrypted content keys, made here with the ``cryptography`` primitives and
written as XML text by hand (not through our builder or key server), then parsed and decrypted by
our code: the same checks the public DASH-IF vectors in ../shared/cpix-samples guard
(tests/keys/test_envelope_parse.py, test_cli.py), on data every clone has. Invalid documents
are derived by mutation; SPEKE requests for the ``cpix`` command are written as XML text.

Construction (CPIX 2.3 §7, speke.md §6): a random 32-byte document key and 64-byte MAC key are
RSA-OAEP (SHA-1, MGF1-SHA-1) wrapped to each recipient's certificate; each content key is
``IV || AES-256-CBC-PKCS7(document key, key)`` with ``ValueMAC = HMAC-SHA512(MAC key, that)``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from speke_packager.cli import main
from speke_packager.errors import CpixIntegrityError
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keys.envelope import DeliveryKey, decrypt_content_keys

CPIX_NS = ('xmlns="urn:dashif:org:cpix" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
           'xmlns:enc="http://www.w3.org/2001/04/xmlenc#" '
           'xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"')
RSA_OAEP = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
AES256 = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
HMAC512 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512"
OAEP = asym.OAEP(mgf=asym.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


@dataclass(frozen=True)
class Recipient:
    pfx: Path
    password: str
    der: bytes
    public: rsa.RSAPublicKey

    def delivery_key(self) -> DeliveryKey:
        return DeliveryKey.load(self.pfx, password=self.password)


def make_recipient(folder: Path, name: str, *, bits: int = 2048) -> Recipient:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    password = f"pw-{name}"
    pfx = folder / f"{name}.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, None,
        serialization.BestAvailableEncryption(password.encode())))
    pfx.chmod(0o600)
    return Recipient(pfx, password, cert.public_bytes(serialization.Encoding.DER),
                     key.public_key())


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _wrapped(rcpt: Recipient, secret: bytes, layout: str) -> str:
    """An RSA-OAEP wrapped secret: layout A (DASH-IF vectors) or B (pskc:EncryptedValue)."""
    inner = (f'<enc:EncryptionMethod Algorithm="{RSA_OAEP}"/><enc:CipherData><enc:CipherValue>'
             f"{_b64(rcpt.public.encrypt(secret, OAEP))}</enc:CipherValue></enc:CipherData>")
    return inner if layout == "A" else f"<pskc:EncryptedValue>{inner}</pskc:EncryptedValue>"


def seal(key: bytes, document_key: bytes, mac_key: bytes) -> tuple[bytes, bytes]:
    """(IV || AES-256-CBC-PKCS7(key), HMAC-SHA512 over it)."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(document_key), modes.CBC(iv)).encryptor()
    blob = iv + enc.update(padder.update(key) + padder.finalize()) + enc.finalize()
    return blob, hmac.new(mac_key, blob, hashlib.sha512).digest()


def encrypted_cpix(keys: dict[uuid.UUID, bytes], recipients: list[Recipient], *,
                   layout: str = "A", content_id: str = "generated",
                   explicit_iv: dict[uuid.UUID, bytes] | None = None) -> bytes:
    document_key, mac_key = os.urandom(32), os.urandom(64)
    delivery = "".join(
        f'<DeliveryData id="r{i}"><DeliveryKey><ds:X509Data><ds:X509Certificate>{_b64(r.der)}'
        f'</ds:X509Certificate></ds:X509Data></DeliveryKey>'
        f'<DocumentKey Algorithm="{AES256}"><Data><pskc:Secret><pskc:EncryptedValue>'
        f'<enc:EncryptionMethod Algorithm="{RSA_OAEP}"/><enc:CipherData><enc:CipherValue>'
        f"{_b64(r.public.encrypt(document_key, OAEP))}</enc:CipherValue></enc:CipherData>"
        f"</pskc:EncryptedValue></pskc:Secret></Data></DocumentKey>"
        f'<MACMethod Algorithm="{HMAC512}"><Key>{_wrapped(r, mac_key, layout)}</Key></MACMethod>'
        f"</DeliveryData>" for i, r in enumerate(recipients))
    content = ""
    for kid, key in keys.items():
        blob, mac = seal(key, document_key, mac_key)
        iv = (explicit_iv or {}).get(kid)
        iv_attr = f' explicitIV="{_b64(iv)}"' if iv is not None else ""
        content += (f'<ContentKey kid="{kid}"{iv_attr}><Data><pskc:Secret><pskc:EncryptedValue>'
                    f'<enc:EncryptionMethod Algorithm="{AES256}"/><enc:CipherData>'
                    f"<enc:CipherValue>{_b64(blob)}</enc:CipherValue></enc:CipherData>"
                    f"</pskc:EncryptedValue><pskc:ValueMAC>{_b64(mac)}</pskc:ValueMAC>"
                    f"</pskc:Secret></Data></ContentKey>")
    return (f'<?xml version="1.0" encoding="utf-8"?><CPIX {CPIX_NS} contentId="{content_id}" '
            f'version="2.3"><DeliveryDataList>{delivery}</DeliveryDataList>'
            f"<ContentKeyList>{content}</ContentKeyList></CPIX>").encode()


KEYS = {uuid.UUID(int=int.from_bytes(os.urandom(16), "big")): os.urandom(16) for _ in range(4)}


@pytest.fixture(scope="module")
def rcpts(tmp_path_factory: pytest.TempPathFactory) -> list[Recipient]:
    d = tmp_path_factory.mktemp("cpix-recipients")
    return [make_recipient(d, f"r{n}", bits=bits) for n, bits in enumerate((2048, 3072, 2048))]


def _by_kid(got: dict[str, bytes]) -> dict[uuid.UUID, bytes]:
    return {uuid.UUID(k): v for k, v in got.items()}


@pytest.mark.parametrize("layout", ["A", "B"])
def test_encrypted_content_keys_decrypt(rcpts: list[Recipient], layout: str) -> None:
    doc = parse_cpix(encrypted_cpix(KEYS, rcpts[:1], layout=layout))
    assert _by_kid(decrypt_content_keys(doc, rcpts[0].delivery_key())) == KEYS


def test_wrong_recipient_is_refused(rcpts: list[Recipient]) -> None:
    doc = parse_cpix(encrypted_cpix(KEYS, rcpts[:1]))
    with pytest.raises(CpixIntegrityError, match="no DeliveryData for our delivery certificate"):
        decrypt_content_keys(doc, rcpts[1].delivery_key())


def test_multiple_recipients(rcpts: list[Recipient]) -> None:
    """Every recipient (RSA-2048 and 3072: the ciphertext size follows the modulus) gets the
    same keys from one document."""
    doc = parse_cpix(encrypted_cpix(KEYS, rcpts))
    for r in rcpts:
        assert _by_kid(decrypt_content_keys(doc, r.delivery_key())) == KEYS


def _mutate_content_key(data: bytes, fn: str) -> tuple[bytes, uuid.UUID]:
    """The first content key's ValueMAC replaced ("mac") or a ciphertext bit flipped ("cipher")
    so that the padding no longer decrypts either; returns the document and that key's KID."""
    doc = parse_cpix(data)
    ck = doc.content_keys[0]
    assert ck.encrypted is not None and ck.encrypted.value_mac is not None
    blob = bytearray(base64.b64decode(ck.encrypted.cipher_value))
    if fn == "mac":
        new = data.replace(ck.encrypted.value_mac.encode(), _b64(os.urandom(64)).encode())
    else:
        blob[-1] ^= 0x55  # last block: PKCS#7 padding broken as well
        new = data.replace(ck.encrypted.cipher_value.encode(), _b64(bytes(blob)).encode())
    assert new != data
    return new, uuid.UUID(ck.kid)


@pytest.mark.parametrize("what", ["mac", "cipher"])
def test_bad_mac_rejected_before_decrypting(rcpts: list[Recipient], what: str) -> None:
    """The MAC is checked first: a broken padding never gets to speak."""
    data, kid = _mutate_content_key(encrypted_cpix(KEYS, rcpts[:1]), what)
    with pytest.raises(CpixIntegrityError, match="MAC does not match") as ei:
        decrypt_content_keys(parse_cpix(data), rcpts[0].delivery_key())
    assert ei.value.kid is not None and uuid.UUID(ei.value.kid) == kid


def test_weak_but_allowed_keys_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    small = make_recipient(tmp_path, "small", bits=2048)
    assert small.delivery_key().private_key.key_size == 2048
    # cryptography refuses to sign with SHA-1; openssl still does
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl missing")
    cert, key = tmp_path / "sha1.pem", tmp_path / "sha1.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha1",
                    "-days", "2", "-subj", "/CN=sha1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    key.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        DeliveryKey.load(cert, key)
    assert "SHA-1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        small.delivery_key()
    assert "SHA-1" not in caplog.text  # negative control


# ---- the cpix command on generated documents ---------------------------------------------------

def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_decrypts(rcpts: list[Recipient], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "answer.xml"
    f.write_bytes(encrypted_cpix(KEYS, rcpts[:1]))
    r = rcpts[0]
    rc, out, _ = _run(capsys, "cpix", str(f), "--delivery-key", str(r.pfx), "--password",
                      r.password, "--json", "--show-keys")
    assert rc == 0
    doc = json.loads(out)
    assert {uuid.UUID(k["kid"]): bytes.fromhex(k["key"]) for k in doc["keys"]} == KEYS
    assert {k["value"] for k in doc["keys"]} == {"decrypted"}
    rc, out, _ = _run(capsys, "cpix", str(f), "--delivery-key", str(r.pfx), "--password",
                      r.password)
    assert rc == 0 and "decrypted" in out
    assert not any(k.hex() in out.lower() for k in KEYS.values())  # no keys without the flag
    rc, out, _ = _run(capsys, "cpix", str(f))
    assert rc == 0 and "encrypted" in out and "--delivery-key" in out


@pytest.mark.parametrize(("case", "needle"), [
    ("mac", "MAC does not match"),
    ("iv-short", "explicitIV is 8 bytes, not 16"),
    ("iv-is-key", "explicitIV equals the content key"),
])
def test_cli_invalid_documents(rcpts: list[Recipient], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], case: str, needle: str) -> None:
    kid = next(iter(KEYS))
    if case == "mac":
        data, _ = _mutate_content_key(encrypted_cpix(KEYS, rcpts[:1]), "mac")
    else:
        iv = os.urandom(8) if case == "iv-short" else KEYS[kid]
        data = encrypted_cpix(KEYS, rcpts[:1], explicit_iv={kid: iv})
    f = tmp_path / "bad.xml"
    f.write_bytes(data)
    r = rcpts[0]
    rc, _, err = _run(capsys, "cpix", str(f), "--delivery-key", str(r.pfx), "--password",
                      r.password)
    assert rc != 0 and needle in err and err.count("\n") == 1, err


# a SPEKE v2 request as a packager sends it, written by hand (CPIX 2.3, speke.md §4)
KID_V = uuid.UUID("a1b2c3d4-0000-4000-8000-000000000001")
REQUEST = f"""<?xml version="1.0" encoding="UTF-8"?>
<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"
    contentId="generated-1" version="2.3">
  <cpix:ContentKeyList>
    <cpix:ContentKey kid="{KID_V}" commonEncryptionScheme="cenc"/>
  </cpix:ContentKeyList>
  <cpix:DRMSystemList>
    <cpix:DRMSystem kid="{KID_V}" systemId="edef8ba9-79d6-4ace-a3c8-27dcd51d21ed">
      <cpix:PSSH/>
      <cpix:ContentProtectionData/>
    </cpix:DRMSystem>
  </cpix:DRMSystemList>
  <cpix:ContentKeyUsageRuleList>
    <cpix:ContentKeyUsageRule kid="{KID_V}" intendedTrackType="ALL">{{filters}}</cpix:ContentKeyUsageRule>
  </cpix:ContentKeyUsageRuleList>
</cpix:CPIX>
"""


def test_cli_on_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = tmp_path / "request.xml"
    ok.write_text(REQUEST.replace("{filters}", "<cpix:VideoFilter/><cpix:AudioFilter/>"))
    rc, out, err = _run(capsys, "cpix", str(ok), "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "request" and doc["speke_version"] == "2.0"
    assert doc["schema_valid"] is True
    bad = tmp_path / "undeclared.xml"  # a period filter naming a period the document lacks
    bad.write_text(REQUEST.replace("{filters}", '<cpix:KeyPeriodFilter periodId="keyPeriod_9"/>'
                                                "<cpix:VideoFilter/>"))
    rc, _, err = _run(capsys, "cpix", str(bad))
    assert rc != 0 and "undeclared period" in err and err.count("\n") == 1, err
