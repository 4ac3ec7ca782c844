"""SPEKE answers per version, DRM, placeholder set, rotation, encrypted keys and v2 errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterator

import pytest
import requests
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

from speke_packager.drm.playready import parse_playready_object, playready_checksum
from speke_packager.drm.pssh import parse_pssh
from speke_packager.errors import UsageError
from speke_packager.keyserver import KeyServer, derive_key

from . import _req
from ._check import NS, check_answer, expected_key
from .conftest import CertPair

SEED = "speke-tests"
XENC = "http://www.w3.org/2001/04/xmlenc#"


@pytest.fixture()
def ks() -> Iterator[KeyServer]:
    with KeyServer(allow_fault_header=True, seed=SEED) as server:
        yield server


def post(ks: KeyServer, body: bytes, version: str | None = "2.0", **headers: str
         ) -> requests.Response:
    h = {"content-type": "application/xml", **headers}
    if version is not None:
        h["x-speke-version"] = version
    return requests.post(ks.speke_url, data=body, headers=h, timeout=30)


def test_derive_key_documented() -> None:
    kid = uuid.UUID("6C5F5206-7D98-4808-84D8-94F132C1E9FE")
    manual = hmac.new(b"s", b"cid\x006c5f5206-7d98-4808-84d8-94f132c1e9fe",
                      hashlib.sha256).digest()[:16]
    assert derive_key("s", "cid", kid) == manual
    assert derive_key("s", "cid2", kid) != manual
    assert derive_key("t", "cid", kid) != manual


@pytest.mark.parametrize("systems", [
    (_req.WIDEVINE,), (_req.PLAYREADY,), (_req.FAIRPLAY,), (_req.CLEARKEY,),
    (_req.DASHIF_CLEARKEY,), (_req.WIDEVINE, _req.PLAYREADY, _req.FAIRPLAY, _req.CLEARKEY),
])
@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_v2_every_drm_cbcs(ks: KeyServer, systems: tuple[str, ...], version: str,
                           cpix_schema: etree.XMLSchema) -> None:
    body = _req.v2_request(systems=systems, version="2.3" if version == "2.0" else "2.4")
    r = post(ks, body, version)
    assert r.status_code == 200, r.text
    assert r.headers["X-Speke-Version"] == version
    checked = check_answer(body, r.content, license_url=ks.clearkey_license_url,
                           key_url_prefix=ks.url)
    assert checked.keys == {k: expected_key(SEED, "chan-7", k) for k in (_req.KID_V, _req.KID_A)}
    assert checked.keys[_req.KID_V] != checked.keys[_req.KID_A]
    if version == "2.0":
        assert cpix_schema.validate(etree.fromstring(r.content)), cpix_schema.error_log


def test_version_header_any_case(ks: KeyServer) -> None:
    body = _req.v2_request()
    r = requests.post(ks.speke_url, data=body, headers={"X-SPEKE-VERSION": "2.0"}, timeout=30)
    assert r.status_code == 200 and r.headers["x-speke-version"] == "2.0"
    r = requests.post(ks.url + "/copyProtection", data=body, headers={"X-Speke-Version": "2.0"},
                      timeout=30)
    assert r.status_code == 200


def test_v2_cenc_playready_checksum(ks: KeyServer) -> None:
    body = _req.v2_request(scheme="cenc", systems=(_req.PLAYREADY, _req.WIDEVINE))
    r = post(ks, body)
    assert r.status_code == 200, r.text
    checked = check_answer(body, r.content)
    pro = checked.signals[(_req.KID_V, uuid.UUID(_req.PLAYREADY), "PSSH")]
    header = parse_playready_object(parse_pssh(pro).data)
    assert header.version == "4.0.0.0" and header.algid == "AESCTR"
    assert header.la_url and header.la_url.startswith(ks.url)
    assert header.checksums == (playready_checksum(_req.KID_V, checked.keys[_req.KID_V]),)
    media = checked.signals[(_req.KID_V, uuid.UUID(_req.PLAYREADY), "HLSSignalingData:media")]
    assert b"METHOD=SAMPLE-AES-CTR" in media


def test_v2_aes128(ks: KeyServer) -> None:
    body = _req.v2_request(scheme="cbc1", systems=(_req.AES128,), explicit_iv=b"\x01" * 16)
    r = post(ks, body)
    assert r.status_code == 200, r.text
    checked = check_answer(body, r.content, key_url_prefix=ks.url)
    line = checked.signals[(_req.KID_V, uuid.UUID(_req.AES128), "HLSSignalingData:media")]
    assert line.decode() == (f'#EXT-X-KEY:METHOD=AES-128,URI="{ks.url}/keys/{_req.KID_V.hex}",'
                             f'IV=0x{"01" * 16},KEYFORMAT="identity",KEYFORMATVERSIONS="1"\n')
    key = requests.get(ks.key_url(_req.KID_V), timeout=10)
    assert key.status_code == 200 and key.content == checked.keys[_req.KID_V]


def test_v2_rotation_periods_echoed(ks: KeyServer, cpix_schema: etree.XMLSchema) -> None:
    bodies = [_req.v2_request(period=p, kids=((uuid.uuid5(_req.KID_V, str(p)), "VIDEO"),
                                              (uuid.uuid5(_req.KID_A, str(p)), "AUDIO")))
              for p in (41, 42)]
    seen: set[bytes] = set()
    for body in bodies:
        r = post(ks, body)
        assert r.status_code == 200, r.text
        checked = check_answer(body, r.content)
        seen |= set(checked.keys.values())
        assert cpix_schema.validate(etree.fromstring(r.content)), cpix_schema.error_log
    assert len(seen) == 4


def test_v2_multivariant_playlist_name_accepted(ks: KeyServer) -> None:
    body = _req.v2_request(version="2.4", placeholders={_req.WIDEVINE: ("PSSH", "media",
                                                                          "multiVariant")})
    r = post(ks, body, "2.1")
    assert r.status_code == 200, r.text
    ans = etree.fromstring(r.content)
    lines = [base64.b64decode(e.text or "") for e in ans.iterfind(".//cpix:HLSSignalingData", NS)
             if e.get("playlist") == "multiVariant"]
    assert len(lines) == 2 and all(x.startswith(b"#EXT-X-SESSION-KEY:") for x in lines)


def test_v2_shared_all(ks: KeyServer) -> None:
    body = _req.v2_request(kids=((_req.KID_V, "ALL"),), systems=(_req.WIDEVINE, _req.FAIRPLAY))
    r = post(ks, body)
    assert r.status_code == 200, r.text
    check_answer(body, r.content)


def test_v1_answer(ks: KeyServer) -> None:
    body = _req.v1_request(systems={
        _req.WIDEVINE: ("PSSH",),
        _req.PLAYREADY: ("PSSH", "speke:ProtectionHeader"),
        _req.FAIRPLAY: ("URIExtXKey", "speke:KeyFormat", "speke:KeyFormatVersions"),
    })
    r = post(ks, body, None)
    assert r.status_code == 200, r.text
    assert "x-speke-version" not in r.headers and r.headers["speke-user-agent"]
    checked = check_answer(body, r.content, key_url_prefix=ks.url)
    assert checked.keys == {_req.KID_V: expected_key(SEED, "chan-7", _req.KID_V)}
    fp = uuid.UUID(_req.FAIRPLAY)
    assert checked.signals[(_req.KID_V, fp, "speke:KeyFormat")] == \
        b"com.apple.streamingkeydelivery"


def test_v1_aes128_identity(ks: KeyServer) -> None:
    body = _req.v1_request(systems={_req.AES128_V1: ("URIExtXKey", "speke:KeyFormat",
                                                     "speke:KeyFormatVersions")})
    r = post(ks, body, None)
    assert r.status_code == 200, r.text
    checked = check_answer(body, r.content, key_url_prefix=ks.url)
    sid = uuid.UUID(_req.AES128_V1)
    assert checked.signals[(_req.KID_V, sid, "speke:KeyFormat")] == b"identity"
    uri = checked.signals[(_req.KID_V, sid, "URIExtXKey")].decode()
    assert requests.get(uri, timeout=10).content == checked.keys[_req.KID_V]


def test_same_request_same_keys_across_restart() -> None:
    body = _req.v2_request()
    with KeyServer(allow_fault_header=True, seed=SEED) as a:
        first = check_answer(body, post(a, body).content).keys
        port = a.port
    with KeyServer(allow_fault_header=True, seed=SEED, port=port) as b:
        assert check_answer(body, post(b, body).content).keys == first
    with KeyServer(allow_fault_header=True, seed="different") as c:
        other = check_answer(body, post(c, body).content).keys
    assert other != first


# --- encrypted content keys ------------------------------------------------------------------
def _unwrap(priv: object, el: etree._Element | None) -> bytes:
    assert el is not None
    cipher = el.find(f".//{{{XENC}}}CipherValue")
    assert cipher is not None and cipher.text
    return priv.decrypt(base64.b64decode(cipher.text),  # type: ignore[attr-defined]
                        asym.OAEP(mgf=asym.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))


def _decrypt_answer(answer: bytes, pair: CertPair) -> tuple[dict[uuid.UUID, bytes], etree._Element]:
    root = etree.fromstring(answer)
    dd = [d for d in root.iterfind("cpix:DeliveryDataList/cpix:DeliveryData", NS)
          if base64.b64decode(d.findtext(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate")
                              or "") == pair.cert_der]
    assert len(dd) == 1
    doc_key = _unwrap(pair.private_key, dd[0].find("cpix:DocumentKey", NS))
    mac_key = _unwrap(pair.private_key, dd[0].find("cpix:MACMethod/cpix:Key", NS))
    assert len(doc_key) == 32 and len(mac_key) == 64
    assert dd[0].find("cpix:MACMethod", NS).get("Algorithm") == \
        "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512"
    out = {}
    for ck in root.iterfind("cpix:ContentKeyList/cpix:ContentKey", NS):
        secret = ck.find("cpix:Data/pskc:Secret", NS)
        assert secret is not None and secret.find("pskc:PlainValue", NS) is None
        blob = base64.b64decode(secret.findtext(f".//{{{XENC}}}CipherValue") or "")
        mac = base64.b64decode(secret.findtext("pskc:ValueMAC", namespaces=NS) or "")
        assert hmac.compare_digest(hmac.new(mac_key, blob, hashlib.sha512).digest(), mac)
        dec = Cipher(algorithms.AES(doc_key), modes.CBC(blob[:16])).decryptor()
        padded = dec.update(blob[16:]) + dec.finalize()
        unpad = padding.PKCS7(128).unpadder()
        out[uuid.UUID(ck.get("kid"))] = unpad.update(padded) + unpad.finalize()
    return out, dd[0]


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
@pytest.mark.parametrize("layout", ["A", "B"])
def test_encrypted_keys(bits: int, layout: str, delivery_certs: dict[int, CertPair],
                        cpix_schema: etree.XMLSchema) -> None:
    pair = delivery_certs[bits]
    body = _req.v2_request(cert_der=[pair.cert_der], systems=(_req.WIDEVINE, _req.PLAYREADY),
                           scheme="cenc")
    with KeyServer(allow_fault_header=True, seed=SEED, mac_layout=layout) as ks:
        r = post(ks, body)
    assert r.status_code == 200, r.text
    checked = check_answer(body, r.content)
    assert not checked.keys and len(checked.encrypted) == 2
    keys, dd = _decrypt_answer(r.content, pair)
    assert keys == {k: expected_key(SEED, "chan-7", k) for k in (_req.KID_V, _req.KID_A)}
    key_el = dd.find("cpix:MACMethod/cpix:Key", NS)
    assert key_el is not None
    wrapped = key_el.find("pskc:EncryptedValue", NS)
    assert (wrapped is not None) == (layout == "B")
    assert cpix_schema.validate(etree.fromstring(r.content)), cpix_schema.error_log
    # the PlayReady checksum was computed with the real (decrypted) key
    pro = parse_playready_object(parse_pssh(checked.signals[
        (_req.KID_V, uuid.UUID(_req.PLAYREADY), "PSSH")]).data)
    assert pro.checksums == (playready_checksum(_req.KID_V, keys[_req.KID_V]),)


def test_encrypted_keys_several_recipients(delivery_certs: dict[int, CertPair], ks: KeyServer
                                           ) -> None:
    pairs = [delivery_certs[2048], delivery_certs[3072]]
    body = _req.v2_request(cert_der=[p.cert_der for p in pairs])
    r = post(ks, body)
    assert r.status_code == 200, r.text
    a, _ = _decrypt_answer(r.content, pairs[0])
    b, _ = _decrypt_answer(r.content, pairs[1])
    assert a == b == {k: expected_key(SEED, "chan-7", k) for k in (_req.KID_V, _req.KID_A)}


def test_encrypted_keys_v1(delivery_certs: dict[int, CertPair], ks: KeyServer) -> None:
    pair = delivery_certs[2048]
    body = _req.v1_request(cert_der=[pair.cert_der])
    r = post(ks, body, None)
    assert r.status_code == 200, r.text
    keys, _ = _decrypt_answer(r.content, pair)
    assert keys == {_req.KID_V: expected_key(SEED, "chan-7", _req.KID_V)}


def test_wrong_private_key_cannot_unwrap(delivery_certs: dict[int, CertPair], ks: KeyServer
                                         ) -> None:
    body = _req.v2_request(cert_der=[delivery_certs[2048].cert_der])
    r = post(ks, body)
    root = etree.fromstring(r.content)
    with pytest.raises(ValueError):
        _unwrap(delivery_certs[3072].private_key,
                root.find("cpix:DeliveryDataList/cpix:DeliveryData/cpix:DocumentKey", NS))


# --- v2 errors ---------------------------------------------------------------------------------
def _bad_rules(*rules: etree._Element) -> bytes:
    return _req.v2_request(rules=list(rules))


R = _req.C


@pytest.mark.parametrize(("body", "reason"), [
    (_req.v2_request(content_id=""), "Missing CPIX@contentId"),
    (_req.v2_request(version=""), "Missing CPIX@version"),
    (_req.v2_request(version="9.9"), "Unsupported CPIX@version"),
    (_req.v2_request(scheme=None),
     f"Missing ContentKey@commonEncryptionScheme for KID {_req.KID_V}"),
    (_req.v2_request(scheme="cenc", systems=(_req.FAIRPLAY,)),
     f"ContentKey@commonEncryptionScheme non compatible with DRMSystem {_req.FAIRPLAY}"),
    (_req.v2_request(scheme="cbc1", systems=(_req.WIDEVINE,)),
     f"ContentKey@commonEncryptionScheme non compatible with DRMSystem {_req.WIDEVINE}"),
    (_req.v2_request(scheme="xyz1"), "Non compliant ContentKey@commonEncryptionScheme combination"),
    (_bad_rules(R.ContentKeyUsageRule(R.VideoFilter(), kid=str(_req.KID_V),
                                      intendedTrackType="VIDEO"),
                R.ContentKeyUsageRule(R.AudioFilter(), kid=str(_req.KID_A),
                                      intendedTrackType="VIDEO")),
     "Malformed encryption contract"),
    (_bad_rules(R.ContentKeyUsageRule(R.VideoFilter(), kid=str(_req.KID_V),
                                      intendedTrackType="VIDEO"),
                R.ContentKeyUsageRule(kid=str(_req.KID_A), intendedTrackType="AUDIO")),
     "Missing CPIX encryption contract"),
    (_bad_rules(R.ContentKeyUsageRule(R.VideoFilter(), kid=str(_req.KID_V),
                                      intendedTrackType="VIDEO")),
     "Missing CPIX encryption contract"),
    (_bad_rules(R.ContentKeyUsageRule(R.VideoFilter(), kid=str(_req.KID_V),
                                      intendedTrackType="ALL"),
                R.ContentKeyUsageRule(R.AudioFilter(), kid=str(_req.KID_A),
                                      intendedTrackType="AUDIO")),
     "Requested CPIX encryption contract not supported"),
    (_bad_rules(R.ContentKeyUsageRule(R.VideoFilter(minPixels="10", maxPixels="5"),
                                      kid=str(_req.KID_V), intendedTrackType="VIDEO"),
                R.ContentKeyUsageRule(R.AudioFilter(), kid=str(_req.KID_A),
                                      intendedTrackType="AUDIO")),
     "Malformed encryption contract"),
    (_bad_rules(R.ContentKeyUsageRule(R.KeyPeriodFilter(periodId="nope"), R.VideoFilter(),
                                      kid=str(_req.KID_V), intendedTrackType="VIDEO"),
                R.ContentKeyUsageRule(R.AudioFilter(), kid=str(_req.KID_A),
                                      intendedTrackType="AUDIO")),
     "Malformed encryption contract"),
])
def test_v2_error_strings(ks: KeyServer, body: bytes, reason: str) -> None:
    r = post(ks, body)
    assert r.status_code == 422
    assert r.text.strip() == reason
    assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("value", ["1.0", "3", "2.0.1", "v2"])
def test_unsupported_speke_version(ks: KeyServer, value: str) -> None:
    r = post(ks, _req.v2_request(), value)
    assert r.status_code == 422 and r.text.strip() == "Unsupported SPEKE version"


@pytest.mark.parametrize("body", [
    b"not xml", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
    b"<x xmlns='urn:other'/>",
])
def test_malformed_documents_are_400(ks: KeyServer, body: bytes) -> None:
    r = post(ks, body)
    assert r.status_code == 400 and "Traceback" not in r.text


def test_bad_delivery_certificate(ks: KeyServer) -> None:
    r = post(ks, _req.v2_request(cert_der=[b"not a certificate"]))
    assert r.status_code == 422 and "certificate" in r.text


def test_v1_missing_id_is_400(ks: KeyServer) -> None:
    body = _req.v1_request().replace(b' id="chan-7"', b"")
    r = post(ks, body, None)
    assert r.status_code == 400 and r.text.strip() == "Missing CPIX@id"


def test_random_bodies_never_500(ks: KeyServer) -> None:
    base = _req.v2_request(systems=(_req.WIDEVINE, _req.PLAYREADY))
    rng = __import__("random").Random(7)
    for _ in range(40):
        cut = bytearray(base)
        for _ in range(3):
            cut[rng.randrange(len(cut))] = rng.randrange(256)
        r = post(ks, bytes(cut))
        assert r.status_code in (200, 400, 422), r.text
        assert "Traceback" not in r.text


def test_clearkey_pssh_matches_published_vector(ks: KeyServer) -> None:
    # speke.md §8 example (also what Shaka Packager writes for its CommonSystem pssh)
    kid = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    body = _req.v2_request(systems=(_req.CLEARKEY, _req.DASHIF_CLEARKEY), scheme="cenc",
                           kids=((kid, "VIDEO"),))
    r = post(ks, body)
    checked = check_answer(body, r.content, license_url=ks.clearkey_license_url)
    vector = base64.b64decode("AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7SwAAAAEAESIzRFVmd4iZqrvM3e7/AAAAAA==")
    for sid in (_req.CLEARKEY, _req.DASHIF_CLEARKEY):
        assert checked.signals[(kid, uuid.UUID(sid), "PSSH")] == vector


def test_ipv6_loopback() -> None:
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = KeyServer(allow_fault_header=True, host="::1").start()
    except UsageError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        body = _req.v2_request()
        check_answer(body, post(server, body).content)
    finally:
        server.stop()
